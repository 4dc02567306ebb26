from __future__ import annotations

import math

import pytest
import torch

from embtune.config import make_config
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


class _Batch:
    def __init__(self, texts):
        self.texts = texts


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


S3 = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]  # student embeddings of x, y, z
T3 = [[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]  # teacher embeddings of x, y, z


def _distill(kind: str, tau: float = 0.5) -> Distill:
    obj = Distill("t", loss=kind, temperature=tau)
    obj.targets, obj.row = torch.tensor(T3), {"x": 0, "y": 1, "z": 2}
    return obj


def test_relational_loss_by_hand():
    # KL(p_t || p_s) per row over the other sentences of the batch (the diagonal is left out)
    tau, total = 0.5, 0.0
    for i in range(3):
        others = [j for j in range(3) if j != i]
        zs = [_cos(S3[i], S3[j]) / tau for j in others]
        zt = [_cos(T3[i], T3[j]) / tau for j in others]
        ps = [math.exp(v) / sum(math.exp(u) for u in zs) for v in zs]
        pt = [math.exp(v) / sum(math.exp(u) for u in zt) for v in zt]
        total += sum(pt[k] * (math.log(pt[k]) - math.log(ps[k])) for k in range(2))
    got = _distill("relational", tau).loss(torch.tensor(S3).unsqueeze(0), _Batch([("x",), ("y",), ("z",)])).item()
    assert got == pytest.approx(total / 3, rel=1e-6)


def test_similarity_loss_by_hand():
    # mean over the 6 off-diagonal entries of (cos_s - cos_t)^2
    want = sum((_cos(S3[i], S3[j]) - _cos(T3[i], T3[j])) ** 2 for i in range(3) for j in range(3) if i != j) / 6
    got = _distill("similarity").loss(torch.tensor(S3).unsqueeze(0), _Batch([("x",), ("y",), ("z",)])).item()
    assert got == pytest.approx(want, rel=1e-6)


def test_multi_column_rows_distil_every_sentence():
    # a pair file: row 1 = (x, y), row 2 = (z, x); views are the columns, (V=2, N=2, d)
    obj = _distill("mse")
    batch = _Batch([("x", "y"), ("z", "x")])
    emb = torch.tensor([[S3[0], S3[2]], [S3[1], S3[0]]])  # column 0: x, z ; column 1: y, x
    want = sum((a - b) ** 2 for s, t in [(0, 0), (2, 2), (1, 1), (0, 0)] for a, b in zip(S3[s], T3[t])) / 8
    assert obj.loss(emb, batch).item() == pytest.approx(want, rel=1e-6)
    fake = type("B", (), {"ids": [([1], [2]), ([3], [1])], "column": lambda self, c: [ex[c] for ex in self.ids]})()
    assert obj.views(fake) == [[[1], [3]], [[2], [1]]]


def test_textcnn_distillation_lowers_mse_and_caches_the_teacher(tiny_st, glove_file, unsup_file, tmp_path, monkeypatch):
    from embtune.encoders.base import Encoder

    calls = []
    orig = Encoder.encode

    def counting(self, texts, **kw):
        calls.append(len(texts))
        return orig(self, texts, **kw)

    monkeypatch.setattr(Encoder, "encode", counting)
    cfg = make_config(model=str(glove_file), encoder="textcnn", cnn_channels=8, objective="distill",
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
    cfg = make_config(model=str(tiny_st), objective="distill", teacher=str(tiny_st), student_layers=1,
                      distill_loss="relational", train_file=str(unsup_file), output=str(tmp_path / "o"),
                      batch_size=4, max_steps=3)
    train(cfg, progress=False)
    import json

    assert json.loads((tmp_path / "o" / "config.json").read_text())["num_hidden_layers"] == 1


def test_mse_into_a_narrower_transformer_names_the_losses_that_need_no_projection():
    from types import SimpleNamespace

    student = SimpleNamespace(embedding_dim=4)  # a transformer: no projection attribute
    data = SimpleNamespace(examples=[("a",), ("b", "c")])
    obj = Distill("t", loss="mse")
    obj.cache.embeddings = lambda texts: torch.zeros(len(texts), 8)
    with pytest.raises(EmbtuneError, match="width 4 differs from the teacher's 8.*relational or similarity"):
        obj.setup(student, data)
    ok = Distill("t", loss="relational")  # negative control: no projection needed
    ok.cache.embeddings = lambda texts: torch.zeros(len(texts), 8)
    ok.setup(student, data)
    assert ok.targets.shape == (3, 8) and ok.row == {"a": 0, "b": 1, "c": 2}


def test_distill_bad_inputs(tmp_path):
    with pytest.raises(EmbtuneError, match="--teacher"):
        Distill(None)
    with pytest.raises(EmbtuneError, match="distill loss"):
        Distill("x", loss="cosine")
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert TeacherCache.key(a, ["x"]) != TeacherCache.key(a, ["y"])  # other sentences
    assert TeacherCache.key(a, ["x"]) != TeacherCache.key(b, ["x"])  # other weights
    b.load_state_dict(a.state_dict())
    assert TeacherCache.key(a, ["x"]) == TeacherCache.key(b, ["x"])
