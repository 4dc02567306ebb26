"""The rest of the SimCSE family against hand computations."""

from __future__ import annotations

import math
import random

import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.objectives import MultiViewAMSoftmax, UnsupSimCSE
from embtune.objectives.augment import (augment, crop, delete_one_word, parse_augment, swap, word_deletion,
                                        word_repetition, check_ratio)
from tests.objectives.test_infonce import Z1, Z2, cos, hand_loss


def test_both_views_2n_minus_1_with_n_2_by_hand():
    z1 = [[1.0, 0.0], [0.0, 1.0]]
    z2 = [[1.0, 1.0], [-1.0, 2.0]]
    tau = 0.5
    allz = z1 + z2  # rows 0,1 = view 1; rows 2,3 = view 2
    pos = {0: 2, 1: 3, 2: 0, 3: 1}
    total = 0.0
    for i in range(4):
        den = sum(math.exp(cos(allz[i], allz[j]) / tau) for j in range(4) if j != i)  # 2N-1 = 3 candidates
        total += -math.log(math.exp(cos(allz[i], allz[pos[i]]) / tau) / den)
    got = UnsupSimCSE(tau, negatives="both-views").loss(torch.tensor([z1, z2], dtype=torch.float64)).item()
    assert got == pytest.approx(total / 4, rel=1e-9)


def test_multiview_k2_m0_equals_unsup_simcse_both_directions():
    emb = torch.tensor([Z1, Z2], dtype=torch.float64)
    mv = MultiViewAMSoftmax(0.05, views=2, margin=0.0).loss(emb).item()
    unsup = UnsupSimCSE(0.05)
    both = (unsup.loss(emb).item() + unsup.loss(emb.flip(0)).item()) / 2
    assert mv == pytest.approx(both, rel=1e-9)
    assert mv == pytest.approx((hand_loss(Z1, Z2, 0.05) + hand_loss(Z2, Z1, 0.05)) / 2, rel=1e-9)


def test_multiview_k3_with_margin_by_hand():
    views = [[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [0.0, 2.0]], [[2.0, 0.0], [1.0, 1.0]]]
    tau, m = 0.5, 0.2

    def unit(v):
        n = math.hypot(*v)
        return [x / n for x in v]

    total = 0.0
    for k in range(3):
        others = [views[j] for j in range(3) if j != k]
        centers = [unit([sum(unit(o[c])[d] for o in others) / 2 for d in range(2)]) for c in range(2)]
        for i in range(2):
            logits = [(cos(views[k][i], centers[j]) - (m if i == j else 0.0)) / tau for j in range(2)]
            total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    got = MultiViewAMSoftmax(tau, views=3, margin=m).loss(torch.tensor(views, dtype=torch.float64)).item()
    assert got == pytest.approx(total / 6, rel=1e-9)
    assert got > MultiViewAMSoftmax(tau, views=3, margin=0.0).loss(torch.tensor(views, dtype=torch.float64)).item()


WORDS = "the quick brown fox jumps".split()


def test_augmentations_documented_outputs():
    # random.Random(0).random() gives 0.844, 0.758, 0.421, 0.259, 0.511: with p = 0.5 the words
    # drawn below p (brown, fox) are deleted
    assert [round(random.Random(0).random(), 3)] == [0.844]
    assert word_deletion(WORDS, random.Random(0), 0.5) == ["the", "quick", "jumps"]
    assert delete_one_word(WORDS, random.Random(0)) == ["the", "quick", "brown", "jumps"]  # randrange(5) = 3
    assert crop(WORDS, random.Random(0), 0.4) == ["quick", "brown", "fox"]  # keep ceil(0.6*5) = 3 from start 1
    assert swap(WORDS, random.Random(0)) == ["the", "quick", "brown", "jumps", "fox"]
    assert word_repetition(WORDS, random.Random(0)) == ["the", "quick", "brown", "fox", "fox", "jumps"]


def test_augmentations_follow_their_definitions_over_many_seeds():
    for seed in range(50):
        r = random.Random
        d1 = delete_one_word(WORDS, r(seed))
        assert len(d1) == 4 and all(w in WORDS for w in d1)
        c = crop(WORDS, r(seed), 0.4)
        assert len(c) == 3 and " ".join(c) in " ".join(WORDS)
        s = swap(WORDS, r(seed))
        assert sorted(s) == sorted(WORDS) and sum(a != b for a, b in zip(s, WORDS)) == 2
        rep = word_repetition(WORDS, r(seed))
        assert 5 <= len(rep) <= 7 and list(dict.fromkeys(rep)) == WORDS
        wd = word_deletion(WORDS, r(seed), 0.9)
        assert 1 <= len(wd) <= 5


def test_augmentation_edge_cases():
    rng = random.Random(1)
    for fn in (delete_one_word, word_deletion, crop, swap, word_repetition):
        assert fn([], rng, None) == []
        one = fn(["alone"], rng, None)
        assert set(one) == {"alone"} and 1 <= len(one) <= 2
    assert augment("", ["delete-one-word"], rng) == ""
    assert augment("a b c", ["swap", "delete-one-word"], random.Random(3)) == augment("a b c", ["swap", "delete-one-word"], random.Random(3))


def test_bad_family_inputs():
    with pytest.raises(EmbtuneError, match="K"):
        MultiViewAMSoftmax(views=1)
    with pytest.raises(EmbtuneError, match="margin"):
        MultiViewAMSoftmax(margin=-0.1)
    for p in (1.0, -0.1, 1.5):
        with pytest.raises(EmbtuneError, match=r"\[0, 1\)"):
            check_ratio(p)
    with pytest.raises(EmbtuneError, match="unknown augmentation"):
        parse_augment("delete-one-word,shuffle-all")
    with pytest.raises(EmbtuneError, match="negatives"):
        UnsupSimCSE(negatives="all")
