"""The pieces of cross-fitted selection: the pooled value and the stratified paired bootstrap
(training/selection.py), the shared eligibility rule, per-item scores written by a run (--save-item-scores)
and read back, and the folds of the labelled rows (data/dev_split.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embtune.config import make_config
from embtune.data.dev_split import group_folds, split_groups
from embtune.data.readers import read_train_file
from embtune.errors import EmbtuneError
from embtune.evaluation.pair_eval import ITEM_STATS
from embtune.training.selection import (ItemStat, eligible, gain_confidence, pooled_gain_confidence, pooled_value,
                                        read_item_scores)
from tests.conftest import SENTENCES, cfg_for


# ---- pooled value and confidence, by hand --------------------------------------------------------------


def test_pooled_value_weights_each_fold_by_its_items():
    one, three = ItemStat((np.array([1.0]),)), ItemStat((np.array([0.0, 0.0, 0.0]),))
    assert pooled_value([one, three]) == pytest.approx(0.25)  # the mean over all four items
    # a stat that is not a mean (Spearman per fold) is pooled as the folds' values weighted by size
    sp = ITEM_STATS["spearman"]
    a = ItemStat((np.array([1.0, 2, 3, 4]), np.array([1.0, 2, 3, 4])), sp, "spearman")  # 100
    b = ItemStat((np.array([4.0, 3, 2, 1, 0, 5]), np.array([1.0, 2, 3, 4, 5, 6])), sp, "spearman")
    assert pooled_value([a, b]) == pytest.approx((4 * 100 + 6 * b.value()) / 10)


def test_pooled_confidence_by_hand():
    # one item per fold: every resample draws it, so the pooled difference is fixed: 1/4·(+3) + 3/4·d
    start = [ItemStat((np.array([0.0]),)), ItemStat((np.array([0.0, 0.0, 0.0]),))]
    even = [ItemStat((np.array([3.0]),)), ItemStat((np.array([-1.0, -1.0, -1.0]),))]  # 0.75 - 0.75 = 0
    ahead = [ItemStat((np.array([3.0]),)), ItemStat((np.array([-0.9, -0.9, -0.9]),))]  # +0.075
    assert pooled_gain_confidence(start, even) == 0.0  # not strictly better: no confidence
    assert pooled_gain_confidence(start, ahead) == 1.0
    assert pooled_gain_confidence(start, ahead, higher_is_better=False) == 0.0


def test_pooled_confidence_of_one_fold_is_the_plain_bootstrap():
    rng = np.random.default_rng(4)
    s = rng.normal(50, 10, 40)
    c = s + rng.normal(0.4, 3, 40)
    plain = gain_confidence(ItemStat((s,)), ItemStat((c,)), resamples=500, seed=9)
    assert 0 < plain < 1
    assert pooled_gain_confidence([ItemStat((s,))], [ItemStat((c,))], resamples=500, seed=9) == plain


def test_pooling_two_folds_sees_a_gain_one_fold_cannot():
    # the same noisy gain per item: with twice the items the confidence rises (the reason for cross-fitting)
    rng = np.random.default_rng(0)
    s1, s2 = rng.normal(40, 20, 70), rng.normal(40, 20, 70)
    c1, c2 = s1 + rng.normal(1.5, 8, 70), s2 + rng.normal(1.5, 8, 70)
    one = gain_confidence(ItemStat((s1,)), ItemStat((c1,)))
    both = pooled_gain_confidence([ItemStat((s1,)), ItemStat((s2,))], [ItemStat((c1,)), ItemStat((c2,))])
    assert both > one


def test_pooled_confidence_checks_its_folds():
    a = ItemStat((np.array([1.0, 2.0]),))
    with pytest.raises(EmbtuneError, match="fold"):
        pooled_gain_confidence([a], [a, a])
    with pytest.raises(EmbtuneError, match="number of items"):
        pooled_gain_confidence([a], [ItemStat((np.array([1.0]),))])


def test_eligible_rule_with_guard_confidence():
    rule = dict(select_confidence=0.9, guard_tolerance=0.0, guard_waiver=0.0, guard_confidence=0.9)
    assert eligible(0.95, 0.5, loss_confidence=0.6, **rule) == (True, False)  # a loss within the noise: no veto
    assert eligible(0.95, 0.5, loss_confidence=0.95, **rule) == (False, False)  # a loss shown: veto
    assert eligible(0.95, 0.5, loss_confidence=None, **rule) == (False, False)  # no items: the tolerance rule
    assert eligible(0.95, 0.5, loss_confidence=0.6, **dict(rule, guard_confidence=0.0)) == (False, False)


@pytest.mark.parametrize("conf,lost,want", [
    (None, None, (True, False)),  # the start, no test
    (0.95, None, (True, False)),  # confident enough, no guard
    (0.85, None, (False, False)),  # not confident enough
    (0.95, 0.5, (True, False)),  # guard within tolerance 1.0
    (0.95, 2.0, (False, False)),  # guard lost beyond tolerance, no waiver reached (0.99)
    (0.995, 2.0, (True, True)),  # ... waived
])
def test_eligible_rule(conf, lost, want):
    assert eligible(conf, lost, select_confidence=0.9, guard_tolerance=1.0, guard_waiver=0.99) == want
    # negative control: without a waiver the guard always holds
    if lost is not None and lost > 1.0:
        assert eligible(conf, lost, select_confidence=0.9, guard_tolerance=1.0, guard_waiver=0.0) == (False, False)


# ---- --save-item-scores --------------------------------------------------------------------------------


def _dev_beir(folder):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": s}) + "\n"
                                                 for i, s in enumerate(SENTENCES)), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": SENTENCES[(i + 3) % 12]}) + "\n"
                                                  for i in range(6)), encoding="utf-8")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n"
                                                                                      for i in range(6)))
    return folder


def test_save_item_scores_writes_every_evaluation_and_reads_back(tiny_bert, tmp_path):
    from embtune.training import train

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{s}\t{SENTENCES[(i + 1) % 12]}\n" for i, s in enumerate(SENTENCES)), encoding="utf-8")
    dev = _dev_beir(tmp_path / "dev")
    m = train(cfg_for(tiny_bert, pairs, tmp_path / "o", objective="sup-simcse", lr=0.05, eval_steps=2,
                      eval_task=f"beir:{dev}", save_item_scores=True), progress=False)
    items = read_item_scores(tmp_path / "o" / "eval_items.jsonl")
    assert [st for st, _ in items] == [h["step"] for h in m["evaluations"]] == [0, 2, 4, 6]
    for (_, it), h in zip(items, m["evaluations"]):  # the items are the metric's per-query scores
        assert len(it) == 6 and it.name == "mean"
        assert it.value() == pytest.approx(h["beir:dev/ndcg@10"], abs=1e-6)


def test_save_item_scores_needs_an_evaluation(tiny_bert, tmp_path):
    with pytest.raises(EmbtuneError, match="--save-item-scores"):
        make_config(model=str(tiny_bert), train_file="t.txt", output=str(tmp_path / "o"), save_item_scores=True)


def test_read_item_scores_names_a_bad_line(tmp_path):
    p = tmp_path / "eval_items.jsonl"
    p.write_text(json.dumps({"step": 0, "stat": "mean", "arrays": [[1.0, 2.0]]}) + "\n{\"step\": 2}\n")
    with pytest.raises(EmbtuneError, match=r"eval_items.jsonl:2"):
        read_item_scores(p)
    with pytest.raises(EmbtuneError, match="no per-item scores"):
        read_item_scores(tmp_path / "absent.jsonl")


# ---- folds ---------------------------------------------------------------------------------------------


def test_group_folds_hold_out_every_group_once(tmp_path):
    f = tmp_path / "pairs.tsv"
    rows = [(f"q{i % 9}", f"p{i}") for i in range(27)]  # 9 groups of 3 rows
    f.write_text("sent0\tsent1\n" + "".join(f"{q}\t{p}\n" for q, p in rows), encoding="utf-8")
    data = read_train_file(str(f))
    folds = group_folds(data, 3)
    held = [{ex[0] for ex in s.held_out.examples} for s in folds]
    assert [len(h) for h in held] == [3, 3, 3] and set().union(*held) == {f"q{i}" for i in range(9)}
    assert all(not (a & b) for i, a in enumerate(held) for b in held[i + 1:])
    for s, h in zip(folds, held):  # each trains on the other folds' rows, whole groups only
        assert not {ex[0] for ex in s.train.examples} & h
        assert len(s.train) + len(s.held_out) == 27 and len(s.held_out) == 9
    # the folds are runs of the SHA-1 order: with 2 folds, the first is the --dev-fraction 0.5 split
    two = group_folds(data, 2)  # 9 groups: the first 5 (i·2 // 9 == 0 for i < 5), then 4
    first = {ex[0] for ex in two[0].held_out.examples}
    assert first == split_groups([ex[0] for ex in data.examples], 5 / 9) and len(first) == 5
    with pytest.raises(EmbtuneError, match="--cross-fit 5: .* 9 distinct group"):
        group_folds(data, 5)
    with pytest.raises(EmbtuneError, match="at least 2 folds"):
        group_folds(data, 1)
