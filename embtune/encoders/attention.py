"""Putting one of embtune's attention functions in place of a Hugging Face model's SDPA attention.

Shared by :mod:`embtune.encoders.dropout` (training: SDPA with a cheaper dropout mask on the CPU) and
:mod:`embtune.encoders.cpu_attention` (CPU inference on short batches). Each of those computes the common case
itself and hands every call that needs what only transformers' SDPA function implements back to it
(:func:`needs_transformers_sdpa`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

#: Keyword arguments of transformers' attention functions that embtune's own paths do not implement.
SPECIAL_KWARGS = ("position_bias", "softcap", "sliding_window", "s_aux", "sinks")


def needs_transformers_sdpa(module: nn.Module, query: Tensor, attention_mask: Tensor | None, kwargs: dict) -> bool:
    """Whether an attention call uses a position bias, soft-capping, a sliding window, sinks, grouped key/value
    heads, or causal attention without a mask (which transformers' SDPA function turns into ``is_causal``)."""
    if any(kwargs.get(k) is not None for k in SPECIAL_KWARGS) or getattr(module, "num_key_value_groups", 1) > 1:
        return True
    causal = kwargs.get("is_causal")
    causal = getattr(module, "is_causal", True) if causal is None else causal  # as transformers' SDPA decides
    return bool(causal and attention_mask is None and query.shape[-2] > 1)


def replace_sdpa(model: nn.Module, name: str, function: Callable) -> bool:
    """Register ``function`` as attention ``name`` (with SDPA's masks) and set it on every part of ``model`` that
    was loaded with SDPA and lets its attention be switched; True if any was. Changes ``model``'s config."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    switched = False
    for sub in model.modules():
        config = getattr(sub, "config", None)
        settable = getattr(sub, "_can_set_attn_implementation", None)
        if getattr(config, "_attn_implementation", None) == "sdpa" and settable is not None and settable():
            AttentionInterface.register(name, function)
            AttentionMaskInterface.register(name, sdpa_mask)  # the masks SDPA gets
            sub.set_attn_implementation(name)
            switched = True
    return switched
