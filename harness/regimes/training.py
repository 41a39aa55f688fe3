"""The one training loop shared by `head` (top-N unfrozen) and `full`, and what it trains: a classifier
on the hidden state of the last non-pad token (or the mean over tokens)."""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from harness.errors import CellFailed
from harness.regimes.checks import grid_edge, last_step
from harness.types import Prediction, TestInput


class TrainingDiverged(CellFailed):
    """The loss became NaN or infinite: the cell is recorded as failed with the step."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"loss became {loss} at step {step}", step)


def init_weights(lm_head: nn.Module | None, answer_ids: Sequence[int] | None, dim: int, classes: int,
                 init: str, probe: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes, dim) weights and bias: zeros, the LM head's rows for each class's first answer token, or the
    trained probe's weights on the unstandardised features (LP-FT)."""
    if init == "verbalizer" and lm_head is not None and answer_ids is not None:
        return lm_head.weight[list(answer_ids)].detach().float().clone(), torch.zeros(classes)
    if init == "probe" and probe is not None:
        weight, bias = probe.raw_weights()
        return torch.tensor(weight, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32)
    return torch.zeros(classes, dim), torch.zeros(classes)


def budget_warnings(grid_name: str, grid: Sequence[float], chosen: float, best_step: int, steps: int,
                    max_steps: int) -> list[str]:
    """What a reviewer would flag in a selection: a grid's edge chosen, or the best checkpoint at the last step
    of a run that was not stopped early (the budget may not have converged)."""
    return grid_edge(grid_name, grid, chosen) + last_step(best_step, steps, max_steps)


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(batch, seq, dim) hidden states -> (batch, dim): last non-pad token (right padding) or masked mean."""
    if how == "last":
        last = mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


class SequenceClassifier(nn.Module):
    """A transformer stack (the whole backbone, or its top blocks run on cached inputs) plus a linear head."""

    def __init__(self, body: Callable[..., torch.Tensor], modules: nn.Module, head: nn.Linear, pooling: str):
        super().__init__()
        self.modules_trained = modules
        self.body = body  # (inputs, mask) -> (batch, seq, dim) final-norm hidden states
        self.head = head
        self.pooling = pooling

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(inputs, mask)
        return self.head(pool(hidden, mask, self.pooling).to(self.head.weight.dtype))


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, mega: int = 16) -> list[list[int]]:
    """Shuffle, cut into mega-batches, sort each by length, split: similar lengths share a batch (little padding)."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    batches = []
    for start in range(0, len(order), batch_size * mega):
        chunk = sorted(order[start : start + batch_size * mega], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    random.Random(seed + 1).shuffle(batches)
    return batches


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of pad positions in the padded batches."""
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / padded if padded else 0.0


@dataclass
class FitResult:
    """Per-class probabilities for each test input (in order), and what training chose and cost."""

    probs: list[list[float]]
    details: dict[str, Any]  # what the result file records: selection (chosen values, dev scores, history), ...
    trainable_parameters: int
    train_steps: int
    trained_tokens: int | None = None  # None: each training input once (a head on cached features)
    top_block_parameters: int = 0  # parameters of the blocks trained on cached inputs (head, N > 0)
    bytes_per_parameter: int = 4  # of the trained weights, as a user would store them
    trained: nn.Module | None = None  # the trained modules (tests look at them; never written)
    scored: list[Prediction] | None = None  # predictions with answer log-likelihoods (prompt-ft scores as zero-shot)

    def predictions(self, test: Sequence[TestInput]) -> list[Prediction]:
        """Predictions in test order, without gold labels (the runner joins them)."""
        if self.scored is not None:
            return self.scored
        return [Prediction(id=x.id, gold=None, probs=tuple(p)) for x, p in zip(test, self.probs)]


@dataclass
class LoopConfig:
    """One training run's hyperparameters."""

    learning_rate: float
    max_steps: int  # optimizer steps
    batch_size: int  # examples per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_every: int = 10  # optimizer steps between dev evaluations
    patience: int = 3  # evaluations without dev improvement before stopping
    seed: int = 13


@dataclass
class LoopResult:
    """The best dev checkpoint (in memory) and what training cost."""

    best_state: dict[str, torch.Tensor]
    best_dev: tuple[float, float]  # (accuracy, -loss): higher is better
    best_step: int
    steps: int
    tokens: int
    padded_tokens: int
    history: list[dict[str, float]] = field(default_factory=list)
    step_seconds: float = 0.0  # time in forward/backward/optimizer steps, dev checks excluded


def train_loop(model: SequenceClassifier, params: list[nn.Parameter] | list[dict[str, Any]], make_batch: Callable[[list[int]], tuple],
               train_idx: Sequence[int], lengths: Sequence[int], dev_score: Callable[[], tuple[float, float]],
               cfg: LoopConfig, autocast: Callable[[], Any], progress: bool = False) -> LoopResult:
    """AdamW, warmup then linear decay, clipping, dev checks every `eval_every` steps, best state kept.

    `params`: the parameters, or AdamW parameter groups (a group's own "lr", e.g. a new head's, is scheduled
    like the rest)."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    groups = [{"params": params}] if not params or not isinstance(params[0], dict) else params
    params = [p for group in groups for p in group["params"]]
    optimizer = _adamw(groups, cfg)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps)
    loss_fn = nn.CrossEntropyLoss()
    batches = _cycle_batches([lengths[i] for i in train_idx], cfg.batch_size, cfg.seed)
    best = LoopResult({}, (-1.0, -math.inf), 0, 0, 0, 0)
    stale = 0
    bar = tqdm(total=cfg.max_steps, desc=f"training lr={cfg.learning_rate:g}", disable=not progress, leave=False)
    model.train()
    for step in range(1, cfg.max_steps + 1):
        started = time.perf_counter()
        for _ in range(cfg.grad_accum):
            rows = [train_idx[i] for i in next(batches)]
            inputs, mask, labels = make_batch(rows)
            with autocast():
                loss = loss_fn(model(inputs, mask).float(), labels) / cfg.grad_accum
            if not torch.isfinite(loss):
                raise TrainingDiverged(step, float(loss.detach()))
            loss.backward()
            best.tokens += int(mask.sum())
            best.padded_tokens += mask.numel()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        best.step_seconds += time.perf_counter() - started
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            model.eval()
            score = dev_score()
            model.train()
            best.history.append({"step": step, "dev_accuracy": score[0], "dev_loss": -score[1]})
            if score > best.best_dev:
                best.best_dev, best.best_step, stale = score, step, 0
                best.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()
                                   if k.startswith(("modules_trained.", "head."))}
            else:
                stale += 1
                if stale >= cfg.patience:
                    best.steps = step
                    break
        best.steps = step
    bar.close()
    model.eval()
    return best


def autocast_for(device: torch.device) -> Callable[[], Any]:
    """bf16 autocast on CUDA (fp32 master weights), nothing on a CPU."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def fit_over_learning_rates(build: Callable[[float], tuple[nn.Module, list]], make_batch: Callable[[list[int]], tuple],
                            lengths: Sequence[int], dev_logits: Callable[[nn.Module], torch.Tensor],
                            dev_labels: torch.Tensor, cfg: Any, seed: int, autocast: Callable[[], Any],
                            progress: bool = False) -> tuple[LoopResult, float, nn.Module]:
    """One training run per learning rate of cfg (a Budget), each on a model `build(lr)` makes (with its parameters
    or parameter groups); the best dev checkpoint over all of them is loaded into its model and returned."""
    best = None
    for lr in cfg.learning_rates:
        # a new head's and an adapter's random start come from the cell's seed, not from whatever the process ran
        # before (harness < 0.4 drew them from the global state: a cell's numbers depended on the cells before it)
        torch.manual_seed(seed)
        model, params = build(lr)

        def dev_score(model: nn.Module = model) -> tuple[float, float]:
            logits = dev_logits(model)
            loss = nn.functional.cross_entropy(logits, dev_labels).item()
            return (logits.argmax(-1) == dev_labels).float().mean().item(), -loss

        loop_cfg = LoopConfig(learning_rate=lr, max_steps=cfg.max_steps, batch_size=cfg.batch_size,
                              grad_accum=cfg.grad_accum, warmup_ratio=cfg.warmup_ratio, eval_every=cfg.eval_every,
                              patience=cfg.patience, seed=seed)
        result = train_loop(model, params, make_batch, range(len(lengths)), lengths, dev_score, loop_cfg, autocast,
                            progress)
        if best is None or result.best_dev > best[0].best_dev:
            best = (result, lr, model)
        else:
            del model
    result, lr, model = best
    model.load_state_dict(result.best_state, strict=False)
    return result, lr, model


def selection_details(result: LoopResult, lr: float, cfg: Any) -> dict[str, Any]:
    """What a result records of a learning-rate search: the choice, the dev history, the warnings."""
    return {
        "selection": {"rule": "best dev checkpoint (accuracy, then loss) over learning_rates and evaluations",
                      "chosen": {"learning_rate": lr}, "best_step": result.best_step, "steps": result.steps,
                      "dev_accuracy": result.best_dev[0], "dev_loss": -result.best_dev[1], "history": result.history},
        "warnings": budget_warnings("learning rate", cfg.learning_rates, lr, result.best_step, result.steps,
                                    cfg.max_steps),
        "train_step_seconds": round(result.step_seconds, 3),
    }


def _adamw(params: list[dict[str, Any]], cfg: LoopConfig) -> torch.optim.Optimizer:
    """The fused AdamW kernel where this torch has one for the device (as transformers' Trainer does)."""
    try:
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def _cycle_batches(lengths: Sequence[int], batch_size: int, seed: int) -> Iterator[list[int]]:
    epoch = 0
    while True:
        yield from length_grouped_batches(lengths, batch_size, seed + epoch)
        epoch += 1
