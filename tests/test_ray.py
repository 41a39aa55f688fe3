"""--executor ray on a real local Ray cluster (ray.init(num_cpus=2)), inside a loopback-only network namespace.

Ray listens on every interface even when asked for 127.0.0.1, so each test re-runs itself under `unshare -n`
(a new network namespace holding only the loopback device) and is skipped where that is not possible.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from tiny import tiny_model, tiny_tokenizer

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")

FIXTURES = Path(__file__).parent / "fixtures"
NETNS = "HARNESS_TEST_LOOPBACK_ONLY"


def _run_isolated(test: str) -> bool:
    """Outside the namespace: run this test again inside a loopback-only one and check it passed (True).
    Inside: check that nothing but the loopback device exists, and return False (run the test here)."""
    if os.environ.get(NETNS) == "1":
        devices = [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]]
        assert devices == ["lo"], f"not a loopback-only network namespace: {devices}"
        return False
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs unshare and ip to isolate Ray's network")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here (unshare -n: {probe.stderr.decode().strip()})")
    command = (f"ip link set lo up && {NETNS}=1 exec {sys.executable} -m pytest -q -p no:cacheprovider "
               f"{Path(__file__).resolve()}::{test}")
    done = subprocess.run(["unshare", "-n", "sh", "-c", command], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout, done.stdout[-2000:]
    return True


@pytest.fixture
def model_dir(tmp_path):
    """The tiny model saved as a folder: Ray workers load it by path, as a user's workers would."""
    tokenizer = tiny_tokenizer()
    folder = tmp_path / "tiny-model"
    tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _env(**extra):
    return {"HARNESS_TASKS_DIR": str(FIXTURES / "tasks"), "HARNESS_PROMPTS_DIR": str(FIXTURES / "prompts"),
            "OMP_NUM_THREADS": "1", **extra}


def _eval(model_dir, out, *args):
    result = CliRunner().invoke(cli, ["eval", "--model", str(model_dir), "--tasks", "toy", "--templates", "cloze",
                                      "--regimes", "zero-shot,few-shot,head,full", "--seeds", "13,21", "--k", "2",
                                      "--limit", "all", "--full-max-steps", "2", "--batch-size", "4",
                                      "--out", str(out), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _cells(out):
    found = {}
    for path in Path(out).rglob("*.json"):
        if path.name == "summary.json":
            continue
        raw = json.loads(path.read_text())
        rows = path.with_suffix(".jsonl")
        found[path.stem] = (raw, [json.loads(r) for r in rows.read_text().splitlines()] if rows.exists() else [])
    return found


def _same_results(local, remote):
    assert set(local) == set(remote)
    for stem, (raw, rows) in local.items():
        other, other_rows = remote[stem]
        assert other["status"] == raw["status"] == "ok", stem
        assert other["config_hash"] == raw["config_hash"], stem
        assert other["metrics"] == pytest.approx(raw["metrics"], abs=1e-9), stem
        assert [r["pred"] for r in rows] == [r["pred"] for r in other_rows], stem
        for a, b in zip(rows, other_rows):
            assert a["probs"] == pytest.approx(b["probs"], abs=1e-5), stem


def test_ray_gives_the_local_results_and_retries_a_lost_worker(tmp_path, model_dir, monkeypatch):
    if _run_isolated("test_ray_gives_the_local_results_and_retries_a_lost_worker"):
        return
    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    _eval(model_dir, tmp_path / "local")
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": _env(HARNESS_RAY_CRASH="full_k2_seed21")})
    try:
        _eval(model_dir, tmp_path / "ray", "--executor", "ray")
    finally:
        ray.shutdown()
    assert (tmp_path / "ray" / ".crashed-full_k2_seed21").exists()  # the worker died there, and was retried
    local, remote = _cells(tmp_path / "local"), _cells(tmp_path / "ray")
    assert len(local) == 7  # zero-shot once, three regimes x two seeds
    _same_results(local, remote)
    again = _eval(model_dir, tmp_path / "ray", "--executor", "ray")  # nothing left: Ray is not even started
    assert "0 cells computed, 7 found on disk" in again.output


def test_a_worker_lost_twice_fails_its_cell_and_no_other(tmp_path, model_dir, monkeypatch):
    if _run_isolated("test_a_worker_lost_twice_fails_its_cell_and_no_other"):
        return
    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    ray.init(num_cpus=2, include_dashboard=False,
             runtime_env={"env_vars": _env(HARNESS_RAY_CRASH="head_k2_seed13:always")})
    try:
        result = _eval(model_dir, tmp_path / "ray", "--executor", "ray")
    finally:
        ray.shutdown()
    cells = _cells(tmp_path / "ray")
    assert cells["head_k2_seed13"][0]["status"] == "failed"
    assert "Ray worker lost twice" in cells["head_k2_seed13"][0]["reason"]
    assert all(raw["status"] == "ok" for stem, (raw, _) in cells.items() if stem != "head_k2_seed13")
    assert len(cells) == 7 and "6 cells computed" in result.output and "1 failed" in result.output


def test_without_ray_the_executor_is_one_line(monkeypatch, tmp_path, toy_env):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from harness.errors import HarnessError
    from harness.ray_executor import run_on_ray
    from harness.types import Cell

    with pytest.raises(HarnessError, match=r"--executor ray needs Ray: pip install 'harness\[ray\]'"):
        run_on_ray(None, [Cell("toy", "cloze", "head", 2, 13)], lambda *a: None, False)
