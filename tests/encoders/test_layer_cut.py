"""Which layers a smaller student keeps: parsing, the spread rule, the dev search, and the cut itself."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
import torch

from embtune.encoders import load_encoder
from embtune.encoders.layer_cut import parse_student_layers, search_layers, spread_layers
from embtune.errors import EmbtuneError
from tests.conftest import build_tiny_bert


def test_parse_a_count_or_layer_numbers():
    assert parse_student_layers("3") == 3
    assert parse_student_layers(3) == 3
    assert parse_student_layers("0,3,5") == (0, 3, 5)
    assert parse_student_layers("5, 0") == (5, 0)  # the given order is kept
    for bad in ("0", "-1", "a", "0,0", "1,-2", "", "1.5", "2,"):
        with pytest.raises(EmbtuneError, match="--student-layers"):
            parse_student_layers(bad)


def test_spread_keeps_first_and_last_evenly_spaced():
    # i * (n-1) / (k-1), rounded half up: 6 -> 3: 0, 2.5 -> 3, 5
    assert spread_layers(6, 3) == (0, 3, 5)
    assert spread_layers(12, 6) == (0, 2, 4, 7, 9, 11)  # 0, 2.2, 4.4, 6.6, 8.8, 11
    assert spread_layers(12, 4) == (0, 4, 7, 11)  # 0, 3.67, 7.33, 11
    assert spread_layers(6, 2) == (0, 5)
    assert spread_layers(6, 6) == tuple(range(6))
    assert spread_layers(6, 1) == (0,)


def _additive(weights):
    """A cut's score = the sum of its layers' weights (the best k-cut is the k largest weights)."""
    return lambda cut: float(sum(weights[i] for i in cut))


def test_exhaustive_search_scores_every_subset_and_keeps_the_best():
    w = [0.1, 0.5, 0.2, 0.9, 0.0, 0.7]
    res = search_layers(6, 3, _additive(w))
    assert res.method == "exhaustive"
    assert [c for c, _ in res.scores] == list(combinations(range(6), 3))  # all 20, in order
    assert res.kept == (1, 3, 5)  # 0.5 + 0.9 + 0.7
    assert dict(res.scores)[(1, 3, 5)] == pytest.approx(2.1)
    low = search_layers(6, 3, _additive(w), higher_is_better=False)  # a loss-like metric: the smallest wins
    assert low.kept == (0, 2, 4)
    # negative control: a score that favours the lowest layers picks the plain truncation
    assert search_layers(6, 3, lambda cut: -float(sum(cut))).kept == (0, 1, 2)


def test_a_tie_keeps_the_cut_tried_first_and_nan_never_wins():
    assert search_layers(4, 2, lambda cut: 1.0).kept == (0, 1)
    nan_first = search_layers(4, 2, lambda cut: math.nan if cut == (0, 1) else float(cut[1]))
    assert nan_first.kept == (0, 3)


def test_greedy_removal_past_the_candidate_limit():
    w = [0.3, 0.1, 0.8, 0.4, 0.05, 0.6, 0.2, 0.9, 0.7, 0.15]
    res = search_layers(10, 3, _additive(w), max_candidates=10)  # C(10,3) = 120 > 10
    assert res.method == "greedy"
    assert len(res.scores) == sum(range(4, 11))  # 10 + 9 + ... + 4 removals tried
    assert res.kept == (2, 7, 8)  # for an additive score, greedy removal keeps the 3 largest weights
    first_round = [c for c, _ in res.scores[:10]]
    assert first_round == [tuple(j for j in range(10) if j != i) for i in range(10)]
    with pytest.raises(EmbtuneError, match="between 1 and 10"):
        search_layers(10, 11, _additive(w))


def test_keep_layers_keeps_those_modules_in_order_and_saves_a_smaller_model(tmp_path):
    folder = build_tiny_bert(tmp_path / "m", layers=4)
    enc = load_encoder(str(folder))
    original = list(enc.backbone.encoder.layer)
    enc.keep_layers((0, 3))
    assert list(enc.backbone.encoder.layer) == [original[0], original[3]]
    assert enc.num_layers == 2 and enc.backbone.config.num_hidden_layers == 2
    enc.save(tmp_path / "cut")
    again = load_encoder(str(tmp_path / "cut"))
    assert again.num_layers == 2
    for a, b in zip(again.backbone.encoder.layer[1].parameters(), original[3].parameters()):
        assert torch.equal(a, b)  # layer 3's weights, now layer 1 of the saved model
    texts = ["a man plays a guitar .", "the horse runs ."]
    assert torch.allclose(torch.as_tensor(again.encode(texts)), torch.as_tensor(enc.encode(texts)), atol=1e-6)
    for bad in ((0, 4), (1, 1), ()):
        with pytest.raises(EmbtuneError, match="--student-layers"):
            enc.keep_layers(bad)
