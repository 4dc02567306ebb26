"""Attention for CPU inference on short sequences: two batched matmuls and a softmax, not SDPA's CPU kernel.

Scaled dot-product attention (Vaswani et al., 2017, §3.2.1) is ``softmax(Q Kᵀ · s + mask) V``. PyTorch's fused
CPU kernel for it (``_scaled_dot_product_flash_attention_for_cpu``) works in blocks per (sequence, head) and has
a fixed cost per block that dominates at the lengths sentence encoders see: in a bf16 encode of
all-MiniLM-L6-v2 (STS sentences, batch 64, ~20 tokens) it took 18% of the time at ~20 GFLOP/s
(``docs/performance.md``, "Attention on a CPU"). Transformers' eager attention is faster per call there, but
measured no faster end to end (``docs/attention-cpu.md``) because of two costs this function avoids:

- **torch's last-dimension softmax is slow below 16 elements** (a one-off probe on a 2-core AVX-512 CPU, torch 2.13:
  [64, 12, 15, 15] fp32 in 1.5 ms, [64, 12, 16, 16] in 0.15 ms). For sequences shorter than
  :data:`TRANSPOSED_BELOW` the scores are computed transposed, ``K Qᵀ``, and normalised over dimension −2
  (4× faster at those sizes), then used transposed in the second matmul (no copy);
- **softmax in bf16 is 3.5× slower than in fp32** on that CPU: the scores are cast to fp32 for the mask and
  the softmax (also the numerically safer choice), and the probabilities back to the inputs' dtype for ``· V``.

The two matmuls run in the inputs' dtype. Per call (``python -m bench.attention``, ``docs/attention-cpu.md``:
2,048 tokens per batch, 12 heads × 32, a 2-core AVX-512 CPU) this is 2.0–3.3× SDPA in both dtypes below 16
tokens, then about even in fp32 (0.99–1.04× from 20 to 48 tokens, 0.94× at 64) and 0.93–1.8× in bf16 up to 48;
end to end is what set :data:`MAX_LENGTH` (``docs/performance.md``, "Attention on a CPU, second try"):
all-MiniLM-L6-v2 encoding STS sentences 1.13× in bf16 and 0.99–1.05× in fp32, and on ~94-token passages
stopping at 48 tokens beat stopping at 128 or 192. Longer batches go to SDPA.

Registered with transformers' ``AttentionInterface`` as :data:`ATTENTION_NAME` and set only on the inference
copy of a CPU model that was loaded with SDPA (:func:`use_cpu_inference_attention`); the trained model keeps
its own attention. Anything this path does not cover — dropout, causal attention without a mask, grouped
key/value heads, position biases, soft-capping, sliding windows, sinks, another device or dtype, a mask that is
not 4-D — goes to transformers' SDPA function unchanged. A query row whose keys are all masked gets uniform
weights here, zeros in SDPA; padding masks never make one (they mask keys, and every sequence has one real token).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from embtune.encoders.attention import needs_transformers_sdpa, replace_sdpa

ATTENTION_NAME = "embtune_cpu_inference"

#: The longest key length (tokens) this path takes per dtype; longer batches go to SDPA (see the module docstring).
MAX_LENGTH: dict[torch.dtype, int] = {torch.float32: 48, torch.bfloat16: 48}

#: Below this many keys the scores are computed transposed and normalised over dimension −2.
TRANSPOSED_BELOW = 16

def short_sequence_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                             attention_mask: Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                             **kwargs) -> tuple[Tensor, None]:
    """transformers' attention-function signature: ``query`` [B, H, Lq, d], ``key``/``value`` [B, H, Lk, d],
    ``attention_mask`` boolean (True = attend) or additive, broadcastable to [B, H, Lq, Lk]; returns the output
    as [B, Lq, H, d] (contiguous) and no attention weights."""
    if not _covered(module, query, key, attention_mask, dropout, kwargs):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return matmul_softmax_attention(query, key, value, attention_mask, scale), None


def matmul_softmax_attention(query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                             scale: float) -> Tensor:
    """``softmax(Q Kᵀ · scale + mask) V`` for any length (the computation; :func:`short_sequence_attention`
    decides when to use it): matmuls in the inputs' dtype, mask and softmax in fp32, output [B, Lq, H, d]."""
    transposed = key.shape[-2] < TRANSPOSED_BELOW
    if transposed:  # [B, H, Lk, Lq]: normalised over keys = dimension −2
        scores = torch.matmul(key, query.transpose(-2, -1)).float().mul_(scale)
        mask = None if attention_mask is None else attention_mask.transpose(-2, -1)
    else:
        scores = torch.matmul(query, key.transpose(-2, -1)).float().mul_(scale)
        mask = attention_mask
    if mask is not None:
        if mask.dtype == torch.bool:
            scores.masked_fill_(~mask, torch.finfo(torch.float32).min)
        else:
            scores.add_(mask)
    if transposed:
        probs = scores.softmax(-2).to(value.dtype).transpose(-2, -1)
    else:
        probs = scores.softmax(-1).to(value.dtype)
    return torch.matmul(probs, value).transpose(1, 2).contiguous()


def _covered(module: nn.Module, query: Tensor, key: Tensor, attention_mask: Tensor | None, dropout: float,
             kwargs: dict) -> bool:
    """Whether :func:`short_sequence_attention` computes this call itself (else SDPA does)."""
    limit = MAX_LENGTH.get(query.dtype)
    if limit is None or query.device.type != "cpu" or max(query.shape[-2], key.shape[-2]) > limit:
        return False
    if dropout > 0.0 or needs_transformers_sdpa(module, query, attention_mask, kwargs):
        return False
    return attention_mask is None or attention_mask.dim() == 4


def use_cpu_inference_attention(model: nn.Module) -> bool:
    """Set :func:`short_sequence_attention` on every part of ``model`` (an inference copy) that was loaded with
    SDPA and lets its attention be switched; True if any was. ``model`` must be a copy: its config is changed."""
    return replace_sdpa(model, ATTENTION_NAME, short_sequence_attention)
