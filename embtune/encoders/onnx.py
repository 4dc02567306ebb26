"""ONNX Runtime backend for transformer encoders (inference only).

``export_onnx(encoder, folder)`` writes the transformer of an encoder as ONNX under the file name
sentence-transformers' ``backend="onnx"`` looks for (``folder/onnx/model.onnx``: inputs
``input_ids`` and ``attention_mask``, dynamic batch and length, output ``last_hidden_state``),
plus ``onnx/model_fused.onnx``: the same graph after ONNX Runtime's transformer optimizer fused
attention, embedding + LayerNorm, bias + GELU and residual + LayerNorm into single kernels.

``OnnxEncoder`` runs that graph with ONNX Runtime and keeps everything else of the torch encoder
(tokenizer, pooler, MLP, Normalize, the once-per-distinct-sentence, length-sorted ``encode``),
so both backends give the same embeddings up to float rounding (tested at 1e-4). The pooling head
stays in torch: it is a few vector operations per batch.

Export runs the model with eager attention: ONNX Runtime's optimizer recognises that graph and
fuses it; the scaled-dot-product path of transformers exports to a graph it does not fuse.

``quantize_int8(onnx_file)`` is the ``onnx-int8`` backend: ONNX Runtime's *dynamic* quantization
(``quantize_dynamic``; weights int8 per output channel, activations quantized per batch at run time,
no calibration data) of that graph — the same recipe as sentence-transformers'
``export_dynamic_quantized_onnx_model``. On a CPU without VNNI the weights use 7 bits
(``reduce_range``), which ONNX Runtime advises there against overflow in its u8×s8 kernels.
The quantized file goes to the cache, keyed by the source graph's bytes and that setting.
Activations are scaled by their range over the whole batch, so an int8 embedding depends slightly on
the other sentences of its batch (fp32 and bf16 embeddings do not).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from embtune.encoders.base import Encoder
from embtune.encoders.pooling import HIDDEN_STATE_POOLERS
from embtune.encoders.transformer import TransformerEncoder
from embtune.errors import EmbtuneError
from embtune.utils import weights_digest

logger = logging.getLogger(__name__)
ONNX_DIR = "onnx"
PLAIN, FUSED, QINT8 = "model.onnx", "model_fused.onnx", "model_qint8.onnx"
OPSET = 17
INSTALL = "pip install 'embtune[onnx]' (onnx and onnxruntime)"


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EmbtuneError(f"the ONNX backend needs the {module.split('.')[0]} package: {INSTALL}") from e


class _Graph(nn.Module):
    """What is exported: token ids -> last hidden state (and every layer's states when pooled over layers)."""

    def __init__(self, backbone: nn.Module, all_layers: bool):
        super().__init__()
        self.backbone, self.all_layers = backbone, all_layers

    def forward(self, input_ids: Tensor, attention_mask: Tensor):
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=self.all_layers, return_dict=True)
        return (out.last_hidden_state, *out.hidden_states) if self.all_layers else out.last_hidden_state


def export_onnx(encoder: TransformerEncoder, folder: str | Path, fuse: bool = True) -> Path:
    """Export ``encoder``'s transformer to ``folder/onnx/``; return the file to run (fused when possible)."""
    _require("onnx")
    if not isinstance(encoder, TransformerEncoder):
        raise EmbtuneError(f"the ONNX backend is for transformer encoders, not {type(encoder).__name__}")
    out_dir = Path(folder) / ONNX_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    plain = out_dir / PLAIN
    bb = encoder.backbone
    all_layers = encoder.pooler in HIDDEN_STATE_POOLERS
    n_layers = int(bb.config.num_hidden_layers)
    names = ["last_hidden_state"] + ([f"hidden_states.{i}" for i in range(n_layers + 1)] if all_layers else [])
    example = encoder.collate(encoder.tokenize_ids(["an example sentence for the export", "a short one"]))
    previous = getattr(bb.config, "_attn_implementation", None)
    was_training = bb.training
    bb.eval()
    try:
        if hasattr(bb, "set_attn_implementation"):
            bb.set_attn_implementation("eager")
        dyn = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}}
        dyn.update({n: {0: "batch", 1: "length"} for n in names})
        tmp = plain.with_suffix(".tmp")
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter (kept: its graph is the one ONNX Runtime's optimizer fuses) warns
            # that it is legacy, and the tracer about shape checks that hold for every batch we feed
            warnings.simplefilter("ignore")
            torch.onnx.export(_Graph(bb, all_layers), (example["input_ids"], example["attention_mask"]), str(tmp),
                              input_names=["input_ids", "attention_mask"], output_names=names,
                              dynamic_axes=dyn, opset_version=OPSET, dynamo=False)
        tmp.replace(plain)
    finally:
        if previous and hasattr(bb, "set_attn_implementation"):
            bb.set_attn_implementation(previous)
        bb.train(was_training)
    if not fuse:
        return plain
    fused = out_dir / FUSED
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        model = optimize_model(str(plain), model_type="bert", num_heads=int(bb.config.num_attention_heads),
                               hidden_size=int(bb.config.hidden_size))
        model.save_model_to_file(str(fused.with_suffix(".tmp")))
        fused.with_suffix(".tmp").replace(fused)
        logger.info("ONNX export: fused operators %s", {k: v for k, v in model.get_fused_operator_statistics().items() if v})
        return fused
    except Exception as e:  # noqa: BLE001 — a model the optimizer does not know still runs unfused
        logger.warning("ONNX Runtime's optimizer could not fuse %s (%s); running the plain graph", plain, e)
        return plain


def shipped_export(folder: str | Path) -> Path | None:
    """The ONNX file a model folder carries (``onnx/model_fused.onnx``, else ``onnx/model.onnx``), if any."""
    return next((f for f in (Path(folder) / ONNX_DIR / n for n in (FUSED, PLAIN)) if f.is_file()), None)


def _cached_export(encoder: TransformerEncoder) -> Path:
    """An export of ``encoder`` under the cache folder, keyed by the content of its transformer's
    weights (so a model changed in memory never reuses a stale export), its pooler and the exporter."""
    from embtune.data.registry import cache_dir

    digest = weights_digest(encoder.backbone, f"{encoder.pooler}|{torch.__version__}|{OPSET}")
    folder = cache_dir() / "onnx" / digest[:24]
    return shipped_export(folder) or export_onnx(encoder, folder)


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quantize_int8(onnx_file: str | Path) -> Path:
    """The int8 dynamically quantized version of ``onnx_file`` (made once, in the cache)."""
    import hashlib

    from embtune.data.registry import cache_dir
    from embtune.precision import cpu_flags

    _require("onnx")
    q = _require("onnxruntime.quantization")
    src = Path(onnx_file)
    reduce_range = not {"avx512_vnni", "avx_vnni"} & cpu_flags()
    h = hashlib.sha256(f"qint8|per_channel|reduce_range={reduce_range}|".encode())
    with src.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    out = cache_dir() / "onnx" / f"q-{h.hexdigest()[:24]}" / QINT8
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    root = logging.getLogger()
    # ONNX Runtime's quantizer advises (on the root logger) a pre-processing pass of shape inference and graph
    # optimization: the fused graph has had its optimization, and DefaultTensorType stands in for the shapes
    advice = _DropMessage("consider to run pre-processing before quantization")
    root.addFilter(advice)
    try:
        # the fused graph's contrib operators (Attention, SkipLayerNormalization) are outside ONNX's shape
        # inference: their outputs are float tensors, as DefaultTensorType says
        q.quantize_dynamic(str(src), str(tmp), per_channel=True, reduce_range=reduce_range,
                           weight_type=q.QuantType.QInt8,
                           extra_options={"DefaultTensorType": _require("onnx").TensorProto.FLOAT})
    except Exception as e:  # noqa: BLE001 — the quantizer raises its own and onnx's exception types
        tmp.unlink(missing_ok=True)
        raise EmbtuneError(f"{src}: ONNX Runtime could not quantize it to int8 ({e})") from e
    finally:
        root.removeFilter(advice)
    tmp.replace(out)
    logger.info("int8 dynamic quantization of %s -> %s (reduce_range=%s)", src, out, reduce_range)
    return out


class OnnxEncoder(Encoder):
    """A transformer encoder whose transformer runs in ONNX Runtime (CPU); ``encode`` as usual.

    ``onnx_file``: the graph to run; by default an export of ``encoder`` from the cache (made on first use).
    ``int8``: run the int8 dynamically quantized version of that graph (``quantize_int8``).
    """

    inference_precisions = ("fp32",)

    def __init__(self, encoder: TransformerEncoder, onnx_file: str | Path | None = None, threads: int | None = None,
                 int8: bool = False):
        super().__init__()
        ort = _require("onnxruntime")
        if not isinstance(encoder, TransformerEncoder):
            raise EmbtuneError(f"the ONNX backend is for transformer encoders, not {type(encoder).__name__}")
        self.torch_encoder = encoder.eval().cpu()
        super().train(False)  # an inference-only module
        self.max_seq_length = encoder.max_seq_length
        self.onnx_file = Path(onnx_file) if onnx_file is not None else _cached_export(encoder)
        if not self.onnx_file.is_file():
            raise EmbtuneError(f"{self.onnx_file}: no such ONNX file")
        if int8:
            self.onnx_file = quantize_int8(self.onnx_file)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.onnx_file), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 — ORT raises its own exception types
            raise EmbtuneError(f"{self.onnx_file}: ONNX Runtime could not load it ({e})") from e
        self.all_layers = encoder.pooler in HIDDEN_STATE_POOLERS
        got = len(self.session.get_outputs())
        if self.all_layers and got < 2:
            raise EmbtuneError(f"{self.onnx_file}: pooler {encoder.pooler} needs every layer's states but the graph "
                               "returns only the last one; export it again with this pooler")
        logger.info("ONNX Runtime encoder from %s (%d threads)", self.onnx_file, so.intra_op_num_threads)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def embedding_dim(self) -> int:
        return self.torch_encoder.embedding_dim

    def tokenize_ids(self, texts, max_length: int | None = None) -> list[list[int]]:
        return self.torch_encoder.tokenize_ids(texts, max_length)

    def collate(self, ids: list[list[int]]) -> dict[str, Tensor]:
        return self.torch_encoder.collate(ids)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        feeds = {"input_ids": features["input_ids"].numpy(), "attention_mask": features["attention_mask"].numpy()}
        outs = [torch.from_numpy(np.asarray(o)) for o in self.session.run(None, feeds)]
        hidden = tuple(outs[1:]) if self.all_layers else None
        return self.torch_encoder.head(outs[0], features["attention_mask"], hidden)

    def save(self, path: str | Path) -> None:
        self.torch_encoder.save(path)
        export_onnx(self.torch_encoder, path)

    def train(self, mode: bool = True) -> "OnnxEncoder":
        if mode:
            raise EmbtuneError("the ONNX backend is for inference; train with the torch encoder")
        return super().train(False)


def available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["OnnxEncoder", "export_onnx", "quantize_int8", "shipped_export", "available", "ONNX_DIR"]
