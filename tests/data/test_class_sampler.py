from __future__ import annotations

from collections import Counter

import pytest

from embtune.data.class_sampler import class_batches
from embtune.data.sampler import shuffled_batches
from embtune.errors import EmbtuneError


def test_groups_of_m_per_class_cover_every_text_once():
    labels = [f"c{i % 10}" for i in range(100)] + ["lone1", "lone2"]  # 10 classes of 10, two single-text classes
    batches = class_batches(labels, batch_size=16, per_class=4, seed=0)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(102))  # every text exactly once
    for b in batches:
        assert len(b) <= 16
        counts = Counter(labels[i] for i in b if not labels[i].startswith("lone"))
        assert counts and max(counts.values()) >= 2  # every batch holds a positive pair
        # whole groups: 4 per class (a class's remainder: 10 = 4 + 4 + 2), never a lone classmate
        assert all(c in (2, 4, 6, 8) for c in counts.values()), counts


def test_a_random_batch_would_rarely_hold_positives():
    # negative control for the sampler's purpose: 64 classes of 4, batches of 16 -> with m=4 every
    # anchor has 3 classmates; a plain shuffle leaves most texts without one
    labels = [i // 4 for i in range(256)]
    grouped = class_batches(labels, 16, 4, seed=1)
    plain = shuffled_batches(256, 16, seed=1)

    def with_classmate(batches):
        return sum(sum(1 for i in b if sum(labels[j] == labels[i] for j in b) > 1) for b in batches)

    assert with_classmate(grouped) == 256
    assert with_classmate(plain) < 128


def test_deterministic_per_seed_and_epoch():
    labels = [i % 7 for i in range(70)]
    assert class_batches(labels, 8, 2, seed=3) == class_batches(labels, 8, 2, seed=3)
    assert class_batches(labels, 8, 2, seed=3) != class_batches(labels, 8, 2, seed=3, epoch=1)
    assert class_batches(labels, 8, 2, seed=3) != class_batches(labels, 8, 2, seed=4)


def test_remainder_of_one_joins_its_class_group():
    labels = ["a"] * 5 + ["b"] * 2
    for seed in range(10):
        for b in class_batches(labels, 8, 2, seed=seed):
            counts = Counter(labels[i] for i in b)
            assert all(c >= 2 for c in counts.values())


@pytest.mark.parametrize("labels,bs,m,message", [
    (["a", "b", "c"], 4, 2, "no class has two texts"),
    (["a", "a", "b", "b"], 1, 2, "a batch of 1 cannot hold"),
    (["a", "a", "b", "b"], 4, 5, "a batch of 4 cannot hold --samples-per-class 5"),
    (["a", "a"], 4, 1, "expected >= 2"),
])
def test_errors_when_a_batch_cannot_hold_two_of_a_class(labels, bs, m, message):
    with pytest.raises(EmbtuneError, match=message):
        class_batches(labels, bs, m, seed=0)


def test_shuffled_batches_keep_repeats_and_drop_a_lone_last():
    batches = shuffled_batches(9, 4, seed=0)
    assert [len(b) for b in batches] == [4, 4]
    assert sorted(i for b in batches for i in b) != list(range(9))
    assert shuffled_batches(9, 4, seed=0) == batches != shuffled_batches(9, 4, seed=0, epoch=1)
