"""fp32 linear layers through oneDNN on the CPU, for forwards that compute no gradient.

torch runs an fp32 `nn.Linear` on the CPU through MKL's GEMM. On some CPUs oneDNN's kernel (the one torch's own
CPU compiler emits, `torch.ops.mkldnn._linear_pointwise`) is much faster for the same arithmetic: on the AMD EPYC
(AVX-512) machine this project develops on, one thread, SmolLM2's MLP shape, 252 GFLOP/s against MKL's 114 (see
bench/RESULTS.md). `onednn_linears(model)` routes the model's fp32 CPU linear layers through it while the block
runs, and only while no gradient is being recorded; the results equal `F.linear`'s up to float rounding
(checked once per process, else the plain path stays). HARNESS_CPU_LINEAR=torch turns it off. Layers with fewer
than MIN_WEIGHT_ELEMENTS weights keep torch's path: there oneDNN's fixed cost per call outweighs its faster GEMM
(64 x 64: 12 µs against MKL's 3; 256 x 256 over 64 rows: 77 µs against 122).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator

import torch
import torch.nn.functional as F

MIN_WEIGHT_ELEMENTS = 1 << 16


@lru_cache(maxsize=1)
def onednn_usable() -> bool:
    """Whether this torch has oneDNN's linear op and it agrees with F.linear on a small case."""
    if os.environ.get("HARNESS_CPU_LINEAR", "onednn") == "torch" or not torch.backends.mkldnn.is_available():
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


@contextmanager
def onednn_linears(model: Any) -> Iterator[None]:
    """Within the block, the model's fp32 CPU `nn.Linear` layers run through oneDNN (where usable)."""
    patched = []
    if onednn_usable():
        for module in model.modules():
            if (type(module) is torch.nn.Linear and module.weight.dtype == torch.float32
                    and module.weight.device.type == "cpu" and module.weight.numel() >= MIN_WEIGHT_ELEMENTS
                    and "forward" not in vars(module)):
                module.forward = _onednn_forward.__get__(module)
                patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward
