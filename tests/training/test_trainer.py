from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from embtune.errors import EmbtuneError
from embtune.training import train
from embtune.training.trainer import Trainer
from tests.conftest import SENTENCES, cfg_for


@pytest.fixture
def unsup_file(tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return p


@pytest.fixture
def sup_file(tmp_path):
    rows = ["sent0,sent1,hard_neg"] + [f"{SENTENCES[i]},{SENTENCES[(i + 1) % 12]},{SENTENCES[(i + 5) % 12]}" for i in range(12)]
    p = tmp_path / "s.csv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p


def test_unsup_training_lowers_the_loss(tiny_bert, unsup_file, tmp_path):
    m = train(cfg_for(tiny_bert, unsup_file, tmp_path / "o", max_steps=30, epochs=10), progress=False)
    first, last = sum(m["losses"][:5]) / 5, sum(m["losses"][-5:]) / 5
    assert last < first
    out = tmp_path / "o"
    for f in ("modules.json", "model.safetensors", "train_config.json", "metrics.json", "versions.json"):
        assert (out / f).is_file(), f
    # unsup default on a plain model: cls with the MLP during training only -> no Dense saved
    assert json.loads((out / "embtune.json").read_text())["pooler"] == "cls_before_pooler"
    assert "Dense" not in (out / "modules.json").read_text()


def test_sup_training_keeps_the_mlp(tiny_bert, sup_file, tmp_path):
    m = train(cfg_for(tiny_bert, sup_file, tmp_path / "o", objective="sup-simcse", max_steps=20, epochs=10), progress=False)
    assert sum(m["losses"][-5:]) < sum(m["losses"][:5])
    assert "Dense" in (tmp_path / "o" / "modules.json").read_text()


def test_same_seed_same_weights(tiny_bert, unsup_file, tmp_path):
    train(cfg_for(tiny_bert, unsup_file, tmp_path / "a"), progress=False)
    train(cfg_for(tiny_bert, unsup_file, tmp_path / "b"), progress=False)
    train(cfg_for(tiny_bert, unsup_file, tmp_path / "c", seed=8), progress=False)
    a, b, c = (load_file(str(tmp_path / x / "model.safetensors")) for x in "abc")
    assert all((a[k] == b[k]).all() for k in a)
    assert any((a[k] != c[k]).any() for k in a)


def test_too_few_examples(tiny_bert, tmp_path, caplog):
    one = tmp_path / "one.txt"
    one.write_text("only one sentence\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match="at least 2"):
        train(cfg_for(tiny_bert, one, tmp_path / "o"), progress=False)
    three = tmp_path / "three.txt"
    three.write_text("a man\na dog\na cat\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        m = train(cfg_for(tiny_bert, three, tmp_path / "o3", batch_size=64, max_steps=2), progress=False)
    assert "fewer than one batch" in caplog.text
    assert m["examples_seen"] == 6


def test_objective_and_file_mismatch(tiny_bert, sup_file, unsup_file, tmp_path):
    with pytest.raises(EmbtuneError, match="expects columns"):
        train(cfg_for(tiny_bert, sup_file, tmp_path / "o"), progress=False)
    with pytest.raises(EmbtuneError, match="expects columns"):
        train(cfg_for(tiny_bert, unsup_file, tmp_path / "o", objective="sup-simcse"), progress=False)


def test_best_checkpoint_is_restored(tiny_bert, unsup_file, tmp_path, monkeypatch):
    """A run whose dev score peaks mid-training ends with the peak checkpoint's weights."""
    import embtune.training.trainer as trainer_mod

    scripted = iter([5.0, 10.0, 50.0, 20.0])  # steps 0, 2, 4, 6
    snapshots = []

    def fake_eval(tasks, encoder, batch_size=64, precision="fp32"):
        snapshots.append({k: v.detach().clone() for k, v in encoder.state_dict().items()})
        return {"stsb-dev/spearman": next(scripted), "stsb-dev/alignment": 0.5, "stsb-dev/uniformity": -2.0}

    monkeypatch.setattr(trainer_mod, "evaluate_tasks", fake_eval)
    m = train(cfg_for(tiny_bert, unsup_file, tmp_path / "o", max_steps=6, eval_steps=2,
                      metric_for_best="stsb_dev_spearman"), progress=False)
    assert m["best_step"] == 4 and m["best_value"] == 50.0 and m["best_metric"] == "stsb-dev/spearman"
    assert m["start_value"] == 5.0
    assert len(snapshots) == 4
    saved = load_file(str(tmp_path / "o" / "model.safetensors"))
    peak, last = snapshots[2], snapshots[3]
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    assert (saved[key] == peak["backbone." + key]).all()
    assert not (saved[key] == last["backbone." + key]).all()
    lines = (tmp_path / "o" / "eval_history.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [0, 2, 4, 6]
    assert (tmp_path / "o" / "align_uniform.png").stat().st_size > 1000
    assert any((tmp_path / "o" / "tensorboard").iterdir())


def test_real_dev_evaluation_runs(tiny_bert, unsup_file, tmp_path):
    m = train(cfg_for(tiny_bert, unsup_file, tmp_path / "o", max_steps=2, eval_steps=2, eval_sickr=True), progress=False)
    ev = m["evaluations"][0]
    assert ev["step"] == 0 and m["evaluations"][1]["step"] == 2
    assert set(ev) == {"step", "stsb-dev/spearman", "sickr-dev/spearman", "stsb-dev/alignment",
                       "stsb-dev/uniformity", "eval_seconds"}
    assert 0 <= ev["stsb-dev/alignment"] <= 4 and ev["stsb-dev/uniformity"] <= 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(tiny_bert, unsup_file, tmp_path, precision):
    m = train(cfg_for(tiny_bert, unsup_file, tmp_path / "o", precision=precision, max_steps=3,
                      allow_slow_precision=True), progress=False)
    assert all(0 < x < 100 for x in m["losses"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_non_native_precision_stops_before_training(tiny_bert, unsup_file, tmp_path, precision):
    with pytest.raises(EmbtuneError, match=f"no native {precision}.*--allow-slow-precision"):
        train(cfg_for(tiny_bert, unsup_file, tmp_path / "o", precision=precision), progress=False)
    assert not (tmp_path / "o").exists()


def test_auto_precision_resolved_and_saved(tiny_bert, unsup_file, tmp_path, monkeypatch):
    from embtune import precision as P

    train(cfg_for(tiny_bert, unsup_file, tmp_path / "a", max_steps=1), progress=False)
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["precision"] == "fp32"
    monkeypatch.setattr(P, "detect_support", lambda d: P.DeviceSupport("cpu", True, False, "bf16 test device"))
    train(cfg_for(tiny_bert, unsup_file, tmp_path / "b", max_steps=1), progress=False)
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["precision"] == "bf16"


def test_bf16_training_tracks_fp32_with_fp32_master_weights_and_loss(tiny_bert, unsup_file, tmp_path, monkeypatch):
    """bf16 autocast: params stay fp32, the objective sees fp32 embeddings and returns an fp32 loss, and
    the loss curve of 8 steps matches fp32's within 0.03 (absolute, on losses of 1.3-2.0; 0.011 measured)."""
    from embtune.objectives.unsup_simcse import UnsupSimCSE

    seen = []
    orig = UnsupSimCSE.loss

    def spy(self, emb, batch=None):
        out = orig(self, emb, batch)
        seen.append((emb.dtype, out.dtype))
        return out

    monkeypatch.setattr(UnsupSimCSE, "loss", spy)
    kw = dict(max_steps=8, lr=1e-3, allow_slow_precision=True)
    t32 = Trainer(cfg_for(tiny_bert, unsup_file, tmp_path / "f", precision="fp32", **kw), progress=False)
    l32 = t32.run()["losses"]
    seen.clear()
    t16 = Trainer(cfg_for(tiny_bert, unsup_file, tmp_path / "b", precision="bf16", **kw), progress=False)
    l16 = t16.run()["losses"]
    assert seen and all(e == torch.float32 and o == torch.float32 for e, o in seen)
    assert all(p.dtype == torch.float32 for p in t16.encoder.parameters())
    assert max(abs(a - b) for a, b in zip(l32, l16)) < 0.03
    assert max(l16) - min(l16) > 0.3  # the curves move (0.73 measured), so matching within 0.03 means something
    assert sum(l16[-3:]) < sum(l16[:3])  # and on the whole downwards


def test_fused_adamw_on_cpu_gives_the_multi_tensor_results(tiny_bert, unsup_file, tmp_path, monkeypatch):
    """The trainer's fused AdamW (one kernel per step, CPU included) updates the weights as the
    multi-tensor implementation does."""
    kw = dict(max_steps=4, lr=1e-3, precision="fp32")
    fused = Trainer(cfg_for(tiny_bert, unsup_file, tmp_path / "f", **kw), progress=False)
    assert fused.optimizer.defaults["fused"] is True
    start = {n: p.detach().clone() for n, p in fused.encoder.named_parameters()}
    lf = fused.run()["losses"]
    real = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, fused=None, **k: real(*a, foreach=True, **k))
    multi = Trainer(cfg_for(tiny_bert, unsup_file, tmp_path / "m", **kw), progress=False)
    assert not multi.optimizer.defaults["fused"]
    lm = multi.run()["losses"]
    assert max(abs(a - b) for a, b in zip(lf, lm)) < 1e-5
    pf, pm = dict(fused.encoder.named_parameters()), dict(multi.encoder.named_parameters())
    moved = max(float((pf[n] - start[n]).abs().max()) for n in start)
    assert moved > 1e-4  # the steps changed the weights, so agreeing means something
    assert max(float((pf[n] - pm[n]).abs().max()) for n in pf) < 1e-5


def test_training_draws_dropout_masks_with_embtune_dropout(tiny_bert, unsup_file, tmp_path):
    """With dropout on, every nn.Dropout becomes embtune's 15-bit-mask Dropout; --no-dropout keeps p = 0."""
    from embtune.encoders.dropout import ATTENTION_NAME, Dropout

    t = Trainer(cfg_for(tiny_bert, unsup_file, tmp_path / "d", max_steps=1, precision="fp32"), progress=False)
    assert any(isinstance(m, Dropout) for m in t.encoder.modules())
    assert not any(type(m) is torch.nn.Dropout for m in t.encoder.modules())
    assert t.encoder.backbone.config._attn_implementation == ATTENTION_NAME
    off = Trainer(cfg_for(tiny_bert, unsup_file, tmp_path / "n", max_steps=1, precision="fp32", dropout=False),
                  progress=False)
    assert all(m.p == 0.0 for m in off.encoder.modules() if isinstance(m, torch.nn.Dropout))


def test_embed_views_one_pass_equals_length_sorted_passes(tiny_bert):
    """One pass of V*N (the accelerator default) or V length-sorted passes: the same embeddings in the same
    order without dropout; with dropout every row draws its own mask in one pass too (SimCSE §3)."""
    from embtune.encoders import load_encoder
    from embtune.training.trainer import embed_views

    enc = load_encoder(str(tiny_bert), device="cpu")
    ids = enc.tokenize_ids(SENTENCES[:6])
    views = [ids, [ids[i] for i in (3, 0, 5, 1, 4, 2)]]  # views of different lengths per row
    enc.eval()
    with torch.no_grad():
        one = embed_views(enc, views, enc.device, "fp32", one_pass=True)
        sorted_passes = embed_views(enc, views, enc.device, "fp32", one_pass=False)
        default_cpu = embed_views(enc, views, enc.device, "fp32")
    assert one.shape == (2, 6, enc.embedding_dim)
    torch.testing.assert_close(one, sorted_passes, rtol=1e-4, atol=1e-5)
    assert torch.equal(default_cpu, sorted_passes)
    torch.testing.assert_close(one[1, 1], one[0, 0], rtol=1e-4, atol=1e-5)  # row order kept: view 2 row 1 is ids[0]
    assert not torch.allclose(one[1, 0], one[0, 0], atol=1e-3)  # negative control: different sentences
    enc.train()
    with torch.no_grad():
        same = embed_views(enc, [ids, ids], enc.device, "fp32", one_pass=True)
    assert not torch.allclose(same[0], same[1])  # two views of the same sentences differ by their dropout masks


def test_compiled_training_matches_eager(tiny_bert, unsup_file, tmp_path):
    """--compile: the same losses as eager (no dropout: deterministic), a graph really compiled, the saved
    weights under the model's own names, and copies of the encoder uncompiled."""
    import copy

    from torch._dynamo.utils import counters

    eager = train(cfg_for(tiny_bert, unsup_file, tmp_path / "e", max_steps=4, epochs=10, dropout=False), progress=False)
    counters.clear()
    tr = Trainer(cfg_for(tiny_bert, unsup_file, tmp_path / "c", max_steps=4, epochs=10, dropout=False, compile=True),
                 progress=False)
    compiled = tr.run()
    assert counters["stats"]["unique_graphs"] >= 1  # negative control for "compiled": eager runs leave it at 0
    assert compiled["losses"] == pytest.approx(eager["losses"], rel=1e-3, abs=1e-4)
    keys = load_file(str(tmp_path / "c" / "model.safetensors")).keys()
    assert keys == load_file(str(tmp_path / "e" / "model.safetensors")).keys()
    assert "_compiled_backbone" in tr.encoder.__dict__
    assert "_compiled_backbone" not in copy.deepcopy(tr.encoder).__dict__  # e.g. the anchor's frozen copy


def test_compile_needs_a_transformer(tmp_path, unsup_file):
    vec = tmp_path / "v.glove.txt"
    vec.write_text("".join(f"{w} {i}.0 1.0\n" for i, w in enumerate(" ".join(SENTENCES).split())), encoding="utf-8")
    with pytest.raises(EmbtuneError, match="--compile applies to transformer models"):
        Trainer(cfg_for(vec, unsup_file, tmp_path / "o", encoder="mean", compile=True), progress=False)


def test_one_pass_padding_guard_by_hand():
    from embtune.training.trainer import one_pass_padding_ok

    # sorted passes of 2: [2, 2] -> 4 positions, [10, 10] -> 20; one pass: 4 x 10 = 40 > 1.5 x 24
    assert not one_pass_padding_ok([2, 10, 2, 10], 2)
    # [9, 9] -> 18, [10, 10] -> 20; one pass 40 <= 1.5 x 38
    assert one_pass_padding_ok([9, 10, 9, 10], 2)
    assert one_pass_padding_ok([2, 10, 2, 10], 2, limit=40 / 24)  # the bound itself is allowed


def test_compile_refuses_grad_cache(tiny_bert, unsup_file, tmp_path):
    with pytest.raises(EmbtuneError, match="--compile does not combine with --mini-batch-size"):
        Trainer(cfg_for(tiny_bert, unsup_file, tmp_path / "o", compile=True, mini_batch_size=4), progress=False)


def test_a_replaced_backbone_is_not_run_through_the_old_compiled_one(tiny_bert):
    import copy

    from embtune.encoders import load_encoder

    enc = load_encoder(str(tiny_bert), device="cpu").eval()
    enc.compile_backbone()
    other = copy.deepcopy(enc.backbone)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.5)
    enc.backbone = other
    feats = enc.collate(enc.tokenize_ids(SENTENCES[:3]))
    with torch.no_grad():
        got = enc(feats)  # would compile and run the old weights if the stale wrapper were used
    assert enc.__dict__["_compiled_backbone"] is None
    with torch.no_grad():
        want = enc.head(other(**feats).last_hidden_state, feats["attention_mask"])
    torch.testing.assert_close(got, want)
