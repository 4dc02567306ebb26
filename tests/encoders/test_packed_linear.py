"""embtune/encoders/packed_linear.py: oneDNN-packed linear layers for CPU inference."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from embtune.encoders import packed_linear as pl
from embtune.encoders.transformer import TransformerEncoder
from tests.conftest import SENTENCES

needs_onednn = pytest.mark.skipif(not pl.can_pack("cpu", torch.float32), reason="torch built without oneDNN")


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_packed_linear_is_x_wt_plus_b(dtype, tol):
    if not pl.can_pack("cpu", dtype):
        pytest.skip(f"this CPU/torch does not pack {dtype}")
    torch.manual_seed(0)
    lin = nn.Linear(24, 40).to(dtype)
    x = torch.randn(2, 7, 24, dtype=dtype)  # 3-D input, as a transformer's hidden states
    with torch.no_grad():
        want = (x.float() @ lin.weight.float().T + lin.bias.float())
        got = pl.PackedLinear(lin)(x)
    assert got.dtype == dtype and got.shape == (2, 7, 40)
    assert torch.allclose(got.float(), want, atol=tol * float(want.abs().max()))
    other = nn.Linear(24, 40).to(dtype)  # negative control: another weight gives another product
    with torch.no_grad():
        assert not torch.allclose(pl.PackedLinear(other)(x).float(), want, atol=tol * float(want.abs().max()))


@needs_onednn
def test_pack_linears_replaces_every_linear_and_keeps_the_output(tiny_bert):
    enc = TransformerEncoder.load(tiny_bert, pooler="mean").eval()
    n_linear = sum(type(m) is nn.Linear for m in enc.backbone.modules())
    ref = enc.encode(SENTENCES)  # packed on the CPU (the default path)
    copy_ = enc.inference_backbone(torch.float32)
    assert sum(type(m) is pl.PackedLinear for m in copy_.modules()) == n_linear > 0
    assert not any(type(m) is nn.Linear for m in copy_.modules())
    assert sum(type(m) is nn.Linear for m in enc.backbone.modules()) == n_linear  # the model is untouched
    feats = enc.collate(enc.tokenize_ids(SENTENCES))
    with torch.no_grad():
        plain = enc(feats).numpy()  # nn.Linear, the training path
    order = {s: i for i, s in enumerate(SENTENCES)}
    assert np.allclose(ref[[order[s] for s in SENTENCES]], plain, atol=1e-5)


def test_no_packing_where_unavailable(tiny_bert, monkeypatch):
    enc = TransformerEncoder.load(tiny_bert, pooler="mean").eval()
    assert not pl.can_pack("cuda", torch.float32) and not pl.can_pack("cpu", torch.float16)
    from embtune.encoders import transformer

    monkeypatch.setattr(transformer, "can_pack", lambda device, dtype: False)
    feats = enc.collate(enc.tokenize_ids(SENTENCES[:3]))
    with torch.no_grad():
        want = enc(feats)
    assert enc.inference_backbone(torch.float32) is None  # fp32 without packing: the model itself, no copy
    assert enc.__dict__.get("_inference_cache") is None
    with torch.inference_mode():
        assert torch.equal(enc.inference_forward(feats, "fp32"), want)
    half = enc.inference_backbone(torch.bfloat16)  # a cast copy still serves bf16
    assert half is not None and not any(type(m) is pl.PackedLinear for m in half.modules())


@needs_onednn
def test_a_packed_copy_that_disagrees_is_not_used(tiny_bert, monkeypatch, caplog):
    enc = TransformerEncoder.load(tiny_bert, pooler="mean").eval()

    def broken(model):  # packs, but with the wrong weights
        n = 0
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    with torch.no_grad():
                        child.weight.mul_(2)
                    n += 1
        return n

    from embtune.encoders import transformer

    monkeypatch.setattr(transformer, "pack_linears", broken)
    caplog.set_level(logging.INFO, logger="embtune.encoders.transformer")
    assert enc.inference_backbone(torch.float32) is None  # fp32: the model itself serves
    assert "disagree" in caplog.text
    half = enc.inference_backbone(torch.bfloat16)  # bf16: a fresh plain cast copy, not the broken one
    w = dict(half.named_parameters())
    assert all(torch.equal(w[n], p.to(torch.bfloat16)) for n, p in enc.backbone.named_parameters())


def test_the_packing_probe_leaves_the_seeded_generator_alone():
    pl._packing_works.cache_clear()
    state = torch.get_rng_state()
    pl.can_pack("cpu", torch.float32)
    assert torch.equal(torch.get_rng_state(), state)  # a resumed run draws the masks a straight run draws


@needs_onednn
def test_an_encoder_with_a_packed_copy_deep_copies_and_pickles(tiny_bert):
    import copy
    import pickle

    enc = TransformerEncoder.load(tiny_bert, pooler="mean")
    want = enc.encode(SENTENCES[:3])  # builds the packed copy
    assert enc.__dict__.get("_inference_cache") is not None
    twin = copy.deepcopy(enc)
    assert twin.__dict__.get("_inference_cache") is None  # the cache stays behind
    np.testing.assert_allclose(twin.encode(SENTENCES[:3]), want, atol=1e-6)
    again = pickle.loads(pickle.dumps(enc))
    np.testing.assert_allclose(again.encode(SENTENCES[:3]), want, atol=1e-6)


@needs_onednn
def test_encode_inside_a_callers_autocast_runs_the_copy_in_its_own_dtype(tiny_bert):
    enc = TransformerEncoder.load(tiny_bert, pooler="mean")
    want = enc.encode(SENTENCES[:3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = enc.encode(SENTENCES[:3])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_encode_resolves_the_copy_once_per_call(tiny_bert, monkeypatch):
    enc = TransformerEncoder.load(tiny_bert, pooler="mean")
    calls = []
    real = TransformerEncoder.inference_backbone
    monkeypatch.setattr(TransformerEncoder, "inference_backbone", lambda self, d: calls.append(d) or real(self, d))
    enc.encode(SENTENCES, batch_size=2)  # several batches
    assert len(calls) == 1
