"""--eval-task specs, metric names and --metric-for-best validation (no file is read at config time)."""

from __future__ import annotations

import pytest

from embtune.config import make_config
from embtune.errors import EmbtuneError
from embtune.evaluation.tasks import parse_task, parse_tasks, resolve_metric


def test_names_and_declared_metrics():
    assert parse_task("stsb-dev").primary == "stsb-dev/spearman"
    assert parse_task("lcqmc").primary == "lcqmc/spearman"
    t = parse_task("beir:/data/cqadupstack/android/")
    assert t.name == "beir:android" and t.primary == "beir:android/ndcg@10" and "beir:android/map" in t.full_names()
    assert parse_task("binary:dev.tsv.gz").full_names() == {"binary:dev/ap": True, "binary:dev/accuracy": True,
                                                             "binary:dev/f1": True}
    assert parse_task("mine=classes:x/labels.csv").primary == "mine/map"
    assert parse_task("stsb-dev").full_names()["stsb-dev/uniformity"] is False  # lower is better


def test_default_task_and_aliases():
    tasks = parse_tasks(None)
    assert [t.name for t in tasks] == ["stsb-dev"]
    assert resolve_metric(None, tasks) == ("stsb-dev/spearman", True)
    assert resolve_metric("stsb_dev_spearman", tasks) == ("stsb-dev/spearman", True)
    assert resolve_metric("alignment", tasks) == ("stsb-dev/alignment", False)
    assert resolve_metric("spearman", tasks) == ("stsb-dev/spearman", True)  # a bare name of the only task
    both = parse_tasks("binary:a.tsv,beir:f", sickr=True)
    assert [t.name for t in both] == ["binary:a", "beir:f", "sickr-dev"]
    assert resolve_metric(None, both)[0] == "binary:a/ap"


def test_bad_specs_and_metrics_are_errors():
    with pytest.raises(EmbtuneError, match="--eval-task 'nope'"):
        parse_task("nope")
    with pytest.raises(EmbtuneError, match="--eval-task 'pairs:x.tsv'"):
        parse_task("pairs:x.tsv")
    with pytest.raises(EmbtuneError, match="two tasks are named 'binary:dev'"):
        parse_tasks("binary:a/dev.tsv,binary:b/dev.tsv")
    parse_tasks("binary:a/dev.tsv,b=binary:b/dev.tsv")
    with pytest.raises(EmbtuneError, match="--metric-for-best 'beir:x/ndcg@10'.*produce: binary:dev/ap"):
        resolve_metric("beir:x/ndcg@10", parse_tasks("binary:dev.tsv"))


def test_config_checks_eval_options():
    cfg = make_config(eval_task=["binary:d.tsv", "beir:f"], metric_for_best="beir:f/map")
    assert cfg.eval_task == "binary:d.tsv,beir:f" and cfg.evaluates
    with pytest.raises(EmbtuneError, match="--metric-for-best 'stsb-dev/ap'"):
        make_config(eval_steps=5, metric_for_best="stsb-dev/ap")
    with pytest.raises(EmbtuneError, match="--metric-for-best: no evaluation is asked for"):
        make_config(metric_for_best="stsb-dev/spearman")
    for bad in (0, 0.6, -0.1):
        with pytest.raises(EmbtuneError, match=r"--dev-fraction: expected a value in \(0, 0.5\]"):
            make_config(objective="sup-simcse", dev_fraction=bad)
    make_config(objective="sup-simcse", dev_fraction=0.5, metric_for_best="dev/ndcg@10")
    with pytest.raises(EmbtuneError, match="--anchor-weight"):
        make_config(anchor_weight=-1)
