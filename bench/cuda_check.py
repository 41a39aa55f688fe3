"""CUDA check (run on a GPU machine; not a test): the scorer's shortcuts, bf16 loading and every regime on CUDA.

    python bench/cuda_check.py OUT_DIR

Uses a small random Llama and the toy task of tests/fixtures, so it needs no download and no model files.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ["HARNESS_TASKS_DIR"] = str(ROOT / "tests" / "fixtures" / "tasks")
os.environ["HARNESS_PROMPTS_DIR"] = str(ROOT / "tests" / "fixtures" / "prompts")

from click.testing import CliRunner  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

import transformers  # noqa: E402
from harness.cli import cli  # noqa: E402
from harness.models import load_model, pick_device  # noqa: E402
from harness.scoring import ScoreRequest, score_naive, score_requests  # noqa: E402
from tiny import tiny_tokenizer  # noqa: E402

PREFIX = "the movie was great . it was good\n\nthe plot was bad . it was terrible\n\n" * 4
REQUESTS = [ScoreRequest(PREFIX if i % 2 else "", f"the film {w} was very . it was", (" great", " very bad !", " not good"))
            for i, w in enumerate("good bad plot acting movie film the a".split())]


def gap(model, tokenizer) -> float:
    fast = score_requests(model, tokenizer, REQUESTS, 3, 512)
    naive = score_naive(model, tokenizer, REQUESTS, 512)
    return max(abs(x - y) for a, b in zip(fast, naive) for x, y in zip(a.logliks, b.logliks))


def main(out: Path) -> None:
    report: dict = {"torch": torch.__version__, "transformers": transformers.__version__,
                    "device": torch.cuda.get_device_name(0), "pick_device": str(pick_device())}
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0,
                         bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config).eval()
    report["gap_fp32_cuda"] = gap(model.cuda(), tokenizer)
    report["gap_bf16_cuda"] = gap(model.to(torch.bfloat16), tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        model.float().cpu().save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        lm = load_model(tmp)
        report["loaded"] = {"device": lm.device, "dtype": lm.dtype}
        run_dir = Path(tmp) / "runs"
        start = time.perf_counter()
        data = str(ROOT / "tests" / "fixtures" / "data")  # the mirror layout: no datasets package needed
        result = CliRunner().invoke(cli, ["eval", "--tasks", "toy", "--model", tmp, "--k", "2", "--seeds", "13,21",
                                          "--data-dir", data,
                                          "--unfreeze-top", "1", "--full-max-steps", "8", "--out", str(run_dir)])
        report["cli_seconds"] = time.perf_counter() - start
        report["cli_exit"] = result.exit_code
        report["cli_output"] = result.output[-3000:]
        if result.exception and result.exit_code != 0:
            import traceback

            report["traceback"] = "".join(traceback.format_exception(result.exception))[-3000:]
        cells = {}
        for path in sorted(run_dir.rglob("*.json")):
            r = json.loads(path.read_text())
            cells[path.name] = {"status": r.get("status"), "device": r.get("device"), "accuracy":
                                r.get("metrics", {}).get("accuracy"), "peak_cuda_bytes": r.get("cost", {}).get("peak_cuda_bytes"),
                                "dtype": (r.get("model") or {}).get("dtype")}
        report["cells"] = cells
    (out / "cuda_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
