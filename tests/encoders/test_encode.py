"""encode(): input checks, knobs, length-sorted / token-budget batches, the device-side batch builder,
the pinned-memory fallback on CPU, and bf16 inference as a cast copy of the transformer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embtune.encoders.batching import PackedIds, length_sorted_batches, to_device
from embtune.encoders.pooling import pad_ids
from embtune.encoders.transformer import TransformerEncoder
from embtune.errors import EmbtuneError
from embtune.precision import DeviceSupport
from tests.conftest import SENTENCES


@pytest.fixture
def enc(tiny_bert):
    return TransformerEncoder.load(tiny_bert, pooler="mean").eval()


def test_length_sorted_batches_cover_all_longest_first():
    lengths = [3, 9, 1, 7, 7, 2]
    b = length_sorted_batches(lengths, 4)
    assert [list(x) for x in b] == [[1, 3, 4, 0], [5, 2]]  # 9, 7, 7, 3 | 2, 1 (stable among equal lengths)


def test_token_budget_batches_respect_the_budget():
    lengths = [10, 10, 5, 5, 5, 5, 2, 2, 2, 2, 2, 2]
    b = length_sorted_batches(lengths, batch_size=100, token_budget=20)
    for idx in b:  # padded positions = rows x longest row
        assert len(idx) * max(lengths[i] for i in idx) <= 20
    assert sorted(np.concatenate(b).tolist()) == list(range(len(lengths)))
    assert [len(x) for x in b] == [2, 4, 6]
    # a sequence longer than the budget still gets a batch of its own
    assert [len(x) for x in length_sorted_batches([50, 1], 8, token_budget=10)] == [1, 1]


def test_pad_ids_matches_the_loop():
    ids = [[5, 6, 7], [8], [9, 10]]
    f = pad_ids(ids, pad_id=0)
    assert f["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert f["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert f["input_ids"].dtype == torch.long


def test_packed_batches_equal_collate():
    ids = [[101, 5, 6, 102], [101, 102], [101, 7, 8, 9, 102], [101, 4, 102]]
    packed = PackedIds(ids, torch.device("cpu"), pad_id=3)
    idx = np.array([2, 0, 1])
    got = packed.batch(idx)
    ref = pad_ids([ids[i] for i in idx], 3)
    assert torch.equal(got["input_ids"], ref["input_ids"]) and torch.equal(got["attention_mask"], ref["attention_mask"])


def test_to_device_cpu_is_a_no_op_and_cuda_falls_back_without_pinning(monkeypatch):
    t = torch.arange(4)
    assert to_device(t, torch.device("cpu")) is t
    calls = []

    def no_pin(self):
        raise RuntimeError("no CUDA driver")

    def fake_to(self, device, non_blocking=False):
        calls.append((str(device), non_blocking))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", no_pin)
    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    to_device(t, torch.device("cuda"))
    assert calls == [("cuda", True)]


def test_encode_dedupes_keeps_order_and_batches_by_length(enc):
    rows = []
    hook = enc.backbone.register_forward_hook(lambda m, a, kw, out: rows.append(kw["input_ids"].shape), with_kwargs=True)
    texts = [SENTENCES[0], SENTENCES[1], SENTENCES[0], SENTENCES[2]]
    out = enc.encode(texts, batch_size=2)
    hook.remove()
    assert sum(r[0] for r in rows) == 3  # three distinct sentences
    assert out.dtype == np.float32 and out.shape == (4, 32)
    np.testing.assert_array_equal(out[0], out[2])
    single = enc.encode([SENTENCES[1]])
    np.testing.assert_allclose(out[1], single[0], atol=1e-5)
    # token budget gives the same embeddings
    np.testing.assert_allclose(enc.encode(texts, batch_size=8, token_budget=12), out, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_bad_batch_size_is_an_error(enc, bad):
    with pytest.raises(EmbtuneError, match="batch_size must be a positive integer"):
        enc.encode(SENTENCES[:2], batch_size=bad)


@pytest.mark.parametrize("texts,where", [([None], "item 0 is NoneType"), (["ok", 3], "item 1 is int"),
                                         (["a", b"bytes"], "item 1 is bytes")])
def test_non_string_items_named_by_index(enc, texts, where):
    with pytest.raises(EmbtuneError, match=where):
        enc.encode(texts)


def test_single_string_and_none(enc):
    with pytest.raises(EmbtuneError, match="not a single string"):
        enc.encode("one sentence")
    with pytest.raises(EmbtuneError, match="got None"):
        enc.encode(None)


def test_output_knobs(enc):
    a = enc.encode(SENTENCES[:3])
    t = enc.encode(SENTENCES[:3], output="torch")
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), a, atol=1e-6)
    assert isinstance(enc.encode(SENTENCES[:3], convert_to_tensor=True), torch.Tensor)
    n = enc.encode(SENTENCES[:3], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(n, a / np.linalg.norm(a, axis=1, keepdims=True), atol=1e-5)
    assert enc.encode([]).shape == (0, 32)
    with pytest.raises(EmbtuneError, match="output must be"):
        enc.encode(SENTENCES[:2], output="list")


def test_non_native_precision_refused_in_encode(enc):
    with pytest.raises(EmbtuneError, match="no native bf16"):
        enc.encode(SENTENCES[:2], precision="bf16")
    enc.allow_slow_precision = True  # what --allow-slow-precision sets
    assert enc.encode(SENTENCES[:2], precision="bf16").dtype == np.float32


def test_bf16_inference_is_a_cast_copy_with_fp32_head(enc, monkeypatch):
    from embtune import precision

    monkeypatch.setattr(precision, "detect_support", lambda d: DeviceSupport("cpu", True, False, "bf16 test device"))
    ref = enc.encode(SENTENCES, precision="fp32")
    got = enc.encode(SENTENCES, precision="auto")  # auto -> bf16 on a native device
    assert got.dtype == np.float32
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.995 and not np.array_equal(ref, got)  # bf16 ran (differs) and stays close
    half = enc.inference_backbone(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    assert all(p.dtype == torch.float32 for p in enc.parameters())  # the model itself is untouched
    assert "_inference_cache" not in enc.state_dict() and all(not k.startswith("_inference") for k, _ in enc.named_modules())
    assert enc.inference_backbone(torch.bfloat16) is half  # cached
    with torch.no_grad():
        next(enc.backbone.parameters()).add_(1.0)  # weights change -> the copy is rebuilt
    assert enc.inference_backbone(torch.bfloat16) is not half
    changed = enc.encode(SENTENCES, precision="bf16")
    assert np.abs(changed - got).max() > 1e-3


def test_inference_copy_follows_fused_optimizer_steps_and_data_writes(enc):
    """torch's fused AdamW updates weights without bumping their version counters: the cached inference
    copy must still notice (it once served the weights of step 0 to every evaluation of a training run)."""
    before = enc.encode(SENTENCES[:3])
    params = list(enc.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2, fused=True)
    versions = [p._version for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert [p._version for p in params] == versions  # the premise: no version bump
    after = enc.encode(SENTENCES[:3])
    assert np.abs(after - before).max() > 1e-3
    copy_ = enc.inference_backbone(torch.float32)
    assert enc.inference_backbone(torch.float32) is copy_  # unchanged weights: the cache holds
    emb = enc.backbone.embeddings.word_embeddings.weight
    emb.data.mul_(0.5)  # a write through .data (no version bump either)
    assert enc.inference_backbone(torch.float32) is not copy_
    assert np.abs(enc.encode(SENTENCES[:3]) - after).max() > 1e-3


def test_inference_copy_follows_the_attention_implementation(enc):
    """The copy follows the model's attention: SDPA becomes the CPU short-sequence attention (which defers to SDPA
    beyond its lengths: cpu_attention.py), a user's eager choice stays eager; the model itself is never switched."""
    from embtune.encoders.cpu_attention import ATTENTION_NAME

    copy_ = enc.inference_backbone(torch.float32)
    if copy_ is None:
        pytest.skip("this torch packs nothing for oneDNN, so fp32 inference runs the model itself")
    assert copy_.config._attn_implementation == ATTENTION_NAME and enc.backbone.config._attn_implementation == "sdpa"
    enc.backbone.set_attn_implementation("eager")
    try:
        assert enc.inference_backbone(torch.float32).config._attn_implementation == "eager"
    finally:
        enc.backbone.set_attn_implementation("sdpa")
    assert enc.inference_backbone(torch.float32).config._attn_implementation == ATTENTION_NAME


def test_inference_attention_bars_cudnn_on_cuda_only():
    """CUDA inference passes run SDPA without cuDNN's kernel (measured slower on an H200); a CPU is untouched."""
    import contextlib

    from embtune.encoders import transformer

    assert isinstance(transformer.inference_attention(torch.device("cpu")), contextlib.nullcontext)
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with transformer.inference_attention(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    kept, transformer.INFERENCE_SDPA_BACKENDS = transformer.INFERENCE_SDPA_BACKENDS, None
    try:  # None: torch's own choice (the benchmark's comparison row)
        assert isinstance(transformer.inference_attention(torch.device("cuda")), contextlib.nullcontext)
    finally:
        transformer.INFERENCE_SDPA_BACKENDS = kept


def test_inference_attention_keeps_a_backend_the_user_turned_off():
    from embtune.encoders import transformer

    before = torch.backends.cuda.flash_sdp_enabled()
    torch.backends.cuda.enable_flash_sdp(False)
    try:
        with transformer.inference_attention(torch.device("cuda")):
            assert not torch.backends.cuda.flash_sdp_enabled()  # not re-enabled for inference
            assert torch.backends.cuda.mem_efficient_sdp_enabled() and not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_flash_sdp(before)
