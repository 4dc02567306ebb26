"""The ONNX Runtime backend gives the torch encoder's embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embtune.encoders import load_encoder
from embtune.encoders.transformer import TransformerEncoder
from embtune.errors import EmbtuneError
from tests.conftest import SENTENCES

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

# different lengths and duplicates, so padding, sorting and de-duplication are all exercised
TEXTS = SENTENCES + ["a dog", "", SENTENCES[0], "the the the the the the the the the the the the man"]


@pytest.mark.parametrize("pooler,mlp_only_train", [("mean", False), ("cls", False), ("cls_before_pooler", False),
                                                   ("avg_first_last", False), ("avg_top2", False)])
def test_onnx_backend_matches_torch(tiny_bert, tmp_path, pooler, mlp_only_train):
    enc = TransformerEncoder.load(tiny_bert, pooler=pooler, mlp_only_train=mlp_only_train)
    enc.normalize = pooler == "mean"  # a Normalize module in the saved model too
    enc.save(tmp_path / "m")
    ref = load_encoder(str(tmp_path / "m")).encode(TEXTS, batch_size=4)
    onnx = load_encoder(str(tmp_path / "m"), backend="onnx")
    got = onnx.encode(TEXTS, batch_size=4)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4)
    # the export is cached: a second load reuses the file instead of exporting again
    again = load_encoder(str(tmp_path / "m"), backend="onnx")
    assert again.onnx_file == onnx.onnx_file


def test_saved_onnx_folder_is_used_and_fused(tiny_bert, tmp_path):
    from embtune.encoders.onnx import FUSED, ONNX_DIR, OnnxEncoder

    enc = TransformerEncoder.load(tiny_bert, pooler="mean")
    OnnxEncoder(enc).save(tmp_path / "m")
    assert (tmp_path / "m" / ONNX_DIR / "model.onnx").is_file()
    loaded = load_encoder(str(tmp_path / "m"), backend="onnx")
    assert loaded.onnx_file == tmp_path / "m" / ONNX_DIR / FUSED  # the model's own export, not the cache's
    import onnx

    ops = {n.op_type for n in onnx.load(str(loaded.onnx_file)).graph.node}
    assert "Attention" in ops  # ONNX Runtime's optimizer fused the attention
    np.testing.assert_allclose(loaded.encode(TEXTS), enc.encode(TEXTS), atol=1e-4)


def test_onnx_backend_refuses_what_it_cannot_run(tiny_bert, tmp_path):
    with pytest.raises(EmbtuneError, match="backend"):
        load_encoder(str(tiny_bert), backend="tensorrt")
    with pytest.raises(EmbtuneError, match="torch only"):
        load_encoder("glove-50d", backend="onnx")
    onnx = load_encoder(str(tiny_bert), backend="onnx")
    with pytest.raises(EmbtuneError, match="inference"):
        onnx.train()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    from embtune.encoders.onnx import OnnxEncoder

    with pytest.raises(EmbtuneError, match="bad.onnx"):
        OnnxEncoder(load_encoder(str(tiny_bert)), onnx_file=bad)


def test_changed_weights_get_a_new_export(tiny_bert):
    from embtune.encoders.onnx import OnnxEncoder

    enc = TransformerEncoder.load(tiny_bert, pooler="mean").eval()
    first = OnnxEncoder(enc)
    with torch.no_grad():  # e.g. a model trained in memory since the first export
        enc.backbone.encoder.layer[0].output.dense.weight.mul_(1.5)
    second = OnnxEncoder(enc)
    assert second.onnx_file != first.onnx_file
    np.testing.assert_allclose(second.encode(TEXTS), enc.encode(TEXTS), atol=1e-4)
    assert np.abs(first.encode(TEXTS) - enc.encode(TEXTS)).max() > 1e-3  # the stale graph would be wrong


def test_int8_backend_quantizes_the_graph(tiny_bert, tmp_path, caplog):
    import logging

    import onnx

    from embtune.encoders.onnx import QINT8

    enc = TransformerEncoder.load(tiny_bert, pooler="mean")
    enc.save(tmp_path / "m")
    fp32 = load_encoder(str(tmp_path / "m"), backend="onnx")
    with caplog.at_level(logging.INFO):
        int8 = load_encoder(str(tmp_path / "m"), backend="onnx-int8")
    assert "int8 dynamic quantization of" in caplog.text and "pre-processing" not in caplog.text
    assert int8.onnx_file.name == QINT8 and int8.onnx_file != fp32.onnx_file
    graph = onnx.load(str(int8.onnx_file)).graph
    ops = {n.op_type for n in graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}, ops  # integer kernels run the matmuls
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)  # weights stored as int8
    assert "MatMulInteger" not in {n.op_type for n in onnx.load(str(fp32.onnx_file)).graph.node}  # negative control
    ref, got = fp32.encode(TEXTS, batch_size=4), int8.encode(TEXTS, batch_size=4)
    assert got.shape == ref.shape
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 0.99  # the same embeddings up to quantization error ...
    assert np.abs(got - ref).max() > 1e-4  # ... which is there: this is not the fp32 graph
    assert load_encoder(str(tmp_path / "m"), backend="onnx-int8").onnx_file == int8.onnx_file  # quantized once


def test_int8_backend_reports_a_graph_it_cannot_quantize(tiny_bert, tmp_path, monkeypatch):
    from embtune.encoders.onnx import quantize_int8

    def broken(*args, **kwargs):
        raise ValueError("unsupported op")

    monkeypatch.setattr("onnxruntime.quantization.quantize_dynamic", broken)
    graph = tmp_path / "odd.onnx"  # bytes no earlier test quantized, so the cache has nothing for them
    graph.write_bytes(load_encoder(str(tiny_bert), backend="onnx").onnx_file.read_bytes() + b"\n")
    with pytest.raises(EmbtuneError, match="odd.onnx: ONNX Runtime could not quantize it to int8"):
        quantize_int8(graph)
    assert not list(tmp_path.rglob("*.tmp"))
