"""embtune/encoders/cpu_attention.py: short-sequence attention for CPU inference against its definition and SDPA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from embtune.encoders import cpu_attention as ca
from embtune.encoders.transformer import TransformerEncoder
from tests.conftest import SENTENCES


class Encoderish(nn.Module):
    is_causal = False  # what a BERT attention module says


def qkv(batch: int, heads: int, length: int, dim: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, generator=g).to(dtype) for _ in range(3)]


def padding_mask(lengths: list[int], length: int) -> torch.Tensor:
    """transformers' SDPA mask for key padding: [B, 1, L, L], True = attend."""
    keys = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    return keys[:, None, None, :].expand(-1, 1, length, length)


def by_definition(q, k, v, mask, scale):
    """softmax(Q Kᵀ · s, masked) V in float64, output [B, L, H, d]."""
    s = q.double() @ k.double().transpose(-2, -1) * scale
    s = s.masked_fill(~mask, float("-inf"))
    return (s.softmax(-1) @ v.double()).transpose(1, 2)


@pytest.mark.parametrize("length", [5, 15, 16, 40])  # below and above TRANSPOSED_BELOW
def test_matches_the_formula_and_sdpa_in_fp32(length):
    q, k, v = qkv(3, 2, length, 8, torch.float32)
    mask = padding_mask([length, length - 2, 1], length)
    out, weights = ca.short_sequence_attention(Encoderish(), q, k, v, mask, scaling=0.3)
    assert weights is None and out.shape == (3, length, 2, 8) and out.is_contiguous()
    torch.testing.assert_close(out.double(), by_definition(q, k, v, mask, 0.3), atol=1e-5, rtol=1e-5)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3).transpose(1, 2)
    torch.testing.assert_close(out, sdpa, atol=1e-5, rtol=1e-5)
    # negative controls: the mask matters, and so does its orientation (keys, not queries)
    unmasked, _ = ca.short_sequence_attention(Encoderish(), q, k, v, None, scaling=0.3)
    assert (unmasked[1:] - out[1:]).abs().max() > 1e-2
    wrong, _ = ca.short_sequence_attention(Encoderish(), q, k, v, mask.transpose(-2, -1).contiguous(), scaling=0.3)
    assert (wrong[1:] - out[1:]).abs().max() > 1e-2


@pytest.mark.parametrize("length", [7, 24])
def test_bf16_stays_within_bf16_rounding_of_the_formula(length):
    q, k, v = qkv(4, 3, length, 16, torch.bfloat16, seed=1)
    mask = padding_mask([length, 3, length - 1, 1], length)
    out, _ = ca.short_sequence_attention(Encoderish(), q, k, v, mask)
    assert out.dtype == torch.bfloat16
    exact = by_definition(q, k, v, mask, 16 ** -0.5)
    err = (out.double() - exact).abs().max().item()
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    sdpa_err = (sdpa.double() - exact).abs().max().item()
    assert err < 0.05 and err <= 3 * sdpa_err + 1e-3  # the same order as SDPA's own bf16 error


@pytest.mark.parametrize("length", [6, 30])
def test_a_key_mask_of_shape_b_1_1_l_broadcasts_like_the_full_one(length):
    """Masks may come as [B, 1, 1, Lk] (keys only) as well as [B, 1, Lq, Lk]: the same result on both branches."""
    q, k, v = qkv(2, 2, length, 8, torch.float32, seed=4)
    full = padding_mask([length, 3], length)
    keys_only = full[:, :, :1, :].contiguous()
    a, _ = ca.short_sequence_attention(Encoderish(), q, k, v, full)
    b, _ = ca.short_sequence_attention(Encoderish(), q, k, v, keys_only)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(b.double(), by_definition(q, k, v, full, 8 ** -0.5), atol=1e-5, rtol=1e-5)


def test_additive_float_mask_equals_the_boolean_one():
    q, k, v = qkv(2, 2, 9, 8, torch.float32, seed=2)
    mask = padding_mask([9, 4], 9)
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    a, _ = ca.short_sequence_attention(Encoderish(), q, k, v, mask)
    b, _ = ca.short_sequence_attention(Encoderish(), q, k, v, additive)
    torch.testing.assert_close(a, b)


def test_what_it_does_not_cover_goes_to_sdpa(monkeypatch):
    from transformers.integrations import sdpa_attention

    calls = []
    real = sdpa_attention.sdpa_attention_forward

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", spy)
    m = Encoderish()
    q, k, v = qkv(2, 2, 12, 8, torch.float32)
    mask = padding_mask([12, 5], 12)
    ca.short_sequence_attention(m, q, k, v, mask)
    assert calls == []  # covered: computed here
    long_q, long_k, long_v = qkv(1, 2, ca.MAX_LENGTH[torch.float32] + 1, 8, torch.float32)
    ca.short_sequence_attention(m, long_q, long_k, long_v, None)
    ca.short_sequence_attention(m, q, k, v, mask, dropout=0.1)
    ca.short_sequence_attention(m, q.half(), k.half(), v.half(), mask)  # no measured threshold for fp16
    ca.short_sequence_attention(m, q, k, v, mask, sliding_window=4)
    causal = nn.Module()  # a decoder's attention: is_causal and no mask
    ca.short_sequence_attention(causal, q, k, v, None)
    gqa = Encoderish()
    gqa.num_key_value_groups = 2  # one key/value head shared by two query heads
    ca.short_sequence_attention(gqa, q, k[:, :1], v[:, :1], mask)
    assert len(calls) == 6


def test_inference_copy_uses_it_on_the_cpu_and_the_model_keeps_sdpa(tiny_bert, monkeypatch):
    enc = TransformerEncoder.load(tiny_bert, pooler="mean").eval()
    enc.allow_slow_precision = True  # bf16 on any test machine (the copy is what is tested, not its speed)
    assert enc.backbone.config._attn_implementation == "sdpa"
    copy_ = enc.inference_backbone(torch.bfloat16)
    assert copy_.config._attn_implementation == ca.ATTENTION_NAME
    assert enc.backbone.config._attn_implementation == "sdpa"  # the trained model is never switched
    seen = []
    real = ca.short_sequence_attention
    monkeypatch.setattr(ca, "short_sequence_attention", lambda *a, **k: seen.append(1) or real(*a, **k))
    from transformers import AttentionInterface

    AttentionInterface.register(ca.ATTENTION_NAME, ca.short_sequence_attention)
    try:
        got = enc.encode(SENTENCES, precision="bf16")
    finally:
        AttentionInterface.register(ca.ATTENTION_NAME, real)
    assert len(seen) == enc.num_layers * -(-len(SENTENCES) // 64)  # every layer of every batch
    copy_.set_attn_implementation("sdpa")  # the same copy with SDPA: the same embeddings, to bf16's precision
    ref = enc.encode(SENTENCES, precision="bf16")
    assert enc.inference_backbone(torch.bfloat16) is copy_
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.9999
    fp32 = enc.encode(SENTENCES, precision="fp32")  # the fp32 copy too (where packing works), against the model
    with torch.inference_mode():
        plain = enc.forward(enc.collate(enc.tokenize_ids(SENTENCES))).numpy()
    np.testing.assert_allclose(fp32, plain, atol=1e-5)


def test_use_cpu_inference_attention_leaves_other_attention_alone(tiny_bert):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert, attn_implementation="eager")
    assert ca.use_cpu_inference_attention(model) is False  # a user's eager choice is kept
    assert model.config._attn_implementation == "eager"
    model.set_attn_implementation("sdpa")
    assert ca.use_cpu_inference_attention(model) is True
    assert model.config._attn_implementation == ca.ATTENTION_NAME


def test_the_computation_itself_holds_at_any_length():
    """matmul_softmax_attention (what bench.attention times at every length) is the formula beyond MAX_LENGTH too."""
    length = ca.MAX_LENGTH[torch.float32] + 30
    q, k, v = qkv(2, 2, length, 8, torch.float32, seed=3)
    mask = padding_mask([length, 17], length)
    torch.testing.assert_close(ca.matmul_softmax_attention(q, k, v, mask, 0.25).double(),
                               by_definition(q, k, v, mask, 0.25), atol=1e-5, rtol=1e-5)
