"""The few-shot protocol: k examples per class (demos = training set) and a disjoint dev set, per seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from harness.errors import HarnessError
from harness.types import Example

TEST_SUBSET_SEED = 0  # --limit takes the same test examples for every regime, k and seed


@dataclass(frozen=True, slots=True)
class KShotDraw:
    """One cell's data: the k-per-class training set (also the few-shot demos) and a dev set of equal size."""

    train: tuple[Example, ...]
    dev: tuple[Example, ...]


def draw_kshot(pool: Sequence[Example], k: int, seed: int, label_names: Sequence[str], with_dev: bool = False) -> KShotDraw:
    """Class-balanced draw from the train split; the order of the training set is shuffled with the seed.

    Each class's examples are permuted once with the seed: the first k train, the next k are dev. So the
    training set is the same whether or not a dev set is asked for, and the two never overlap.
    """
    if k < 1:
        raise HarnessError(f"k must be at least 1 per class, got {k}")
    rng = random.Random(seed)
    need = 2 * k if with_dev else k
    train: list[Example] = []
    dev: list[Example] = []
    for label, name in enumerate(label_names):
        members = [ex for ex in pool if ex.label == label]
        if len(members) < need:
            what = f"k={k} per class plus a dev set of {k}" if with_dev else f"k={k} per class"
            raise HarnessError(
                f"{what} needs {need} train examples of class '{name}', the train split has {len(members)}"
            )
        order = list(range(len(members)))
        rng.shuffle(order)
        train.extend(members[i] for i in order[:k])
        dev.extend(members[i] for i in order[k:need])
    rng.shuffle(train)
    rng.shuffle(dev)
    return KShotDraw(train=tuple(train), dev=tuple(dev))


def select_test_subset(examples: Sequence[Example], limit: int | None) -> list[Example]:
    """A fixed random subset of `limit` examples in their original order (all when limit is None)."""
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 1:
        raise HarnessError(f"--limit must be at least 1, got {limit}")
    chosen = sorted(random.Random(TEST_SUBSET_SEED).sample(range(len(examples)), limit))
    return [examples[i] for i in chosen]


def exclude_self(demos: Sequence[Example], example: Example) -> tuple[Example, ...]:
    """The demos without any that is the test example itself (same id or same input)."""
    return tuple(d for d in demos if d.id != example.id and d.fields != example.fields)


def draw_demo_sets(train: Sequence[Example], per_class: int, sets: int, seed: int,
                   classes: int) -> list[tuple[Example, ...]]:
    """`sets` demo sets of `per_class` examples per class, drawn from the cell's k-shot training set.

    Set s is drawn with random.Random(f"{seed}-{s}"), class by class, then shuffled. Asking for every example in
    one set returns the training set itself, in its order (plain few-shot).
    """
    by_class = [[e for e in train if e.label == c] for c in range(classes)]
    smallest = min(len(members) for members in by_class)
    if per_class > smallest:
        raise HarnessError(f"--demos {per_class} per class exceeds the k = {smallest} training examples per class")
    if sets == 1 and per_class == smallest:
        return [tuple(train)]
    drawn = []
    for s in range(sets):
        rng = random.Random(f"{seed}-{s}")
        chosen = [e for members in by_class for e in rng.sample(members, per_class)]
        rng.shuffle(chosen)
        drawn.append(tuple(chosen))
    return drawn
