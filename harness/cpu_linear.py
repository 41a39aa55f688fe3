"""fp32 linear layers on the CPU, for forwards that compute no gradient, through the kernel measured fastest here.

torch runs an fp32 `nn.Linear` on the CPU through MKL's GEMM. On some CPUs oneDNN's kernel (the one torch's own
CPU compiler emits, `torch.ops.mkldnn._linear_pointwise`) is much faster for the same arithmetic: 2.3x MKL's rate
on an AMD EPYC (AVX-512) machine at one thread; on other machines it is slower (0.75-0.98x on an AVX2 machine, on
SmolLM2's shapes). So the path is chosen by measuring: at the first use per machine, model shapes, torch version
and thread count, both kernels are timed on the model's own linear shapes (`ROWS` rows, best of `REPEATS`) and the
faster is kept, cached in the harness cache (`cpu-kernels.json`); the choice and its timings are recorded in every
cell (`cpu_linear`). `onednn_linears(model)` then routes the model's fp32 CPU linear layers through oneDNN while
the block runs — only while no gradient is being recorded, only where it was faster; the results equal
`F.linear`'s up to float rounding (checked once per process, else the plain path stays). HARNESS_CPU_LINEAR=torch
or =onednn forces a path. Layers with fewer than MIN_WEIGHT_ELEMENTS weights keep torch's path: there oneDNN's
fixed cost per call outweighs its faster GEMM (64 x 64: 12 µs against MKL's 3).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from harness.locks import exclusive

MIN_WEIGHT_ELEMENTS = 1 << 16
ROWS = 512  # rows of a timed GEMM: a scoring batch of short prompts packs 400-2000 tokens
REPEATS = 5
CHOICE_ENV = "HARNESS_CPU_LINEAR"  # "torch" or "onednn" forces a path; unset: measured
_last: dict[str, Any] = {}  # the choice the last onednn_linears() made, as cells record it


@lru_cache(maxsize=1)
def onednn_usable() -> bool:
    """Whether this torch has oneDNN's linear op and it agrees with F.linear on a small case."""
    if os.environ.get(CHOICE_ENV) == "torch" or not torch.backends.mkldnn.is_available():
        return False
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None:
        return False
    generator = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(shape, generator=generator) for shape in ((2, 3, 64), (48, 64), (48,)))
    try:
        with torch.no_grad():
            return all(torch.allclose(op(x, w, bias, "none", [], ""), F.linear(x, w, bias), atol=1e-4, rtol=1e-4)
                       for bias in (b, None))
    except (RuntimeError, TypeError):
        return False


def _onednn_forward(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu":
        return F.linear(x, module.weight, module.bias)
    return torch.ops.mkldnn._linear_pointwise(x, module.weight, module.bias, "none", [], "")


def _routable(model: Any) -> list[torch.nn.Linear]:
    """The fp32 CPU linear layers worth routing: not the small ones, and not an output layer (read at a few answer
    positions, where oneDNN's rounding differs from MKL's by up to 1e-4 in a logit)."""
    outputs = {id(m.get_output_embeddings()) for m in model.modules() if hasattr(m, "get_output_embeddings")}
    return [m for m in model.modules()
            if type(m) is torch.nn.Linear and m.weight.dtype == torch.float32 and m.weight.device.type == "cpu"
            and m.weight.numel() >= MIN_WEIGHT_ELEMENTS and "forward" not in vars(m) and id(m) not in outputs]


def choice() -> dict[str, Any]:
    """The last kernel choice (path, how it was made, the timings), as a cell's result records it."""
    return dict(_last)


def forget_choice() -> None:
    """Start a cell's record afresh (a cell that runs no routed forward records no choice)."""
    _last.clear()


def chosen_path(shapes: tuple[tuple[int, int], ...]) -> dict[str, Any]:
    """"onednn" or "torch" for these (out, in) weight shapes on this machine: forced by HARNESS_CPU_LINEAR,
    else measured once and cached, keyed by CPU capability, torch version, thread count and the shapes."""
    forced = os.environ.get(CHOICE_ENV)
    if forced in ("torch", "onednn"):
        return {"path": forced if forced == "torch" or onednn_usable() else "torch", "how": f"{CHOICE_ENV}={forced}"}
    if not onednn_usable():
        return {"path": "torch", "how": "oneDNN's linear op is not usable in this torch"}
    key = (f"{torch.backends.cpu.get_cpu_capability()}|torch {torch.__version__}|threads {torch.get_num_threads()}|"
           + ",".join(f"{o}x{i}" for o, i in shapes))
    return _measured(key, shapes)


@lru_cache(maxsize=32)
def _measured(key: str, shapes: tuple[tuple[int, int], ...]) -> dict[str, Any]:
    from harness.models import cache_dir

    path = cache_dir() / "cpu-kernels.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path.with_name(path.name + ".lock"), wait=True):
        try:
            known = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            known = {}  # a damaged cache is measured again
        if isinstance(known, dict) and isinstance(known.get(key), dict) and known[key].get("path") in ("torch", "onednn"):
            return {**known[key], "how": "measured on this machine (cached)", "key": key}
        timings = _time_paths(shapes)
        entry = {"path": min(timings, key=timings.get), "seconds": timings,
                 "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        known = {**(known if isinstance(known, dict) else {}), key: entry}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    return {**entry, "how": "measured on this machine", "key": key}


@torch.no_grad()
def _time_paths(shapes: tuple[tuple[int, int], ...]) -> dict[str, float]:
    """Seconds for one GEMM of ROWS rows per shape, summed over the shapes, best of REPEATS, per path."""
    generator = torch.Generator().manual_seed(0)
    totals = {"torch": 0.0, "onednn": 0.0}
    for out_features, in_features in shapes:
        x = torch.randn(ROWS, in_features, generator=generator)
        w = torch.randn(out_features, in_features, generator=generator)
        b = torch.randn(out_features, generator=generator)
        runs = {"torch": lambda: F.linear(x, w, b),
                "onednn": lambda: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")}
        for name, run in runs.items():
            run()  # warm-up
            best = float("inf")
            for _ in range(REPEATS):
                started = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - started)
            totals[name] += best
    return {name: round(seconds, 6) for name, seconds in totals.items()}


@contextmanager
def onednn_linears(model: Any) -> Iterator[None]:
    """Within the block, the model's fp32 CPU `nn.Linear` layers run through oneDNN where it was measured faster."""
    patched = []
    layers = _routable(model)
    if layers:
        decision = chosen_path(tuple(sorted({tuple(m.weight.shape) for m in layers})))
        _last.clear()
        _last.update(decision)
        if decision["path"] == "onednn":
            for module in layers:
                module.forward = _onednn_forward.__get__(module)
                patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward
