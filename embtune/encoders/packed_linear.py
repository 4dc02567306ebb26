"""Linear layers whose weights are reordered once for oneDNN: faster CPU inference.

``nn.Linear`` on the CPU passes its plain row-major weight to the GEMM library on every call. oneDNN's
kernels run on a blocked weight layout; ``torch.ops.mkldnn._reorder_linear_weight`` converts a weight
into it once and ``torch.ops.mkldnn._linear_pointwise`` multiplies with the converted weight (the ops
torch.compile's CPU freezing pass emits for linear layers). Same product, same dtype; measured with
all-MiniLM-L6-v2 on a 2-core AVX-512 CPU (``python -m bench.levers``): encoding 1.14× in fp32, 1.09× in
bf16 (``docs/levers.md``, ``docs/levers-bf16.md``).

Inference only: the packed weight is a plain tensor (no gradient), so :func:`pack_linears` is applied
to an inference copy of a model (:meth:`TransformerEncoder.inference_backbone`), never to the model
being trained. Where torch lacks oneDNN, the device is not a CPU, or the dtype is not fp32/bf16,
nothing is packed.
"""

from __future__ import annotations

import logging
from functools import cache

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

PACKED_DTYPES = (torch.float32, torch.bfloat16)


class PackedLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` held in oneDNN's blocked layout (see the module docstring)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        self.bias = None if linear.bias is None else linear.bias.detach().to(weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


@cache
def _packing_works(dtype: torch.dtype) -> bool:
    """Whether this torch build packs and multiplies correctly in ``dtype`` (checked once, on a tiny layer)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        lin = torch.nn.utils.skip_init(nn.Linear, 8, 4)  # no random initialisation
        with torch.no_grad():  # fixed values: the probe must not draw from the seeded generator
            lin.weight.copy_(torch.linspace(-1, 1, 32).reshape(4, 8))
            lin.bias.copy_(torch.linspace(-0.5, 0.5, 4))
        lin = lin.to(dtype)
        x = torch.linspace(-2, 2, 24, dtype=dtype).reshape(3, 8)
        with torch.no_grad():
            ok = torch.allclose(PackedLinear(lin)(x).float(), lin(x).float(), atol=1e-2)
    except (RuntimeError, AttributeError) as e:  # an op missing from this build, or not for this dtype/CPU
        logger.info("oneDNN weight packing unavailable for %s (%s): nn.Linear kept", dtype, e)
        return False
    return ok


def can_pack(device: torch.device | str, dtype: torch.dtype) -> bool:
    return torch.device(device).type == "cpu" and dtype in PACKED_DTYPES and _packing_works(dtype)


def pack_linears(model: nn.Module) -> int:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a :class:`PackedLinear`; returns how many."""
    packed = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, PackedLinear(child))
                packed += 1
    return packed
