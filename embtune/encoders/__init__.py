"""Encoders: a transformer with SimCSE's poolers (more kinds register here)."""

from __future__ import annotations

import logging

from embtune.encoders.base import Encoder
from embtune.encoders.hub import resolve_model_path
from embtune.encoders.pooling import POOLERS
from embtune.encoders.transformer import TransformerEncoder
from embtune.utils import resolve_device

logger = logging.getLogger(__name__)


def load_encoder(
    name_or_path: str,
    device: str | None = None,
    pooler: str | None = None,
    mlp_only_train: bool | None = None,
    trust_remote_code: bool = False,
    default_pooler: str = "mean",
    default_mlp_only_train: bool = False,
) -> Encoder:
    """Load an encoder from a built-in name, a local folder or a Hugging Face id (see ``hub.py``)."""
    folder = resolve_model_path(name_or_path)
    enc = TransformerEncoder.load(folder, pooler=pooler, mlp_only_train=mlp_only_train,
                                  trust_remote_code=trust_remote_code, default_pooler=default_pooler,
                                  default_mlp_only_train=default_mlp_only_train)
    enc.source_path = folder
    enc.eval()
    return enc.to(resolve_device(device))


__all__ = ["Encoder", "TransformerEncoder", "load_encoder", "POOLERS"]
