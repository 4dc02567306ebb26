"""SimCSE's losses against the paper's formulas, computed by hand with plain Python math."""

from __future__ import annotations

import math

import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.objectives import SupSimCSE, UnsupSimCSE

Z1 = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
Z2 = [[0.8, 0.6], [0.0, 1.0], [-1.0, 1.0]]
Z3 = [[0.0, 1.0], [1.0, 0.0], [1.0, -1.0]]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))


def hand_loss(z1, z2, tau, z3=None, alpha=1.0):
    total = 0.0
    for i in range(len(z1)):
        num = math.exp(cos(z1[i], z2[i]) / tau)
        den = sum(math.exp(cos(z1[i], z2[j]) / tau) for j in range(len(z2)))
        if z3 is not None:
            den += sum((alpha if i == j else 1.0) * math.exp(cos(z1[i], z3[j]) / tau) for j in range(len(z3)))
        total += -math.log(num / den)
    return total / len(z1)


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0])
def test_unsup_loss_matches_hand_computation(tau):
    emb = torch.tensor([Z1, Z2], dtype=torch.float64)
    got = UnsupSimCSE(temperature=tau).loss(emb).item()
    assert got == pytest.approx(hand_loss(Z1, Z2, tau), rel=1e-9)


@pytest.mark.parametrize("tau,alpha", [(0.05, 1.0), (0.5, 2.0), (1.0, 0.25), (0.1, 0.0)])
def test_sup_loss_with_hard_negative_weight_matches_hand_computation(tau, alpha):
    emb = torch.tensor([Z1, Z2, Z3], dtype=torch.float64)
    got = SupSimCSE(temperature=tau, hard_negative_weight=alpha).loss(emb).item()
    assert got == pytest.approx(hand_loss(Z1, Z2, tau, Z3, alpha), rel=1e-9)


def test_sup_without_hard_negatives_is_in_batch_only():
    emb = torch.tensor([Z1, Z2], dtype=torch.float64)
    assert SupSimCSE(0.5).loss(emb).item() == pytest.approx(hand_loss(Z1, Z2, 0.5), rel=1e-9)


def test_weight_changes_the_loss():
    emb = torch.tensor([Z1, Z2, Z3], dtype=torch.float64)
    assert SupSimCSE(0.5, 1.0).loss(emb).item() != pytest.approx(SupSimCSE(0.5, 3.0).loss(emb).item())


def test_bad_hyperparameters():
    with pytest.raises(EmbtuneError, match="temperature"):
        UnsupSimCSE(temperature=0)
    with pytest.raises(EmbtuneError, match="α"):
        SupSimCSE(hard_negative_weight=-1)
