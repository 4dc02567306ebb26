"""embtune/encoders/dropout.py: the 15-bit-mask dropout against its definition."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from embtune.encoders import dropout as fd
from embtune.encoders.transformer import TransformerEncoder
from tests.conftest import SENTENCES


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_keep_mask_is_bernoulli_with_the_given_keep_rate(p):
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of 4: the last word is cut
    mask = fd.keep_mask((n,), p)
    assert mask.shape == (n,) and mask.dtype == torch.bool
    rate = mask.float().mean().item()
    assert abs(rate - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)  # 5 sigma
    # the four 15-bit lanes of one 64-bit word are independent: neighbours agree as often as chance says
    m = mask[: n - 1].float()
    both_kept = (m[:-1] * m[1:]).mean().item()
    assert abs(both_kept - (1 - p) ** 2) < 5 * math.sqrt((1 - p) ** 2 / n)


def test_keep_mask_negative_control_and_seeding():
    torch.manual_seed(1)
    a = fd.keep_mask((64, 33), 0.1)
    torch.manual_seed(1)
    assert torch.equal(a, fd.keep_mask((64, 33), 0.1))  # seeded: the same mask
    assert not torch.equal(a, fd.keep_mask((64, 33), 0.1))  # the stream moves on
    assert fd.keep_mask((1000,), 0.0).all()  # p = 0 keeps every element
    assert fd.keep_mask((1000,), 0.5).float().mean() < 0.6 and not fd.keep_mask((1000,), 0.5).all()


def test_dropout_scales_the_kept_elements_and_zeroes_the_rest():
    x = torch.randn(50, 70)
    torch.manual_seed(3)
    y = fd.dropout(x, 0.2, training=True)
    torch.manual_seed(3)
    keep = fd.keep_mask(x.shape, 0.2)
    assert torch.allclose(y, torch.where(keep, x / 0.8, torch.zeros(())), atol=1e-6)
    assert torch.equal(y == 0, ~keep | (x == 0))
    assert fd.dropout(x, 0.2, training=False) is x  # identity outside training, as F.dropout
    # gradients: kept elements get 1/(1-p), dropped ones 0 (as torch's dropout)
    x.requires_grad_()
    torch.manual_seed(3)
    fd.dropout(x, 0.2).sum().backward()
    assert torch.allclose(x.grad, keep.float() / 0.8)


def test_dropout_module_keeps_nn_dropout_behaviour():
    m = fd.Dropout(0.25)
    assert isinstance(m, torch.nn.Dropout) and m.p == 0.25
    x = torch.ones(4000)
    m.train()
    out = m(x)
    assert torch.allclose(out.unique(), torch.tensor([0.0, 1 / 0.75]))  # some dropped, the rest scaled
    m.eval()
    assert torch.equal(m(x), x)


def test_attention_with_dropout_is_sdpa_with_the_mask_applied(monkeypatch):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 3:] = False  # the second sequence has two padding positions
    module = torch.nn.Module()
    module.is_causal = False
    want, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.3)
    got0, _ = fd.sdpa_with_fast_dropout(module, q, k, v, mask, dropout=0.0, scaling=0.3)
    assert torch.equal(got0, want)  # no dropout: transformers' SDPA itself
    # with dropout on a mask that keeps everything, the math path is SDPA scaled by 1/(1-p)
    monkeypatch.setattr(fd, "keep_mask", lambda shape, p, device="cpu": torch.ones(shape, dtype=torch.bool))
    got, _ = fd.sdpa_with_fast_dropout(module, q, k, v, mask, dropout=0.1, scaling=0.3)
    assert torch.allclose(got, want / 0.9, atol=1e-5)
    # negative control: a mask that drops one key's probability changes the output
    drop_first = lambda shape, p, device="cpu": torch.arange(shape[-1]).expand(shape) != 0  # noqa: E731
    monkeypatch.setattr(fd, "keep_mask", drop_first)
    got_drop, _ = fd.sdpa_with_fast_dropout(module, q, k, v, mask, dropout=0.1, scaling=0.3)
    assert not torch.allclose(got_drop, want / 0.9, atol=1e-3)


def test_use_fast_dropout_swaps_modules_and_attention_without_changing_eval(tiny_bert):
    enc = TransformerEncoder.load(tiny_bert, pooler="mean").eval()
    feats = enc.collate(enc.tokenize_ids(SENTENCES[:4]))
    with torch.no_grad():
        before = enc(feats)
    n_dropouts = sum(type(m) is torch.nn.Dropout for m in enc.modules())
    assert fd.use_fast_dropout(enc) == n_dropouts > 0
    assert not any(type(m) is torch.nn.Dropout for m in enc.modules())
    assert enc.backbone.config._attn_implementation == fd.ATTENTION_NAME
    with torch.no_grad():
        assert torch.allclose(enc(feats), before, atol=1e-6)  # eval: no dropout anywhere
    enc.train()
    torch.manual_seed(0)
    a = enc(feats)
    torch.manual_seed(0)
    assert torch.equal(a, enc(feats))  # seeded
    assert not torch.allclose(a, enc(feats))  # and two draws are two views
    # the keep rate of the whole model's masks: count zeros at a dropout's output
    hits = []
    handle = enc.backbone.embeddings.dropout.register_forward_hook(lambda m, i, o: hits.append((o == 0).float().mean()))
    enc(feats)
    handle.remove()
    p = enc.backbone.embeddings.dropout.p
    assert abs(hits[0].item() - p) < 0.05



def test_attention_defers_to_sdpa_for_what_it_does_not_implement(monkeypatch):
    import transformers.integrations.sdpa_attention as sa

    calls = []
    monkeypatch.setattr(sa, "sdpa_attention_forward", lambda *a, **k: calls.append(k) or ("sdpa", None))
    q = torch.randn(1, 2, 4, 8)
    module = torch.nn.Module()
    module.is_causal = False
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    for kw in ({"sliding_window": 2}, {"softcap": 30.0}, {"position_bias": torch.zeros(1, 2, 4, 4)}):
        assert fd.sdpa_with_fast_dropout(module, q, q, q, mask, dropout=0.1, **kw)[0] == "sdpa"
    module.is_causal = True  # a decoder without a mask: SDPA's causal kernel
    assert fd.sdpa_with_fast_dropout(module, q, q, q, None, dropout=0.1)[0] == "sdpa"
    assert len(calls) == 4
    module.is_causal = False  # negative control: plain bidirectional attention with dropout is ours
    assert isinstance(fd.sdpa_with_fast_dropout(module, q, q, q, mask, dropout=0.1)[0], torch.Tensor)
    assert len(calls) == 4


def test_training_forward_draws_attention_masks_through_keep_mask(tiny_bert, monkeypatch):
    enc = TransformerEncoder.load(tiny_bert, pooler="mean")
    fd.use_fast_dropout(enc)
    shapes = []
    real = fd.keep_mask
    monkeypatch.setattr(fd, "keep_mask", lambda shape, p, device="cpu": shapes.append(tuple(shape)) or real(shape, p, device))
    feats = enc.collate(enc.tokenize_ids(SENTENCES[:4]))
    enc.train()
    enc(feats)
    heads = enc.backbone.config.num_attention_heads
    length = feats["input_ids"].shape[1]
    attention = [s for s in shapes if s == (4, heads, length, length)]
    assert len(attention) == enc.backbone.config.num_hidden_layers  # one attention mask per layer
    assert len(shapes) > len(attention)  # and the hidden-state dropouts


def test_attention_with_an_additive_float_mask(monkeypatch):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    bool_mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    bool_mask[0, :, :, 4:] = False
    float_mask = torch.zeros(2, 1, 5, 5).masked_fill(~bool_mask, torch.finfo(torch.float32).min)
    module = torch.nn.Module()
    module.is_causal = False
    monkeypatch.setattr(fd, "keep_mask", lambda shape, p, device="cpu": torch.ones(shape, dtype=torch.bool))
    a, _ = fd.sdpa_with_fast_dropout(module, q, k, v, bool_mask, dropout=0.1)
    b, _ = fd.sdpa_with_fast_dropout(module, q, k, v, float_mask, dropout=0.1)
    assert torch.allclose(a, b, atol=1e-6)
    c, _ = fd.sdpa_with_fast_dropout(module, q, k, v, torch.zeros(2, 1, 5, 5), dropout=0.1)
    assert not torch.allclose(a, c, atol=1e-3)  # negative control: the mask matters


def test_tiny_p_falls_back_to_torch_dropout():
    x = torch.ones(100_000)
    torch.manual_seed(0)
    y = fd.dropout(x, 1e-6)  # rounds to 0 in 15 bits: torch's dropout, which still drops at 1e-6
    torch.manual_seed(0)
    assert torch.equal(y, F.dropout(x, 1e-6, True))
