from __future__ import annotations

import numpy as np
import pytest

import embtune
from embtune.errors import EmbtuneError
from embtune.search import Index
from embtune.search import quantize as qz
from tests.conftest import SENTENCES


def test_int8_formula_by_hand():
    emb = np.array([[0.0, -1.0], [2.55, 1.0], [1.0, 0.5]], dtype=np.float32)
    calib = qz.int8_calibrate(emb)
    np.testing.assert_allclose(calib, [[0.0, -1.0], [0.01, 2 / 255]], rtol=1e-6)
    codes = qz.int8_encode(emb, calib)
    assert codes.dtype == np.int8
    assert codes[:, 0].tolist() == [-128, 127, round(1.0 / 0.01) - 128]
    assert codes[:, 1].tolist() == [-128, 127, 63]  # 1.5 / (2/255) = 191.25 -> 191
    back = qz.int8_decode(codes, calib)
    assert np.abs(back - emb).max() <= calib[1].max() / 2 + 1e-6  # within half a step
    # out-of-range values (documents added after calibration) are clipped
    assert qz.int8_encode(np.array([[9.0, -9.0]], np.float32), calib).tolist() == [[127, -128]]


def test_binary_bits_and_hamming_by_hand():
    emb = np.array([[0.5, -0.1, 0.0, 2.0, -3.0, 1.0, 1.0, -1.0, 0.2]], dtype=np.float32)
    packed = qz.binary_encode(emb)
    assert packed.shape == (1, 2) and packed[0].tolist() == [0b10010110, 0b10000000]
    pm = qz.binary_decode(packed, 9)
    assert pm.tolist() == [[1, -1, -1, 1, -1, 1, 1, -1, 1]]
    other = qz.binary_decode(qz.binary_encode(-emb), 9)
    ham = int((pm != other).sum())
    assert float((pm @ other.T)[0, 0]) == 9 - 2 * ham and ham == 8  # only the 0.0 stays 0 in both


def test_blocked_topk_equals_full_search():
    g = np.random.default_rng(0)
    q, c = g.standard_normal((5, 8)).astype(np.float32), g.standard_normal((100, 8)).astype(np.float32)
    idx, sc = qz.blocked_topk(q, 100, lambda s, e: c[s:e], 7, block=13, query_chunk=2)
    full = q @ c.T
    for r in range(5):
        assert set(idx[r]) == set(np.argsort(-full[r])[:7])
        np.testing.assert_allclose(np.sort(sc[r]), np.sort(full[r])[-7:], rtol=1e-5)


@pytest.mark.parametrize("kind", ["int8", "binary"])
def test_index_rescoring_with_all_candidates_equals_float_search(tiny_st, tmp_path, kind):
    enc = embtune.load(str(tiny_st))
    ref = Index.build(enc, SENTENCES)
    quant = Index.build(enc, SENTENCES, quantize=kind, rescore=len(SENTENCES))  # every document is a candidate
    a, sa = ref.search(SENTENCES[:4], k=5)
    b, sb = quant.search(SENTENCES[:4], k=5)
    assert a == b
    np.testing.assert_allclose(sa, sb, atol=1e-5)  # rescored in float: the float scores
    quant.save(tmp_path / "q")
    back = Index.load(tmp_path / "q", model=enc)
    assert back.quantize == kind and back.search(SENTENCES[:4], k=5)[0] == a
    assert back.codes.nbytes < back.embeddings.nbytes / (3 if kind == "int8" else 30)


def test_bad_quantize_option(tiny_st):
    with pytest.raises(EmbtuneError, match="unknown quantization 'int4'"):
        Index(embtune.load(str(tiny_st)), quantize="int4")
    with pytest.raises(EmbtuneError, match="rescore must be an integer >= 1"):
        Index(embtune.load(str(tiny_st)), quantize="binary", rescore=0)
