"""Own-task selection: the starting model is a candidate; --dev-fraction; the anchor to the starting model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from embtune.data.dev_split import hold_out, split_groups
from embtune.data.readers import read_train_file
from embtune.errors import EmbtuneError
from embtune.training import train
from embtune.training.anchor import anchor_loss
from tests.conftest import SENTENCES, cfg_for


@pytest.fixture
def pair_file(tmp_path):
    # 12 queries, each with 1-3 positives: rows of a query must stay together
    rows = []
    for i, q in enumerate(SENTENCES):
        for j in range(1 + i % 3):
            rows.append(f"{q}\t{SENTENCES[(i + 1 + 4 * j) % 12]} {j}")
    p = tmp_path / "pairs.tsv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p


@pytest.fixture
def binary_file(tmp_path):
    rows = [f"{SENTENCES[i]}\t{SENTENCES[(i + 1) % 12]}\t{i % 2}" for i in range(12)]
    p = tmp_path / "dev.tsv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p


def test_training_that_only_hurts_returns_the_starting_weights(tiny_bert, pair_file, tmp_path, monkeypatch):
    """Scripted: the metric falls at every evaluation after step 0 -> the run hands back step 0's weights
    exactly, and says so."""
    import embtune.training.trainer as trainer_mod

    scripted = iter([60.0, 50.0, 40.0, 30.0])
    snapshots = []

    def falling(tasks, encoder, batch_size=64, precision="fp32"):
        snapshots.append({k: v.detach().clone() for k, v in encoder.state_dict().items()})
        return {"dev/ndcg@10": next(scripted), "dev/map": 1.0}

    monkeypatch.setattr(trainer_mod, "evaluate_tasks", falling)
    m = train(cfg_for(tiny_bert, pair_file, tmp_path / "o", objective="sup-simcse", lr=0.05, eval_steps=2,
                      dev_fraction=0.25), progress=False)
    assert m["selected_step"] == 0 and m["start_value"] == 60.0 and m["best_value"] == 60.0
    saved = load_file(str(tmp_path / "o" / "model.safetensors"))
    start = snapshots[0]
    assert any(not torch.equal(start[k], snapshots[-1][k]) for k in start)  # training did move the weights
    for k, v in saved.items():
        assert torch.equal(v, start["backbone." + k]), k
    original = load_file(str(tiny_bert / "model.safetensors"))  # and those are the model we started from
    key = next(k for k in original if k.endswith("word_embeddings.weight"))
    assert torch.equal(original[key], saved[next(k for k in saved if k.endswith("word_embeddings.weight"))])
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["selected_step"] == 0 and metrics["start_value"] == 60.0


def test_own_task_run_returns_its_best_evaluation(tiny_bert, pair_file, binary_file, tmp_path):
    """A real binary pair task with a destructive lr: the saved model re-evaluates to the recorded best,
    which is at least the starting model's value."""
    from embtune.encoders import load_encoder
    from embtune.evaluation.pair_eval import BinaryPairEval

    m = train(cfg_for(tiny_bert, pair_file, tmp_path / "o", objective="sup-simcse", lr=0.5, eval_steps=2,
                      eval_task=f"binary:{binary_file}"), progress=False)
    hist = m["evaluations"]
    assert [h["step"] for h in hist] == [0, 2, 4, 6] and m["best_metric"] == "binary:dev/ap"
    # every evaluation sees the weights of its step (a stale inference copy once made them all step 0's)
    assert len({h["binary:dev/ap"] for h in hist}) > 1
    assert m["best_value"] == max(h["binary:dev/ap"] for h in hist) >= m["start_value"]
    again = BinaryPairEval.from_file(binary_file).evaluate(load_encoder(str(tmp_path / "o")))
    assert again["ap"] == pytest.approx(m["best_value"], abs=1e-4)


def test_dev_split_never_shares_a_query_with_training(tiny_bert, pair_file, tmp_path):
    data = read_train_file(pair_file)
    split = hold_out(data, 0.25)
    train_q = {ex[0] for ex in split.train.examples}
    dev_q = {ex[0] for ex in split.held_out.examples}
    assert dev_q and not train_q & dev_q
    assert len(split.train) + len(split.held_out) == len(data) and split.groups_held_out == 3  # round(.25·12)
    # every row of a held-out query is held out (queries have up to 3 rows)
    assert sum(ex[0] in dev_q for ex in data.examples) == len(split.held_out)
    # deterministic and independent of the file order
    assert split_groups(list(reversed([ex[0] for ex in data.examples])), 0.25) == dev_q
    m = train(cfg_for(tiny_bert, pair_file, tmp_path / "o", objective="sup-simcse", dev_fraction=0.25,
                      max_steps=2), progress=False)
    assert m["dev_split"]["groups_held_out"] == 3 and m["dev_split"]["rows_held_out"] == len(split.held_out)
    assert m["train_examples"] == len(split.train) and m["best_metric"] == "dev/ndcg@10"
    written = (tmp_path / "o" / "dev_split.tsv").read_text(encoding="utf-8").splitlines()
    assert written[0] == "sent0\tsent1" and len(written) == 1 + len(split.held_out)
    assert {ln.split("\t")[0] for ln in written[1:]} == dev_q


def test_dev_fraction_needs_labelled_data_and_a_known_metric(tiny_bert, pair_file, tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match="--dev-fraction: .* single sentences"):
        train(cfg_for(tiny_bert, p, tmp_path / "o", dev_fraction=0.2), progress=False)
    with pytest.raises(EmbtuneError, match="--metric-for-best 'dev/spearman'.*dev/ndcg@10"):
        train(cfg_for(tiny_bert, pair_file, tmp_path / "o2", objective="sup-simcse", dev_fraction=0.2,
                      metric_for_best="dev/spearman"), progress=False)


def test_bad_eval_task_file_fails_before_training(tiny_bert, pair_file, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\t1\nc\td\t3\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"bad.tsv:2: label '3' is not 0 or 1"):
        train(cfg_for(tiny_bert, pair_file, tmp_path / "o", objective="sup-simcse", eval_task=f"binary:{bad}"),
              progress=False)
    with pytest.raises(EmbtuneError, match="beir:.*not a folder"):
        train(cfg_for(tiny_bert, pair_file, tmp_path / "o2", objective="sup-simcse",
                      eval_task=f"beir:{tmp_path / 'missing'}"), progress=False)


def test_anchor_loss_by_hand():
    current = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    start = torch.tensor([[2.0, 0.0], [1.0, 1.0]], requires_grad=True)
    loss = anchor_loss(current, start, 2.0)
    # cos = 1 and 1/√2 -> 2 · mean(0, 1 − 1/√2)
    assert loss.item() == pytest.approx(2 * (1 - 2 ** -0.5) / 2)
    loss.backward()
    assert start.grad is None and current.grad is not None  # the starting model's side is a constant
    assert anchor_loss(start.detach(), start.detach() * 3, 1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_anchor_term_in_training(tiny_bert, pair_file, tmp_path):
    """Without dropout the first step's model is the starting model: the anchor adds 0 there, and pulls
    later steps (losses differ from the run without it); the frozen copy stays the starting model."""
    plain = train(cfg_for(tiny_bert, pair_file, tmp_path / "a", objective="sup-simcse", dropout=False, lr=5e-3),
                  progress=False)
    anchored = train(cfg_for(tiny_bert, pair_file, tmp_path / "b", objective="sup-simcse", dropout=False, lr=5e-3,
                             anchor_weight=10.0), progress=False)
    assert anchored["losses"][0] == pytest.approx(plain["losses"][0], abs=1e-5)
    assert anchored["losses"][-1] != pytest.approx(plain["losses"][-1], abs=1e-4)
    assert _drift(tiny_bert, pair_file, tmp_path / "c", 10.0) < _drift(tiny_bert, pair_file, tmp_path / "d", 0.0)


def _drift(tiny_bert, pair_file, out, weight: float) -> float:
    """mean(1 − cos) between the trained model's and the starting model's embeddings of the sentences."""
    from embtune.training.anchor import AnchorRegularizer
    from embtune.training.trainer import Trainer

    t = Trainer(cfg_for(tiny_bert, pair_file, out, objective="sup-simcse", dropout=False, lr=5e-3,
                        anchor_weight=weight), progress=False)
    start = AnchorRegularizer(t.encoder, 1.0)
    t.run()
    if t.anchor is not None:  # the frozen copy is still the starting model
        for (k, v), (k2, v2) in zip(t.anchor.frozen.state_dict().items(), start.frozen.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)
    t.encoder.train()
    ids = t.tokenize(SENTENCES)
    with torch.no_grad():
        return anchor_loss(t.encoder.embed_ids(ids), start.frozen.embed_ids(ids), 1.0).item()


def test_dev_fraction_on_binary_pairs_and_class_files(tiny_bert, tmp_path):
    from embtune.data.dev_split import dev_task

    rows = ["sent0\tsent1\tlabel"] + [f"{SENTENCES[i]}\t{SENTENCES[(i + 1 + j) % 12]}\t{(i + j) % 2}"
                                      for i in range(12) for j in range(2)]
    p = tmp_path / "b.tsv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    m = train(cfg_for(tiny_bert, p, tmp_path / "o", objective="cosent", dev_fraction=0.34, max_steps=2), progress=False)
    assert m["best_metric"] == "dev/ap" and m["dev_split"]["groups_held_out"] == 4
    written = (tmp_path / "o" / "dev_split.tsv").read_text(encoding="utf-8").splitlines()
    assert written[0] == "sent0\tsent1\tlabel" and len(written) == 9 and {w.split("\t")[-1] for w in written[1:]} == {"0", "1"}
    c = tmp_path / "c.tsv"
    c.write_text("text\tlabel\n" + "".join(f"{s}\t{'AB'[i % 2]}\n" for i, s in enumerate(SENTENCES)), encoding="utf-8")
    split = hold_out(read_train_file(c), 0.25)
    assert not {ex[0] for ex in split.train.examples} & {ex[0] for ex in split.held_out.examples}
    spec, ev = dev_task(split)
    assert spec.kind == "classes" and set(spec.metrics) == {"map", "knn_accuracy"}
    assert len(ev.queries) == 3 and len(ev.pool) == 12
