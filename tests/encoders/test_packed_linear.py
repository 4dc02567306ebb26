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


@needs_onednn
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_packed_linear_is_x_wt_plus_b(dtype, tol):
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
    monkeypatch.setattr(pl, "_packing_works", lambda dtype: False)
    from embtune.encoders import transformer

    monkeypatch.setattr(transformer, "can_pack", lambda device, dtype: False)
    feats = enc.collate(enc.tokenize_ids(SENTENCES[:3]))
    with torch.no_grad():
        want = enc(feats)
    calls = []
    monkeypatch.setattr(TransformerEncoder, "inference_backbone", lambda self, d: calls.append(d))
    with torch.inference_mode():
        got = enc.inference_forward(feats, "fp32")  # fp32 without packing: the model itself, no copy
    assert not calls and torch.equal(got, want)


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
    copy_ = enc.inference_backbone(torch.float32)
    assert "disagree" in caplog.text
    w = dict(copy_.named_parameters())
    assert all(torch.equal(w[n], p) for n, p in enc.backbone.named_parameters())  # the plain copy is used
