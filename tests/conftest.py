"""Shared fixtures: the toy task, its data, and a tiny random Llama with a tokenizer built here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from harness.models import LoadedModel
from tiny import tiny_model, tiny_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"

# Tiny models gain nothing from more threads, and CI shares two cores: the suite took 159 s under load with
# torch's default threads and 36 s with one.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # what a run's free-cores rule then keeps (harness eval in tests)


@pytest.fixture
def toy_env(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the harness at the fixture tasks and prompts (the toy task)."""
    monkeypatch.setenv("HARNESS_TASKS_DIR", str(FIXTURES / "tasks"))
    monkeypatch.setenv("HARNESS_PROMPTS_DIR", str(FIXTURES / "prompts"))
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    return FIXTURES


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def model(tokenizer):
    return tiny_model(len(tokenizer))


@pytest.fixture
def loaded(model, tokenizer) -> LoadedModel:
    """The tiny model as load_model would hand it over."""
    return LoadedModel(model=model, tokenizer=tokenizer, identity={"source": "test", "id": "tiny"}, device="cpu",
                       dtype="float32")
