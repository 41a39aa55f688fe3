from collections import Counter

import pytest

from harness.errors import HarnessError
from harness.sampling import draw_kshot, exclude_self, select_test_subset
from harness.types import Example

POOL = [Example(f"train-{i}", {"text": f"t{i}"}, i % 3) for i in range(30)]  # 10 per class
LABELS = ("a", "b", "c")


def test_draw_is_class_balanced():
    draw = draw_kshot(POOL, 4, 13, LABELS)
    assert Counter(e.label for e in draw.train) == {0: 4, 1: 4, 2: 4}


def test_same_seed_same_draw_and_order_other_seed_differs():
    assert draw_kshot(POOL, 4, 13, LABELS) == draw_kshot(POOL, 4, 13, LABELS)
    assert {e.id for e in draw_kshot(POOL, 4, 13, LABELS).train} != {e.id for e in draw_kshot(POOL, 4, 21, LABELS).train}


def test_dev_is_disjoint_and_does_not_change_the_training_set():
    with_dev = draw_kshot(POOL, 4, 42, LABELS, with_dev=True)
    assert not {e.id for e in with_dev.train} & {e.id for e in with_dev.dev}
    assert Counter(e.label for e in with_dev.dev) == {0: 4, 1: 4, 2: 4}
    assert {e.id for e in with_dev.train} == {e.id for e in draw_kshot(POOL, 4, 42, LABELS).train}


def test_order_is_shuffled_not_grouped_by_class():
    labels = [e.label for e in draw_kshot(POOL, 4, 13, LABELS).train]
    assert labels != sorted(labels)


def test_k_larger_than_a_class_names_the_class_and_count():
    pool = POOL[:-1]  # class 2 now has 9
    with pytest.raises(HarnessError, match="k=10 per class needs 10 train examples of class 'c', the train split has 9"):
        draw_kshot(pool, 10, 13, LABELS)
    with pytest.raises(HarnessError, match="plus a dev set"):
        draw_kshot(POOL, 6, 13, LABELS, with_dev=True)


def test_no_self_demo():
    demos = draw_kshot(POOL, 2, 13, LABELS).train
    twin = Example("test-0", dict(demos[0].fields), demos[0].label)
    kept = exclude_self(demos, twin)
    assert len(kept) == len(demos) - 1 and demos[0] not in kept
    assert exclude_self(demos, demos[1]) == tuple(d for d in demos if d != demos[1])


def test_test_subset_is_fixed_and_ordered():
    examples = [Example(f"test-{i}", {"text": str(i)}, 0) for i in range(50)]
    subset = select_test_subset(examples, 10)
    assert subset == select_test_subset(examples, 10) and len(subset) == 10
    assert [examples.index(e) for e in subset] == sorted(examples.index(e) for e in subset)
    assert select_test_subset(examples, None) == examples and select_test_subset(examples, 500) == examples
