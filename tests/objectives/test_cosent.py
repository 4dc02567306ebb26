"""CoSENT (Su 2022) against its formula, computed with a plain Python loop over ordered pairs."""

from __future__ import annotations

import math
import random

import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.objectives import CoSENT
from embtune.objectives.base import Batch

U = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.5, -1.0]]
V = [[0.8, 0.6], [0.0, 1.0], [-1.0, 1.0], [1.0, 1.0]]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))


def hand_cosent(u, v, scores, lam):
    c = [cos(a, b) for a, b in zip(u, v)]
    total = 1.0
    for i in range(len(c)):
        for j in range(len(c)):
            if scores[i] > scores[j]:
                total += math.exp(lam * (c[j] - c[i]))
    return math.log(total)


def batch(labels):
    return Batch([], [], lambda t: [], random.Random(0), labels)


def loss(u, v, labels, lam=20.0):
    return CoSENT(lam).loss(torch.tensor([u, v], dtype=torch.float64), batch(labels)).item()


@pytest.mark.parametrize("lam", [1.0, 5.0, 20.0])
@pytest.mark.parametrize("scores", [[4.2, 1.0, 2.5, 0.0], [1.0, 0.0, 0.0, 1.0], [3.0, 3.0, 1.0, 5.0]])
def test_matches_the_loop_over_ordered_pairs(scores, lam):
    assert loss(U, V, scores, lam) == pytest.approx(hand_cosent(U, V, scores, lam), rel=1e-9)


def test_a_small_case_by_hand():
    # two pairs, cosines 1 and 0, scores 0 and 1: only (i=1, j=0) is ordered -> log(1 + e^{λ(1 - 0)})
    u, v = [[1.0, 0.0], [1.0, 0.0]], [[2.0, 0.0], [0.0, 3.0]]
    assert loss(u, v, [0.0, 1.0], 2.0) == pytest.approx(math.log(1 + math.exp(2.0)), rel=1e-12)
    assert loss(u, v, [1.0, 0.0], 2.0) == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-12)


def test_ordered_cosines_beat_reversed_ones():
    # negative control: cosines in the order of the scores give a lower loss than the reverse order
    scores = [3.0, 2.0, 1.0, 0.0]
    u = [[1.0, 0.0]] * 4
    ordered = [[1.0, 0.1], [1.0, 0.6], [1.0, 1.5], [0.0, 1.0]]  # cosines falling with the score
    assert loss(u, ordered, scores) < loss(u, ordered[::-1], scores)
    assert loss(u, ordered, scores) < math.log(2)  # all in order: every term below e^0


def test_equal_scores_contribute_nothing_and_keep_a_graph():
    emb = torch.tensor([U, V], dtype=torch.float64, requires_grad=True)
    out = CoSENT(20.0).loss(emb, batch([1.0] * 4))
    assert out.item() == 0.0
    out.backward()
    assert torch.count_nonzero(emb.grad) == 0


def test_large_scale_is_finite():
    assert math.isfinite(loss(U, V, [0.0, 1.0, 2.0, 3.0], 1e4))


def test_needs_labels_and_positive_lambda():
    with pytest.raises(EmbtuneError, match="scores or labels"):
        CoSENT().loss(torch.zeros(2, 3, 2), batch(None))
    with pytest.raises(EmbtuneError, match="λ"):
        CoSENT(0.0)
