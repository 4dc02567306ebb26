from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import embtune
from embtune.adaptation import adapt, plan
from embtune.adaptation.config import make_adapt_config
from embtune.errors import EmbtuneError

SMALL = dict(steps=4, evaluations=2, batch_size=8, max_seq_length=16, lr=1e-3, sts=False, seed=3)


def _run(domain, out, **kw):
    values = dict(SMALL, model=str(kw.pop("model")), corpus=str(domain["corpus"]), output=str(out))
    values.update({k: str(v) if isinstance(v, Path) else v for k, v in kw.items()})
    return adapt(**values)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_corpus_pairs_and_teacher_run_the_planned_chain(domain, tiny_st, tmp_path):
    out = tmp_path / "run"
    # one held-out split (--cross-fit 1); the cross-fitted path: test_crossfit.py
    rep = _run(domain, out, model=tiny_st, pairs=domain["pairs"], teacher=tiny_st,
               eval_task=f"beir:{domain['heldout']}", cross_fit=1)
    assert rep["status"] == "done"
    assert rep["plan"] == ["distill", "guided"]
    stages = [s for s in rep["stages"] if "objective" in s]
    assert [s["objective"] for s in stages] == ["listwise-distill", "guided"]
    # the chain: stage 2 starts from stage 1's returned model; each stage is selected on what it trains (the
    # corpus stage on agreement with the teacher, the labels guarding it; the pairs stage on the pairs, agreement
    # guarding it)
    assert stages[1]["from"] == stages[0]["output"]
    assert (stages[0]["metric"], stages[0]["guard"]) == ("agree/ndcg@10", "select/ndcg@10")
    assert (stages[1]["metric"], stages[1]["guard"]) == ("select/ndcg@10", "agree/ndcg@10")
    # each stage returns its best (its start a candidate): the selection value never falls within a stage
    assert stages[0]["best_value"] >= stages[0]["start_value"] and stages[1]["best_value"] >= stages[1]["start_value"]
    # stage 2's start is stage 1's kept model, scored on stage 2's metric: stage 1's guard value at its kept step
    kept = next(e for e in stages[0]["evaluations"] if e["step"] == stages[0]["selected_step"])
    assert stages[1]["start_value"] == pytest.approx(kept["guard"], abs=1e-4)
    # selection ranks the whole corpus (64 texts), not only the pairs file's positives
    sel = out / "data" / "selection"
    assert sum(1 for _ in open(sel / "corpus.jsonl")) == 64
    held = [json.loads(x)["text"] for x in open(sel / "queries.jsonl")]
    trained = (out / "data" / "pairs-train.tsv").read_text().splitlines()[1:]
    assert held and not set(held) & {r.split("\t")[0] for r in trained}  # no held-out query is trained on
    # with a teacher beside the labels, agreement with the teacher guards every stage
    assert (out / "data" / "agreement" / "queries.jsonl").is_file()
    saved = json.loads((out / "stages" / "2-guided" / "train_config.json").read_text())
    assert saved["guard_metric"] == "agree/ndcg@10" and saved["select_confidence"] == 0.9
    # the labels may overrule the teacher's guard when near-certain (--guard-waiver), never the reverse
    assert saved["guard_waiver"] == 0.99
    first = json.loads((out / "stages" / "1-distill" / "train_config.json").read_text())
    assert first["guard_metric"] == "select/ndcg@10" and first["guard_waiver"] == 0.0
    # the labels veto the corpus stage on a loss they show (--label-guard-confidence), the teacher as before
    assert first["guard_confidence"] == 0.9 and saved["guard_confidence"] == 0.0
    # the held-out task, before and after; the model loads
    key = f"beir:heldout/ndcg@10"
    assert key in rep["before"]["tasks"] and key in rep["after"]["tasks"]
    assert embtune.load(str(out / "model")).encode(["a man ."]).shape == (1, 32)
    md = (out / "report.md").read_text()
    assert "Your held-out task" in md and "teacher pass" in md and "Kept:" in md
    assert json.loads((out / "adapt_config.json").read_text())["teacher"] == str(tiny_st)
    assert (out / "versions.json").is_file() and not (out / ".adapt.lock").exists()


def test_watch_records_the_held_out_task_at_every_evaluation(domain, tiny_st, tmp_path):
    out = tmp_path / "run"
    rep = _run(domain, out, model=tiny_st, pairs=domain["pairs"], eval_task=f"beir:{domain['heldout']}", watch=True,
               cross_fit=1)
    stage = next(s for s in rep["stages"] if "objective" in s)
    key = "beir:heldout/ndcg@10"
    assert len(stage["evaluations"]) >= 2 and all(key in e["held_out"] for e in stage["evaluations"])
    # the watched value at the kept step is the returned model's held-out figure; at step 0, the start's
    kept = next(e for e in stage["evaluations"] if e["step"] == stage["selected_step"])
    assert kept["held_out"][key] == pytest.approx(rep["after"]["tasks"][key], abs=1e-3)
    assert stage["evaluations"][0]["held_out"][key] == pytest.approx(rep["before"]["tasks"][key], abs=1e-3)
    # the watched task is read with its test qrels and never selects
    saved = json.loads((out / "stages" / "1-pairs" / "train_config.json").read_text())
    assert saved["watch_task"] == f"beir:{domain['heldout']}" and saved["metric_for_best"] == "select/ndcg@10"
    assert "Held-out at every evaluation" in (out / "report.md").read_text()


def test_watch_needs_an_eval_task(domain, tmp_path):
    with pytest.raises(EmbtuneError, match="--watch: .*--eval-task"):
        embtune.adapt(corpus=str(domain["corpus"]), output=str(tmp_path / "r"), pairs=str(domain["pairs"]), watch=True)


def test_the_kept_model_is_the_last_stages_selected_checkpoint(domain, tiny_st, tmp_path):
    out = tmp_path / "run"
    rep = _run(domain, out, model=tiny_st, pairs=domain["pairs"], cross_fit=1)
    assert rep["plan"] == ["pairs"]
    stage = out / "stages" / "1-pairs"
    a, b = _weights(out / "model"), _weights(stage)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (out / "model" / "checkpoints").exists()


def test_a_stage_that_cannot_beat_the_start_hands_back_the_start(domain, tiny_st, tmp_path):
    # a learning rate this large wrecks the model in one step: selection must keep step 0 (negative control
    # for the guarantee, which a run that always improved would not exercise)
    out = tmp_path / "run"
    rep = _run(domain, out, model=tiny_st, pairs=domain["pairs"], lr=5.0, steps=2, evaluations=1)
    stage = [s for s in rep["stages"] if "objective" in s][0]
    start = _weights(Path(tiny_st))
    kept = _weights(out / "model")
    if stage["selected_step"] == 0:
        assert all(torch.equal(start[k], kept[k]) for k in start)
    else:  # the wrecked model happened to score higher on the selection task: it is then what was kept
        assert stage["best_value"] > stage["start_value"]


def test_teacher_alone_selects_on_agreement_with_the_teacher(domain, tiny_st, tmp_path):
    out = tmp_path / "run"
    rep = _run(domain, out, model=tiny_st, teacher=tiny_st)
    assert rep["plan"] == ["distill"] and rep["selection"]["kind"] == "teacher-agreement"
    queries = [json.loads(x)["text"] for x in open(out / "data" / "selection" / "queries.jsonl")]
    train = (out / "data" / "corpus.txt").read_text().splitlines()
    assert queries and not set(queries) & set(train)  # held-out texts are never distilled on
    assert len(queries) + len(train) == 64


def test_an_int8_onnx_teacher_runs_the_pass_once_and_the_stage_reads_it(domain, tiny_st, tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    import logging

    import numpy as np

    from embtune.encoders import load_encoder

    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        rep = _run(domain, out, model=tiny_st, teacher=tiny_st, teacher_backend="onnx-int8")
    passed = next(s for s in rep["stages"] if s["stage"] == "teacher pass")
    assert passed["backend"] == "onnx-int8" and passed["precision"] == "fp32" and passed["texts_encoded"] == 64
    saved = json.loads((out / "stages" / "1-distill" / "train_config.json").read_text())
    assert saved["teacher_backend"] == "onnx-int8"
    # the stage found its targets in the cache (sliced from the one pass), it did not run the teacher again
    assert "teacher embeddings from the cache" in caplog.text
    assert sum("encoding " in r.getMessage() and "with the teacher" in r.getMessage() for r in caplog.records) == 1
    # the pass really ran int8: the agreement task's neighbours come from int8 embeddings, which are close to
    # the fp32 teacher's but not equal (a control that the backend is not ignored)
    texts = (domain["corpus"]).read_text().splitlines()
    fp32 = load_encoder(str(tiny_st)).encode(texts[:16], normalize=True)
    int8 = load_encoder(str(tiny_st), backend="onnx-int8").encode(texts[:16], normalize=True)
    assert not np.allclose(fp32, int8, atol=1e-6) and float(np.mean(np.sum(fp32 * int8, axis=1))) > 0.95


@pytest.mark.parametrize("flag,objective,metric", [("scored", "cosent", "select/spearman"),
                                                   ("classes", "supcon", "select/map")])
def test_labels_of_other_kinds(domain, tiny_st, tmp_path, flag, objective, metric):
    rep = _run(domain, tmp_path / "run", model=tiny_st, **{flag: domain[flag]})
    stage = [s for s in rep["stages"] if "objective" in s][0]
    assert stage["objective"] == objective and stage["metric"] == metric and rep["status"] == "done"


def test_plan_follows_the_data_and_stages_are_checked():
    assert [s.name for s in plan({"corpus", "teacher", "pairs", "scored"})] == ["distill", "guided", "cosent"]
    assert [s.name for s in plan({"corpus", "pairs"})] == ["pairs"]
    with pytest.raises(EmbtuneError, match="--corpus alone"):
        plan({"corpus"})
    with pytest.raises(EmbtuneError, match="--stages guided: needs --teacher"):
        plan({"corpus", "pairs"}, ["guided"])
    with pytest.raises(EmbtuneError, match="unknown stage 'nope'"):
        plan({"corpus", "pairs"}, ["nope"])
    # labelled stages run 3 epochs of their rows (capped); a corpus stage its own steps
    from embtune.adaptation.recipes import STAGES

    assert STAGES["pairs"].steps_for(538, 64) == 27 and STAGES["pairs"].steps_for(10**6, 64) == 1000
    assert STAGES["distill"].steps_for(10**6, 64) == STAGES["distill"].steps


# ---- bad input: each a clear error naming the file, line or flag -------------------------------------------

def test_empty_corpus(domain, tiny_st, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(EmbtuneError, match="empty.txt: no documents"):
        adapt(**dict(SMALL, model=str(tiny_st), corpus=str(empty), output=str(tmp_path / "o"), pairs=str(domain["pairs"])))


def test_a_pairs_positive_missing_from_the_corpus_names_the_line(domain, tiny_st, tmp_path):
    bad = tmp_path / "pairs.tsv"
    lines = domain["pairs"].read_text().splitlines()
    lines[3] = "a question\ta text that is not in the corpus"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(EmbtuneError, match=r"pairs.tsv:4: --pairs: the positive 'a text that is not"):
        _run(domain, tmp_path / "o", model=tiny_st, pairs=bad)


def test_repeated_corpus_ids(domain, tiny_st, tmp_path):
    c = tmp_path / "c.jsonl"
    c.write_text('{"_id": "1", "text": "a man ."}\n{"_id": "2", "text": "a dog ."}\n{"_id": "1", "text": "x"}\n')
    with pytest.raises(EmbtuneError, match=r"c.jsonl:3: duplicate document id '1'"):
        adapt(**dict(SMALL, model=str(tiny_st), corpus=str(c), output=str(tmp_path / "o"), teacher=str(tiny_st)))


def test_labels_in_a_layout_the_flag_cannot_use(domain, tiny_st, tmp_path):
    with pytest.raises(EmbtuneError, match=r"--pairs .*scored.tsv: expected \(query, positive\) pairs"):
        _run(domain, tmp_path / "o", model=tiny_st, pairs=domain["scored"])
    with pytest.raises(EmbtuneError, match=r"--classes .*pairs.tsv: expected class-labelled texts"):
        _run(domain, tmp_path / "o2", model=tiny_st, classes=domain["pairs"])


def test_a_teacher_that_cannot_be_loaded(domain, tiny_st, tmp_path):
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-family"}')
    with pytest.raises(EmbtuneError, match=r"--teacher .*not-a-model: cannot be loaded"):
        _run(domain, tmp_path / "o", model=tiny_st, teacher=broken)


def test_an_output_folder_in_use(domain, tiny_st, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(EmbtuneError, match="--output .*: the folder is not empty"):
        _run(domain, out, model=tiny_st, pairs=domain["pairs"])
    (out / "something").unlink()
    (out / ".adapt.lock").write_text(str(os.getppid()))  # a live process holds it
    with pytest.raises(EmbtuneError, match="in use by another embtune adapt"):
        _run(domain, out, model=tiny_st, pairs=domain["pairs"])


def test_a_failing_stage_keeps_the_earlier_stages_and_says_which(domain, tiny_st, tmp_path, monkeypatch):
    import embtune.training as training

    real = training.train
    calls = []

    def flaky(cfg, **kw):
        calls.append(cfg.objective)
        if cfg.objective == "guided":
            raise EmbtuneError("disk full (injected)")
        return real(cfg, **kw)

    monkeypatch.setattr(training, "train", flaky)
    out = tmp_path / "run"
    with pytest.raises(EmbtuneError, match=r"stage 2 \(guided\) failed: disk full"):
        _run(domain, out, model=tiny_st, pairs=domain["pairs"], teacher=tiny_st)
    rep = json.loads((out / "report.json").read_text())
    assert rep["status"] == "failed" and calls == ["listwise-distill", "guided"]
    assert (out / "stages" / "1-distill" / "model.safetensors").is_file()
    assert "stage 2 (guided) failed" in (out / "report.md").read_text()


def test_options_are_checked_and_named(tmp_path):
    with pytest.raises(EmbtuneError, match="--evaluations: expected a finite value >= 1"):
        make_adapt_config(corpus="c.txt", output="o", evaluations=0)
    with pytest.raises(EmbtuneError, match="--nope: unknown option 'nope'"):
        make_adapt_config(corpus="c.txt", output="o", nope=1)
    with pytest.raises(EmbtuneError, match="--corpus: required"):
        make_adapt_config(output="o")
    y = tmp_path / "a.yaml"
    y.write_text("corpus: c.txt\noutput: o\nsteps: many\n")
    with pytest.raises(EmbtuneError, match=r"a.yaml:3: option 'steps'"):
        make_adapt_config(str(y))


def test_cli(domain, tiny_st, tmp_path, capsys):
    from embtune.cli import main

    out = tmp_path / "cli"
    y = tmp_path / "a.yaml"
    y.write_text(f"steps: 2\nevaluations: 1\nbatch_size: 8\nmax_seq_length: 16\nsts: false\n")
    rc = main(["adapt", "--config", str(y), "--model", str(tiny_st), "--corpus", str(domain["corpus"]),
               "--pairs", str(domain["pairs"]), "--output", str(out), "--eval-task", f"beir:{domain['heldout']}"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "# embtune adapt" in printed and "beir:heldout/ndcg@10" in printed
    saved = json.loads((out / "adapt_config.json").read_text())
    assert saved["steps"] == 2 and saved["trust_remote_code"] is False
    assert main(["adapt", "--model", str(tiny_st), "--corpus", str(tmp_path / "missing.txt"), "--output",
                 str(tmp_path / "x"), "--pairs", str(domain["pairs"])]) == 2
    assert "--corpus" in capsys.readouterr().err


def test_bad_input_never_clears_the_earlier_run(domain, tiny_st, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.md").write_text("an earlier run")
    with pytest.raises(EmbtuneError, match="--pairs"):
        adapt(**dict(SMALL, model=str(tiny_st), corpus=str(domain["corpus"]), output=str(out),
                     pairs=str(domain["scored"])), overwrite=True)
    assert (out / "report.md").read_text() == "an earlier run"


def test_embtune_adapt_stays_the_function_once_its_package_is_imported():
    # a subpackage named like the function would replace it on first import (a second call would fail)
    import embtune.adaptation  # noqa: F401

    assert callable(embtune.adapt) and embtune.adapt.__module__ == "embtune"
