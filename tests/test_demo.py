"""The bundled forum of `make demo`: the tuning pairs never touch the evaluation half."""

from __future__ import annotations

import json

from embtune.demo import main, prepare
from embtune.evaluation.retrieval import load_beir


def test_prepare_writes_a_forum_without_leaks(tmp_path):
    counts = prepare(tmp_path)
    assert counts == {"titles": 16705, "tuning_pairs": 673, "tuning_queries": 395, "evaluation_pairs": 685}
    task = load_beir(tmp_path / "forum", split="test")
    assert len(task.corpus) == 16705 and len(task.queries) == 409
    tuning_questions = {ln.split("\t")[0] for ln in (tmp_path / "pairs.tsv").read_text(encoding="utf-8").splitlines()[1:]}
    assert len(tuning_questions) == 395
    assert not tuning_questions & set(task.queries.values())
    assert len((tmp_path / "titles.txt").read_text(encoding="utf-8").splitlines()) == 16705


def test_summary_states_the_kept_stage_and_step(tmp_path, capsys):
    rep = {"status": "done", "seconds": 300.0,
           "before": {"tasks": {"forum/ndcg@10": 40.0, "forum/map@100": 30.0}, "sts_avg": 80.0},
           "after": {"tasks": {"forum/ndcg@10": 42.5, "forum/map@100": 31.0}, "sts_avg": 79.5},
           "stages": [{"stage": "distill", "objective": "listwise-distill", "status": "done", "metric": "select/ndcg@10",
                       "start_value": 50.0, "best_value": 52.0, "selected_step": 300, "steps": 400,
                       "evaluations": [{"step": 0, "value": 50.0, "held_out": {"forum/ndcg@10": 40.0}},
                                       {"step": 300, "value": 52.0, "held_out": {"forum/ndcg@10": 42.5}},
                                       {"step": 400, "value": 51.0, "held_out": {"forum/ndcg@10": 42.9}}]},
                      {"stage": "guided", "objective": "guided", "status": "done", "metric": "select/ndcg@10",
                       "start_value": 52.0, "best_value": 52.0, "selected_step": 0, "steps": 200}]}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.json").write_text(json.dumps(rep))
    assert main(["summary", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "| 40.00 | 42.50 | +2.50 |" in out and "+1.00" in out and "-0.50" in out
    assert "kept step 300 of 400" in out and "did not beat its start" in out and "Your own data:" in out
    # --watch: the held-out value of every evaluation and the step that was best on it
    assert "40.00 (step 0), 42.50 (step 300), 42.90 (step 400); best at step 400" in out
    assert out.count("held-out nDCG@10 at each evaluation") == 1  # the guided stage has no watched values
    assert main(["summary", str(tmp_path / "missing")]) == 2
