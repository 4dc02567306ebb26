"""--student-layers in a run: which layers are kept (given, first, spread, or chosen on the dev metric)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from embtune.config import resolve_config
from embtune.errors import EmbtuneError
from embtune.training import train
from tests.conftest import build_tiny_bert, cfg_for
from tests.training.test_selection import binary_file, pair_file  # noqa: F401  (fixtures)

WEIGHT = "encoder.layer.{}.attention.self.query.weight"


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("four") / "m", layers=4)


def _layer_of(encoder, original) -> list[int] | None:
    """Which original layer each kept layer is (by its first query weight; None once training moved them)."""
    firsts = {float(original[WEIGHT.format(i)][0, 0]): i for i in range(4)}
    found = [firsts.get(float(layer.attention.self.query.weight[0, 0].detach()))
             for layer in encoder.backbone.encoder.layer]
    return None if None in found else found


def test_dev_choice_keeps_the_cut_the_dev_metric_prefers(four_layers, pair_file, tmp_path, monkeypatch):
    import embtune.training.trainer as trainer_mod

    original = load_file(str(four_layers / "model.safetensors"))
    prefer = [0.0, 0.5, 0.1, 0.9]  # scripted dev metric: the sum over the kept layers -> best cut (1, 3)
    seen = []

    def scripted(tasks, encoder, batch_size=64, precision="fp32"):
        layers = _layer_of(encoder, original)
        seen.append(tuple(layers) if layers else None)
        v = sum(prefer[i] for i in layers) if layers else 0.0  # trained weights score below every cut
        return {"dev/ndcg@10": v, "dev/map": v}

    monkeypatch.setattr(trainer_mod, "evaluate_tasks", scripted)
    m = train(cfg_for(four_layers, pair_file, tmp_path / "o", objective="sup-simcse", student_layers="2",
                      student_layer_choice="dev", dev_fraction=0.25, max_steps=2, eval_steps=2), progress=False)
    assert seen[:6] == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]  # every 2-subset scored before training
    cut = m["student_layers"]
    assert cut["layers"] == [1, 3] and cut["choice"] == "dev" and cut["of"] == 4
    assert [c["score"] for c in cut["search"]["candidates"]] == pytest.approx([0.5, 0.1, 0.9, 0.6, 1.4, 1.0])
    assert seen[6] == (1, 3)  # the step-0 evaluation already sees the chosen cut
    saved = load_file(str(tmp_path / "o" / "model.safetensors"))
    assert json.loads((tmp_path / "o" / "config.json").read_text())["num_hidden_layers"] == 2
    assert seen[7] is None  # step 2: trained weights, scored 0 -> step 0 (the chosen cut, untrained) is kept
    assert torch.equal(saved[WEIGHT.format(0)], original[WEIGHT.format(1)])
    assert torch.equal(saved[WEIGHT.format(1)], original[WEIGHT.format(3)])


@pytest.mark.parametrize("spec,choice,expected", [("2", "first", [0, 1]), ("2", "auto", [0, 3]),
                                                  ("3,0", "auto", [3, 0])])
def test_first_spread_and_given_layers(four_layers, pair_file, tmp_path, spec, choice, expected):
    m = train(cfg_for(four_layers, pair_file, tmp_path / "o", objective="sup-simcse", student_layers=spec,
                      student_layer_choice=choice, max_steps=1), progress=False)
    assert m["student_layers"]["layers"] == expected
    assert m["student_layers"]["choice"] == ({"first": "first", "auto": "spread"}[choice] if spec == "2" else "given")
    assert json.loads((tmp_path / "o" / "config.json").read_text())["num_hidden_layers"] == len(expected)


def test_a_count_past_the_model_is_refused(four_layers, pair_file, tmp_path):
    with pytest.raises(EmbtuneError, match="between 1 and 4"):
        train(cfg_for(four_layers, pair_file, tmp_path / "o", objective="sup-simcse", student_layers="5"), progress=False)
    with pytest.raises(EmbtuneError, match="from 0 to 3"):
        train(cfg_for(four_layers, pair_file, tmp_path / "p", objective="sup-simcse", student_layers="0,4"),
              progress=False)


def test_layer_options_are_checked_where_they_were_given(tmp_path, pair_file):
    with pytest.raises(EmbtuneError, match="--student-layer-choice applies to a count.*layer numbers"):
        cfg_for("m", pair_file, tmp_path, student_layers="0,2", student_layer_choice="spread")
    with pytest.raises(EmbtuneError, match="--student-layer-choice applies to a count.*no --student-layers"):
        cfg_for("m", pair_file, tmp_path, student_layer_choice="first")
    with pytest.raises(EmbtuneError, match="dev scores each cut on the run's evaluation"):
        cfg_for("m", pair_file, tmp_path, student_layers="2", student_layer_choice="dev")
    with pytest.raises(EmbtuneError, match="--student-layers: expected a count"):
        cfg_for("m", pair_file, tmp_path, student_layers="two")
    y = tmp_path / "c.yaml"
    y.write_text(f"train_file: {pair_file}\nstudent_layers: [0, 3]\n", encoding="utf-8")
    cfg = resolve_config(str(y))
    assert cfg.student_layers == "0,3" and cfg.student_layer_count == (0, 3)
    assert "student_layer_choice" not in cfg.to_dict()  # it applies to a count only
    y.write_text(f"train_file: {pair_file}\nstudent_layers: 3\nstudent_layer_choice: first\n", encoding="utf-8")
    cfg = resolve_config(str(y))
    assert cfg.student_layer_count == 3 and cfg.to_dict()["student_layer_choice"] == "first"
    y.write_text(f"train_file: {pair_file}\nstudent_layers: 3\nstudent_layer_choice: best\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"c.yaml:3.*expected one of auto, dev, spread, first"):
        resolve_config(str(y))


def test_dev_choice_scores_each_cut_as_that_cut_alone_would_score(four_layers, pair_file, binary_file, tmp_path):
    """Real evaluations (no script): each candidate's recorded score is that of a separately made copy
    with only those layers — the encoder's cached inference copy never serves a stale cut."""
    import copy

    from embtune.encoders import load_encoder
    from embtune.evaluation.tasks import evaluate_tasks, load_task, parse_task

    # distill: the student keeps the model's own mean pooling (no new MLP), so a plain load is the same model
    m = train(cfg_for(four_layers, pair_file, tmp_path / "o", objective="distill", teacher=str(four_layers),
                      distill_loss="relational", student_layers="2", eval_task=f"binary:{binary_file}",
                      eval_steps=1, max_steps=1, precision="fp32"), progress=False)
    search = m["student_layers"]["search"]
    assert search["method"] == "exhaustive" and len(search["candidates"]) == 6
    task = load_task(parse_task(f"binary:{binary_file}"))
    base = load_encoder(str(four_layers))
    for c in search["candidates"]:
        alone = copy.deepcopy(base)
        alone.keep_layers(tuple(c["layers"]))
        assert c["score"] == pytest.approx(evaluate_tasks([task], alone)[m["best_metric"]], abs=1e-6), c["layers"]
    scores = [c["score"] for c in search["candidates"]]
    assert len(set(round(s, 6) for s in scores)) > 1  # the cuts do differ (else the check above proves little)
    assert m["student_layers"]["layers"] == search["candidates"][scores.index(max(scores))]["layers"]
