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


def test_summary_states_the_selected_step(tmp_path, capsys):
    res = {"retrieval": {"forum": {"metrics": {"ndcg@10": 40.0, "map@100": 30.0}}}, "avg": 80.0}
    after = {"retrieval": {"forum": {"metrics": {"ndcg@10": 42.5, "map@100": 31.0}}}, "avg": 79.5}
    for name, r in (("b", res), ("a", after)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(r))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "metrics.json").write_text(json.dumps({"selected_step": 0, "steps": 50, "best_metric": "dev/ndcg@10",
                                                              "start_value": 60.0, "best_value": 60.0}))
    assert main(["summary", str(tmp_path / "b"), str(tmp_path / "a"), str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "| 40.00 | 42.50 | +2.50 |" in out and "+1.00" in out and "-0.50" in out
    assert "starting model was kept" in out and "Your own data:" in out
    assert main(["summary", str(tmp_path / "x"), str(tmp_path / "a"), str(tmp_path / "m")]) == 2
