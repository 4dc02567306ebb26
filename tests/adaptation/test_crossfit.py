"""Cross-fitted selection of a labelled stage (adaptation/crossfit.py): the folds' evaluations pooled and the
rule applied to them, by hand; and adapt runs whose labelled stage is cross-fitted (folds, refit, start)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import embtune.adaptation.crossfit as crossfit
from embtune.adaptation.crossfit import pool_evaluations
from embtune.training.selection import ItemStat
from tests.adaptation.test_adapt import SMALL, _run

RULE = dict(select_confidence=0.9, guard_tolerance=1.0, guard_waiver=0.99, seed=0)


def _fold(values_per_step, guard=None):
    """A fold run as pool_evaluations reads it: (train metrics, per-item scores), one entry per evaluation."""
    evals = [{"step": 2 * e, "select/ndcg@10": float(np.mean(v)), **({"agree/ndcg@10": guard[e]} if guard else {})}
             for e, v in enumerate(values_per_step)]
    items = [(2 * e, ItemStat((np.asarray(v, dtype=float),))) for e, v in enumerate(values_per_step)]
    return {"evaluations": evals}, items


def test_a_gain_on_every_item_of_both_folds_is_kept():
    start = [50.0] * 10
    a = _fold([start, [51.0] * 10, [53.0] * 10])
    b = _fold([start, [49.0] * 10, [52.0] * 10])
    evs, best = pool_evaluations([a, b], "select/ndcg@10", None, [], **RULE)
    assert [e["value"] for e in evs] == [50.0, 50.0, 52.5]  # pooled over the 20 items
    assert evs[1]["confidence"] == 0.0 and not evs[1]["eligible"]  # +1 on one fold, -1 on the other
    assert evs[2]["confidence"] == 1.0 and evs[2]["eligible"] and best == 2
    assert evs[2]["folds"] == [53.0, 52.0]


def test_a_gain_neither_fold_shows_is_not_confident():
    # negative control: fold A's items scatter around the start (+5 / -5, no mean gain), fold B loses 0.1 on every
    # item: the pooled difference is positive only in resamples where A's draw happens to gain more than 0.1
    a = _fold([[50.0] * 10, [55.0, 45.0] * 5])  # mean 50: a gain in some resamples, a loss in others
    b = _fold([[50.0] * 10, [49.9] * 10])
    evs, best = pool_evaluations([a, b], "select/ndcg@10", None, [], **RULE)
    assert 0.0 < evs[1]["confidence"] < 0.9 and best == 0


def test_the_guard_is_the_folds_mean_and_the_waiver_needs_near_certainty():
    start = [50.0] * 10
    # both folds gain +2 on every item (confidence 1.0) but lose agreement: fold means 60 -> (57 + 58) / 2
    a = _fold([start, [52.0] * 10], guard=[60.0, 57.0])
    b = _fold([start, [52.0] * 10], guard=[60.0, 58.0])
    evs, best = pool_evaluations([a, b], "select/ndcg@10", "agree/ndcg@10", [], **RULE)
    assert evs[1]["guard"] == 57.5 and evs[1]["guard_waived"] and best == 1
    no_waiver = dict(RULE, guard_waiver=0.0)
    evs, best = pool_evaluations([a, b], "select/ndcg@10", "agree/ndcg@10", [], **no_waiver)
    assert best == 0 and not evs[1]["eligible"]
    # within tolerance (0.6 lost) the guard does not bite
    c = _fold([start, [52.0] * 10], guard=[60.0, 59.4])
    evs, best = pool_evaluations([c, c], "select/ndcg@10", "agree/ndcg@10", [], **no_waiver)
    assert best == 1 and "guard_waived" not in evs[1]


def test_ties_keep_the_earlier_step_and_steps_must_match():
    start = [50.0] * 10
    a = _fold([start, [52.0] * 10, [52.0] * 10])
    evs, best = pool_evaluations([a, a], "select/ndcg@10", None, [], **RULE)
    assert best == 1
    m, items = _fold([start, [52.0] * 10])
    m["evaluations"][1]["step"] = 3
    with pytest.raises(Exception, match="different steps"):
        pool_evaluations([a, (m, items)], "select/ndcg@10", None, [], **RULE)


# ---- adapt runs -----------------------------------------------------------------------------------------


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


def _same(a, b) -> bool:
    a, b = _weights(a), _weights(b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _queries(folder: Path) -> set[str]:
    return {json.loads(x)["text"] for x in open(folder / "queries.jsonl", encoding="utf-8")}


def _trained(path: Path) -> list[str]:
    return [r.split("\t")[0] for r in path.read_text(encoding="utf-8").splitlines()[1:]]


def test_each_fold_trains_on_the_others_and_every_query_selects(domain, tiny_st, tmp_path):
    out = tmp_path / "run"
    rep = _run(domain, out, model=tiny_st, pairs=domain["pairs"], teacher=tiny_st, watch=True,
               eval_task=f"beir:{domain['heldout']}")
    assert rep["status"] == "done" and rep["inputs"]["cross_fit_folds"] == 2
    d = out / "data"
    folds = [_queries(d / f"selection-fold{j}") for j in (1, 2)]
    assert folds[0] and folds[1] and not folds[0] & folds[1]
    assert folds[0] | folds[1] == _queries(d / "selection") == set(_trained(d / "pairs-train.tsv"))  # all 40
    assert rep["inputs"]["selection_queries"] == 40
    for j, held in enumerate(folds, 1):  # a fold's queries are never trained on by its own run
        assert not held & set(_trained(d / f"pairs-fold{j}-train.tsv"))
    stage = next(s for s in rep["stages"] if s.get("objective") == "guided")
    assert stage["cross_fit"] == {"folds": 2} and stage["guard"] == "agree/ndcg@10"
    for j in (1, 2):
        saved = json.loads((out / "stages" / "2-guided" / f"fold-{j}" / "train_config.json").read_text())
        # a fold run records; the pooled rule decides (no confidence test or guard inside it)
        assert saved["save_item_scores"] and saved["select_confidence"] == 0.0 and saved["guard_metric"] is None
        assert saved["train_file"].endswith(f"pairs-fold{j}-train.tsv")
        assert saved["eval_task"].startswith(f"select=beir:{d / f'selection-fold{j}'}")
        lines = (out / "stages" / "2-guided" / f"fold-{j}" / "eval_items.jsonl").read_text().splitlines()
        assert len(lines) == len(stage["evaluations"])
    for e in stage["evaluations"]:  # 20 queries a fold: the pooled value is the folds' mean
        assert e["value"] == pytest.approx(sum(e["folds"]) / 2, abs=1e-9)
        assert "beir:heldout/ndcg@10" in e["held_out"]
    # the corpus stage is guarded by the labels: every query (none is trained on there)
    first = json.loads((out / "stages" / "1-distill" / "train_config.json").read_text())
    assert first["eval_task"].startswith(f"select=beir:{d / 'selection'}")
    if stage["selected_step"]:
        assert _same(out / "model", stage["output"]) and stage["output"].endswith("refit")
    else:
        assert _same(out / "model", out / "stages" / "1-distill")
    assert "cross-fitted over 2 folds" in (out / "report.md").read_text()


def test_a_chosen_step_is_refit_on_every_row(domain, tiny_st, tmp_path, monkeypatch):
    # the choice is pool_evaluations' (tested above); here it is fixed to the last evaluation to follow the refit
    real = crossfit.pool_evaluations

    def last(*a, **kw):
        evs, _ = real(*a, **kw)
        return evs, len(evs) - 1

    monkeypatch.setattr(crossfit, "pool_evaluations", last)
    out = tmp_path / "run"
    rep = _run(domain, out, model=tiny_st, pairs=domain["pairs"])
    stage = next(s for s in rep["stages"] if "objective" in s)
    fold_steps = stage["steps"]
    assert stage["selected_step"] == stage["evaluations"][-1]["step"] == fold_steps
    # SMALL fixes 4 steps for every stage: the refit takes the same share (all) of that schedule
    assert stage["refit"]["steps"] == SMALL["steps"] and stage["refit"]["share_of_schedule"] == 1.0
    saved = json.loads((out / "stages" / "1-pairs" / "refit" / "train_config.json").read_text())
    assert saved["train_file"].endswith("pairs-train.tsv") and saved["eval_task"] is None
    assert saved["max_steps"] == SMALL["steps"]
    assert _same(out / "model", out / "stages" / "1-pairs" / "refit")
    assert not _same(out / "model", tiny_st)
    assert "refit" in (out / "report.md").read_text()


def test_when_no_step_is_eligible_the_stage_returns_its_start(domain, tiny_st, tmp_path, monkeypatch):
    real = crossfit.pool_evaluations
    monkeypatch.setattr(crossfit, "pool_evaluations", lambda *a, **kw: (real(*a, **kw)[0], 0))
    out = tmp_path / "run"
    rep = _run(domain, out, model=tiny_st, scored=domain["scored"])  # scored pairs are cross-fitted too
    stage = next(s for s in rep["stages"] if "objective" in s)
    assert stage["objective"] == "cosent" and stage["cross_fit"] == {"folds": 2}
    assert stage["selected_step"] == 0 and "refit" not in stage
    assert not (out / "stages" / "1-cosent" / "refit").exists()
    assert _same(out / "model", tiny_st)
    assert (out / "data" / "scored-selection-fold1.tsv").is_file()


def test_two_labelled_inputs_or_classes_hold_out_a_split(domain, tiny_st, tmp_path):
    rep = _run(domain, tmp_path / "a", model=tiny_st, classes=domain["classes"])
    assert "cross_fit_folds" not in rep["inputs"] and "cross_fit" not in rep["stages"][-1]
    rep = _run(domain, tmp_path / "b", model=tiny_st, pairs=domain["pairs"], scored=domain["scored"])
    assert "cross_fit_folds" not in rep["inputs"]
    assert all("cross_fit" not in s for s in rep["stages"])


def test_cross_fit_option_is_checked():
    from embtune.adaptation.config import make_adapt_config
    from embtune.errors import EmbtuneError

    with pytest.raises(EmbtuneError, match="--cross-fit"):
        make_adapt_config(corpus="c.txt", output="o", cross_fit=0)


def test_the_refit_takes_the_chosen_share_of_the_full_data_schedule(domain, tiny_st, tmp_path, monkeypatch):
    real = crossfit.pool_evaluations
    monkeypatch.setattr(crossfit, "pool_evaluations", lambda *a, **kw: (real(*a, **kw)[0], 1))
    out = tmp_path / "run"
    rep = _run(domain, out, model=tiny_st, pairs=domain["pairs"], steps=None)  # each stage's own steps
    stage = next(s for s in rep["stages"] if "objective" in s)
    # 40 pairs of 40 queries: folds of 20 rows, batch 8, 3 epochs -> 9 steps, evaluated at 0, 4, 8, 9
    assert stage["steps"] == 9 and [e["step"] for e in stage["evaluations"]] == [0, 4, 8, 9]
    # step 4 of 9 chosen; all 40 rows, 3 epochs -> 15 steps; the refit: round(4 / 9 * 15) = 7
    assert stage["selected_step"] == 4 and stage["refit"]["steps"] == 7
    saved = json.loads((out / "stages" / "1-pairs" / "refit" / "train_config.json").read_text())
    assert saved["max_steps"] == 7


def test_the_refit_model_is_refused_when_it_fails_the_guard(domain, tiny_st, tmp_path, monkeypatch):
    import embtune.evaluation.tasks as tasks

    real = crossfit.pool_evaluations
    monkeypatch.setattr(crossfit, "pool_evaluations", lambda *a, **kw: (real(*a, **kw)[0], 1))
    # the refit model's agreement with the teacher, as the guard scores it after the refit: far below the start
    monkeypatch.setattr(tasks, "evaluate_tasks", lambda ts, enc, precision="fp32", **kw: {"agree/ndcg@10": -100.0})
    out = tmp_path / "run"
    rep = _run(domain, out, model=tiny_st, pairs=domain["pairs"], teacher=tiny_st, guard_waiver=0.0)
    stage = next(s for s in rep["stages"] if s.get("objective") == "guided")
    assert stage["refit"]["guard"] == -100.0 and stage["refit"]["guard_ok"] is False
    assert stage["selected_step"] == 0 and stage["best_value"] == stage["start_value"]
    assert _same(out / "model", out / "stages" / "1-distill")  # the stage's start
    assert "refused by the guard" in (out / "report.md").read_text()


def test_too_few_groups_or_a_later_stage_fall_back_to_a_held_out_split(domain, tiny_st, tmp_path, caplog):
    import logging

    few = tmp_path / "few.tsv"  # 3 queries: 2 folds need at least 4
    few.write_text("".join(domain["pairs"].read_text().splitlines(keepends=True)[:4]), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        rep = _run(domain, tmp_path / "a", model=tiny_st, pairs=few)
    assert rep["status"] == "done" and "cross_fit_folds" not in rep["inputs"]
    assert "--cross-fit 2: not used" in caplog.text and "3 distinct group" in caplog.text
    # a stage after the labelled one would be guarded on rows the refit trained on: no cross-fitting
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rep = _run(domain, tmp_path / "b", model=tiny_st, pairs=domain["pairs"], teacher=tiny_st,
                   stages="guided,distill")
    assert "cross_fit_folds" not in rep["inputs"] and "the plan: guided, distill" in caplog.text
