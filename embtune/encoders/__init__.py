"""Encoders: a transformer with SimCSE's poolers, and word-vector encoders (mean, TextCNN)."""

from __future__ import annotations

import logging
from pathlib import Path

from embtune.encoders.base import Encoder
from embtune.encoders.hub import resolve_model_path
from embtune.encoders.pooling import POOLERS
from embtune.encoders.transformer import TransformerEncoder, read_json
from embtune.encoders.wordvec import BUILTIN_VECTORS, WordVectorEncoder
from embtune.errors import EmbtuneError
from embtune.utils import resolve_device

logger = logging.getLogger(__name__)
BACKENDS = {  # --backend: one definition for load_encoder and the CLI
    "torch": "PyTorch (any device, any precision)",
    "onnx": "the transformer in ONNX Runtime (CPU, fp32; exported on first use)",
    "onnx-int8": "the ONNX graph with int8 dynamic quantization of its weights (CPU; quantized on first use)",
}


def load_encoder(
    name_or_path: str,
    device: str | None = None,
    pooler: str | None = None,
    mlp_only_train: bool | None = None,
    trust_remote_code: bool = False,
    default_pooler: str = "mean",
    default_mlp_only_train: bool = False,
    word_encoder: str | None = None,
    backend: str = "torch",
    allow_pickle: bool = False,
    mlp_init: str = "pretrained",
    **wordvec_options,
) -> Encoder:
    """Load an encoder.

    ``name_or_path`` is a built-in model (``minilm-l6``), built-in word vectors (``glove-50d``; with
    ``word_encoder`` mean or textcnn, mean by default), a folder saved by embtune or
    sentence-transformers, a plain Hugging Face folder, or a Hugging Face id.
    ``backend="onnx"`` runs a transformer in ONNX Runtime (inference only; exported on first use);
    ``backend="onnx-int8"`` runs that graph with int8 dynamically quantized weights.
    Weights load from safetensors files only, unless ``allow_pickle`` (pickle can run code).
    ``pooler="cls"`` on a model without SimCSE's MLP uses the model's pretrained pooler
    (``mlp_init="pretrained"``, evaluation) or a new MLP (``mlp_init="new"``, training).
    """
    if backend not in BACKENDS:
        raise EmbtuneError(f"unknown backend {backend!r}; expected one of: {', '.join(BACKENDS)}")
    dev = resolve_device(device)
    if name_or_path in BUILTIN_VECTORS or word_encoder is not None:
        if backend != "torch":
            raise EmbtuneError(f"word-vector encoders run in torch only (backend {backend!r})")
        enc = WordVectorEncoder.from_vectors(name_or_path, kind=word_encoder or "mean", **wordvec_options)
        return enc.eval().to(dev)
    folder = resolve_model_path(name_or_path)
    meta = folder / "embtune.json"
    if meta.is_file():
        kind = read_json(meta).get("encoder")
        if kind == "wordvec":
            if backend != "torch":
                raise EmbtuneError(f"{folder}: word-vector encoders run in torch only (backend {backend!r})")
            return WordVectorEncoder.load(folder).eval().to(dev)
    enc = TransformerEncoder.load(folder, pooler=pooler, mlp_only_train=mlp_only_train,
                                  trust_remote_code=trust_remote_code, default_pooler=default_pooler,
                                  default_mlp_only_train=default_mlp_only_train, allow_pickle=allow_pickle,
                                  mlp_init=mlp_init)
    enc.source_path = Path(folder)
    enc.eval()
    if backend != "torch":
        from embtune.encoders.onnx import OnnxEncoder, shipped_export

        if dev.type != "cpu":
            raise EmbtuneError(f"the ONNX backend runs on the CPU; got --device {dev}")
        # the folder's own export, else the cache's
        return OnnxEncoder(enc, onnx_file=shipped_export(folder), int8=backend == "onnx-int8")
    return enc.to(dev)


__all__ = ["BACKENDS", "Encoder", "TransformerEncoder", "WordVectorEncoder", "load_encoder", "POOLERS"]
