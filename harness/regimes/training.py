"""The one training loop of every trained regime (`full`, `prompt-ft`, `lora`, `scratch`, `ia3`, `head
--unfreeze-top`), driven by the budget settings (budget.py): every knob it turns is a settings field, recorded in
the result and hashed. Also what it trains on (padded rows, length-grouped batches) and what a search records."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from harness.errors import CellFailed
from harness.metrics import dev_scores, selection_key
from harness.regimes.budget import Budget
from harness.regimes.checks import cannot_stop, first_evaluation, grid_edge, last_step


class TrainingDiverged(CellFailed):
    """The loss became NaN or infinite: the cell is recorded as failed with the step."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"loss became {loss} at step {step}", step)


def pad_rows(rows: Sequence[Any], pad: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows and their mask: token-id lists -> (n, width) ids padded with `pad`; (tokens, dim) hidden
    states -> (n, width, dim) padded with zeros. The mask is (n, width), 1 on real positions."""
    width = max(len(r) for r in rows)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    if rows and isinstance(rows[0], torch.Tensor):
        out = torch.zeros(len(rows), width, rows[0].shape[1], dtype=torch.float32)
    else:
        out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row if isinstance(row, torch.Tensor) else torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return out.to(device), mask.to(device)


@dataclass
class PackedRows:
    """Several training inputs packed into one row without padding: each attends only to itself (a block-diagonal
    causal mask), its positions restart at 0, and its last token is read (`ends`)."""

    ids: torch.Tensor  # (1, tokens) token ids, or (1, tokens, dim) hidden states
    positions: torch.Tensor  # (1, tokens)
    mask: torch.Tensor  # (1, 1, tokens, tokens) additive: 0 where a token may look, the dtype's minimum elsewhere
    ends: torch.Tensor  # (inputs,) index of each input's last token
    starts: torch.Tensor  # (inputs,) index of each input's first token

    def __len__(self) -> int:
        return int(self.ids.shape[1])


def pack_rows(rows: Sequence[Any], device: Any, dtype: torch.dtype = torch.float32) -> tuple[PackedRows, torch.Tensor]:
    """Inputs of different lengths as one packed row, and a (1, tokens) mask of ones (what the loop counts)."""
    lengths = [len(r) for r in rows]
    starts = torch.tensor([sum(lengths[:i]) for i in range(len(rows))])
    ends = starts + torch.tensor(lengths) - 1
    segment = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor(lengths))
    allowed = (segment[:, None] == segment[None, :]) & torch.ones(len(segment), len(segment), dtype=torch.bool).tril()
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    positions = torch.cat([torch.arange(n) for n in lengths])
    if isinstance(rows[0], torch.Tensor):
        ids = torch.cat([r.float() for r in rows])[None]
    else:
        ids = torch.tensor([t for r in rows for t in r], dtype=torch.long)[None]
    packed = PackedRows(ids.to(device), positions[None].to(device), mask[None, None].to(device), ends.to(device),
                        starts.to(device))
    return packed, torch.ones(1, len(segment), dtype=torch.long, device=device)


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
class LoopResult:
    """The best dev checkpoint (in memory) and what training cost."""

    best_state: dict[str, torch.Tensor]
    best_dev: dict[str, float]  # dev_accuracy, dev_loss, dev_score (the selection metric, higher is better)
    best_step: int
    steps: int
    tokens: int
    padded_tokens: int
    history: list[dict[str, float]] = field(default_factory=list)
    step_seconds: float = 0.0  # time in forward/backward/optimizer steps, dev checks excluded
    stopped: str = "max_steps"  # why the run ended: "plateau" (early stopping) or "max_steps"

    @property
    def key(self) -> tuple[float, float]:
        return selection_key(self.best_dev) if self.best_dev else (-math.inf, -math.inf)


@dataclass
class Fit:
    """The best run over a learning-rate grid: its trained model (best checkpoint loaded) and its record."""

    model: nn.Module
    learning_rate: float
    result: LoopResult
    configurations: int = 0  # dev-evaluated (learning rate, checkpoint) pairs over the whole search
    strength: float | None = None  # the mitigation strength dev chose (None: no mitigation)
    runs: list[dict[str, Any]] = field(default_factory=list)  # per learning rate: its dev history and its end


def dev_score(logits: torch.Tensor, labels: torch.Tensor, metric: str) -> dict[str, float]:
    """Dev accuracy, loss and the selection metric of a model's dev logits."""
    loss = nn.functional.cross_entropy(logits.float(), labels).item()
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    score = accuracy if metric == "accuracy" else dev_scores(
        metric, labels.tolist(), torch.softmax(logits.float(), -1).tolist())["dev_score"]
    return {"dev_accuracy": accuracy, "dev_loss": loss, "dev_score": score}


def train_loop(model: nn.Module, groups: list[dict[str, Any]], make_batch: Callable[[list[int]], tuple],
               lengths: Sequence[int], dev: Callable[[], dict[str, float]], budget: Budget, learning_rate: float,
               seed: int, autocast: Callable[[], Any], progress: bool = False,
               penalty: Callable[[], torch.Tensor] | None = None) -> LoopResult:
    """AdamW over parameter `groups` (a group's own "lr", e.g. a new head's, is scheduled like the rest), warmup
    then linear decay, clipping, a dev check every `eval_every` steps and at the last, the best state kept, early
    stopping after `patience` checks without improvement. `penalty()` (a mitigation) is added to each step's loss."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    params = [p for group in groups for p in group["params"]]
    optimizer = _adamw(groups, learning_rate, budget.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(budget.warmup_ratio * budget.max_steps),
                                               budget.max_steps)
    loss_fn = nn.CrossEntropyLoss()
    batches = _cycle_batches(lengths, budget.batch_size, seed)
    best = LoopResult({}, {}, 0, 0, 0, 0)
    stale = 0
    bar = tqdm(total=budget.max_steps, desc=f"training lr={learning_rate:g}", disable=not progress, leave=False)
    model.train()
    for step in range(1, budget.max_steps + 1):
        started = time.perf_counter()
        for micro in range(budget.grad_accum):
            inputs, mask, labels = make_batch(next(batches))
            with autocast():
                loss = loss_fn(model(inputs, mask).float(), labels) / budget.grad_accum
            if penalty is not None and micro == 0:
                loss = loss + penalty()
            if not torch.isfinite(loss):
                raise TrainingDiverged(step, float(loss.detach()))
            loss.backward()
            best.tokens += int(mask.sum())
            best.padded_tokens += mask.numel()
        torch.nn.utils.clip_grad_norm_(params, budget.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        best.step_seconds += time.perf_counter() - started
        bar.update(1)
        best.steps = step
        if step % budget.eval_every == 0 or step == budget.max_steps:
            model.eval()
            score = dev()
            model.train()
            recorded = score if budget.select_metric != "accuracy" else {k: v for k, v in score.items()
                                                                         if k != "dev_score"}
            best.history.append({"step": step, **recorded})
            if selection_key(score) > best.key:
                best.best_dev, best.best_step, stale = score, step, 0
                best.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()
                                   if k.startswith(("modules_trained.", "head."))}
            else:
                stale += 1
                if stale >= budget.patience and step >= budget.min_steps:
                    best.stopped = "plateau"
                    break
    bar.close()
    model.eval()
    return best


def fit_over_learning_rates(build: Callable[[float], tuple[nn.Module, list[dict[str, Any]]]],
                            make_batch: Callable[[list[int]], tuple], lengths: Sequence[int],
                            dev_logits: Callable[[nn.Module], torch.Tensor], dev_labels: torch.Tensor,
                            budget: Any, seed: int, autocast: Callable[[], Any], progress: bool = False,
                            penalty_for: Callable[[nn.Module, float], Callable[[], torch.Tensor]] | None = None) -> Fit:
    """One training run per learning rate (x mitigation strength) of the budget, each on a model `build(lr)` makes
    with its parameter groups, its penalty `penalty_for(model, strength)` (mitigation.py); the best dev checkpoint
    over all of them is loaded into its model and returned."""
    best: Fit | None = None
    runs: list[dict[str, Any]] = []
    strengths = budget.mitigation_strengths if getattr(budget, "mitigation", "none") != "none" else (None,)
    for lr, strength in ((lr, s) for lr in budget.learning_rates for s in strengths):
        # a new head's and an adapter's random start come from the cell's seed, not from whatever the process ran
        # before (harness < 0.4 drew them from the global state: a cell's numbers depended on the cells before it)
        torch.manual_seed(seed)
        model, groups = build(lr)
        result = train_loop(model, groups, make_batch, lengths,
                            lambda: dev_score(dev_logits(model), dev_labels, budget.select_metric), budget, lr, seed,
                            autocast, progress, penalty_for(model, strength) if strength is not None else None)
        runs.append({"learning_rate": lr, **({"mitigation_strength": strength} if strength is not None else {}),
                     "best_step": result.best_step, "steps": result.steps, "stopped": result.stopped,
                     "history": result.history})
        if best is None or result.key > best.result.key:
            best = Fit(model, lr, result, strength=strength)
        else:
            del model
    best.model.load_state_dict(best.result.best_state, strict=False)
    best.configurations, best.runs = sum(len(r["history"]) for r in runs), runs
    return best


def selection_details(fit: Fit, budget: Any, lengths: Sequence[int], seed: int) -> dict[str, Any]:
    """What a result records of a learning-rate search: the choice, the dev history, the warnings, padding."""
    result = fit.result
    return {
        "selection": {"rule": f"best dev checkpoint ({budget.select_metric}, then loss) over learning_rates and "
                              f"evaluations",
                      "chosen": {"learning_rate": fit.learning_rate,
                                 **({"mitigation_strength": fit.strength} if fit.strength is not None else {})},
                      "best_step": result.best_step,
                      "steps": result.steps, "stopped": result.stopped,
                      # configurations dev compared: learning rates x dev checks (equal tuning effort)
                      "configurations": fit.configurations, "dev_accuracy": result.best_dev["dev_accuracy"],
                      "dev_loss": result.best_dev["dev_loss"], "history": result.history, "runs": fit.runs,
                      **({"dev_score": result.best_dev["dev_score"], "metric": budget.select_metric}
                         if budget.select_metric != "accuracy" else {})},
        "warnings": grid_edge("learning rate", budget.learning_rates, fit.learning_rate)
        + (grid_edge("mitigation strength", budget.mitigation_strengths, fit.strength)
           if fit.strength is not None else [])
        + last_step(result.best_step, result.steps, budget.max_steps)
        + first_evaluation(result.best_step, result.history[0]["step"] if result.history else 0, result.steps)
        + cannot_stop(budget.eval_every, budget.patience, budget.min_steps, budget.max_steps),
        "train_step_seconds": round(result.step_seconds, 3),
        "padding_fraction": 1 - result.tokens / result.padded_tokens if result.padded_tokens else 0.0,
        "padding_fraction_planned": padding_fraction(lengths, length_grouped_batches(lengths, budget.batch_size, seed)),
    }


def _adamw(groups: list[dict[str, Any]], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The fused AdamW kernel where this torch has one for the device (as transformers' Trainer does)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def _cycle_batches(lengths: Sequence[int], batch_size: int, seed: int) -> Iterator[list[int]]:
    epoch = 0
    while True:
        yield from length_grouped_batches(lengths, batch_size, seed + epoch)
        epoch += 1
