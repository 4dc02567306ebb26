from __future__ import annotations

import math

import pytest
import torch

from embtune.evaluation.align_uniform import alignment, uniformity


def test_alignment_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([[0.0, 2.0], [0.0, 1.0]])
    # normalized: (1,0)-(0,1) -> 2 ; (0,1)-(0,1) -> 0
    assert alignment(x, y) == pytest.approx(1.0)


def test_uniformity_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # squared distances: 2, 4, 2
    want = math.log((math.exp(-4) + math.exp(-8) + math.exp(-4)) / 3)
    assert uniformity(x) == pytest.approx(want)
    assert uniformity(torch.ones(4, 3)) == pytest.approx(0.0)  # collapsed: the worst value
