"""SupCon (Khosla et al. 2020, L^sup_out) against its formula, computed with plain Python math."""

from __future__ import annotations

import math
import random

import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.objectives import SupCon
from embtune.objectives.base import Batch
from embtune.objectives.supcon import supcon_loss

Z = [[1.0, 0.0], [0.9, 0.3], [0.0, 1.0], [-0.2, 1.0], [1.0, 1.0]]
LABELS = ["a", "a", "b", "b", "c"]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))


def hand_supcon(z, labels, tau):
    per_anchor = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        den = sum(math.exp(cos(z[i], z[a]) / tau) for a in others)
        per_anchor.append(-sum(math.log(math.exp(cos(z[i], z[p]) / tau) / den) for p in positives) / len(positives))
    return sum(per_anchor) / len(per_anchor)


def ids(labels):
    m = {lab: k for k, lab in enumerate(dict.fromkeys(labels))}
    return torch.tensor([m[x] for x in labels])


@pytest.mark.parametrize("tau", [0.05, 0.1, 1.0])
def test_matches_the_formula(tau):
    got = supcon_loss(torch.tensor(Z, dtype=torch.float64), ids(LABELS), tau).item()
    assert got == pytest.approx(hand_supcon(Z, LABELS, tau), rel=1e-9)


def test_objective_with_two_views_uses_the_other_view_and_the_class():
    v1 = Z
    v2 = [[x + 0.1, y - 0.2] for x, y in Z]
    emb = torch.tensor([v1, v2], dtype=torch.float64)
    got = SupCon(0.5, two_views=True).loss(emb, Batch([], [], lambda t: [], random.Random(0), LABELS)).item()
    # 2N anchors: each view's positives are its other view and both views of its classmates
    assert got == pytest.approx(hand_supcon(v1 + v2, LABELS + LABELS, 0.5), rel=1e-9)
    one = SupCon(0.5, two_views=False).loss(emb[:1], Batch([], [], lambda t: [], random.Random(0), LABELS)).item()
    assert one == pytest.approx(hand_supcon(v1, LABELS, 0.5), rel=1e-9)  # "c" has no positive: left out


def test_clustered_by_class_beats_mixed():
    # negative control: embeddings grouped by class give a lower loss than the same points with labels swapped
    z = torch.tensor([[1.0, 0.0], [0.95, 0.1], [0.0, 1.0], [0.1, 0.95]], dtype=torch.float64)
    good = supcon_loss(z, torch.tensor([0, 0, 1, 1]), 0.1).item()
    bad = supcon_loss(z, torch.tensor([0, 1, 0, 1]), 0.1).item()
    assert good < bad


def test_same_class_is_never_a_negative():
    # unlike InfoNCE, a classmate is not in the "push away" role: moving classmates together lowers the loss
    far = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    near = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    assert supcon_loss(near, labels, 0.1).item() < supcon_loss(far, labels, 0.1).item()


def test_no_positive_at_all_is_zero_with_finite_gradient():
    z = torch.tensor(Z[:3], dtype=torch.float64, requires_grad=True)
    out = supcon_loss(z, torch.tensor([0, 1, 2]), 0.05)
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(z.grad).all()
    z2 = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    supcon_loss(z2, ids(LABELS), 0.05).backward()
    assert torch.isfinite(z2.grad).all() and z2.grad.abs().sum() > 0


def test_bad_options():
    with pytest.raises(EmbtuneError, match="samples per class"):
        SupCon(samples_per_class=1)
    with pytest.raises(EmbtuneError, match="temperature"):
        SupCon(temperature=0)
