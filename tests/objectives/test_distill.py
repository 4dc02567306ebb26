from __future__ import annotations

import math

import pytest
import torch

from embtune.config import TrainConfig
from embtune.errors import EmbtuneError
from embtune.objectives.distill import Distill, TeacherCache
from embtune.training import train
from tests.conftest import SENTENCES


@pytest.fixture
def glove_file(tmp_path):
    words = sorted({w for s in SENTENCES for w in s.split()})
    g = torch.Generator().manual_seed(0)
    lines = [f"{w} " + " ".join(f"{x:.4f}" for x in torch.randn(8, generator=g).tolist()) for w in words]
    p = tmp_path / "vec.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


@pytest.fixture
def unsup_file(tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return p


def test_relational_loss_by_hand():
    obj = Distill("t", loss="relational", temperature=0.5)
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    obj.targets, obj.row = t, {"x": 0, "y": 1}

    class B:
        texts = [("x",), ("y",)]

    # S_s = [[1,0],[0,1]]/τ ; S_t = [[1, c],[c, 1]]/τ with c = cos45
    c = 1 / math.sqrt(2)
    total = 0.0
    for i in range(2):
        zs = [2 * (1.0 if i == j else 0.0) for j in range(2)]
        zt = [2 * (1.0 if i == j else c) for j in range(2)]
        ps = [math.exp(v) / sum(math.exp(u) for u in zs) for v in zs]
        pt = [math.exp(v) / sum(math.exp(u) for u in zt) for v in zt]
        total += sum(pt[j] * (math.log(pt[j]) - math.log(ps[j])) for j in range(2))
    got = obj.loss(s.unsqueeze(0), B()).item()
    assert got == pytest.approx(total / 2, rel=1e-6)


def test_textcnn_distillation_lowers_mse_and_caches_the_teacher(tiny_st, glove_file, unsup_file, tmp_path, monkeypatch):
    from embtune.encoders.base import Encoder

    calls = []
    orig = Encoder.encode

    def counting(self, texts, **kw):
        calls.append(len(texts))
        return orig(self, texts, **kw)

    monkeypatch.setattr(Encoder, "encode", counting)
    cfg = TrainConfig(model=str(glove_file), encoder="textcnn", cnn_channels=8, objective="distill",
                      teacher=str(tiny_st), train_file=str(unsup_file), output=str(tmp_path / "s"),
                      batch_size=4, epochs=3, lr=5e-3, seed=0)
    m = train(cfg, progress=False)
    assert calls == [len(set(SENTENCES))]  # the teacher ran once, on each distinct sentence, for 3 epochs
    assert m["steps"] == 9
    assert sum(m["losses"][-3:]) < sum(m["losses"][:3])
    # the student (24 wide) learned a projection into the teacher's 32 dimensions, saved with it
    from embtune.encoders import load_encoder

    assert load_encoder(str(tmp_path / "s")).embedding_dim == 32
    calls.clear()
    cfg.output = str(tmp_path / "s2")
    train(cfg, progress=False)
    assert calls == []  # second run: the teacher cache on disk


def test_transformer_student_from_the_first_layers(tiny_st, unsup_file, tmp_path):
    cfg = TrainConfig(model=str(tiny_st), objective="distill", teacher=str(tiny_st), student_layers=1,
                      distill_loss="relational", train_file=str(unsup_file), output=str(tmp_path / "o"),
                      batch_size=4, max_steps=3)
    train(cfg, progress=False)
    import json

    assert json.loads((tmp_path / "o" / "config.json").read_text())["num_hidden_layers"] == 1


def test_distill_bad_inputs(tmp_path):
    with pytest.raises(EmbtuneError, match="--teacher"):
        Distill(None)
    with pytest.raises(EmbtuneError, match="distill loss"):
        Distill("x", loss="cosine")
    assert TeacherCache("a").key(["x"]) != TeacherCache("b").key(["x"])
