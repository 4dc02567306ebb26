from __future__ import annotations

import numpy as np
import pytest

from embtune.errors import EmbtuneError
from embtune.search import topk
from embtune.search.faiss_backend import FaissSearcher, recall_at_k

pytest.importorskip("faiss", reason="faiss not installed (pip install 'embtune[faiss]')")


def data(n=2000, q=50, d=16, seed=0):
    g = np.random.default_rng(seed)
    c = g.standard_normal((n, d)).astype(np.float32)
    x = g.standard_normal((q, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), c / np.linalg.norm(c, axis=1, keepdims=True)


def test_recall_by_hand():
    assert recall_at_k(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 9], [7, 8, 9]])) == pytest.approx((2 / 3 + 0) / 2)


def test_flat_is_exact_and_hnsw_ivf_find_most_neighbours():
    q, c = data()
    exact, sc = topk(q, c, 10)
    idx, fsc = FaissSearcher("flat").build(c).search(q, 10)
    assert recall_at_k(idx, exact) == 1.0
    np.testing.assert_allclose(fsc, sc, atol=1e-5)
    for s in (FaissSearcher("hnsw", ef_search=128), FaissSearcher("ivf", nlist=16, nprobe=8)):
        assert recall_at_k(s.build(c).search(q, 10)[0], exact) >= 0.8
    weak = FaissSearcher("ivf", nlist=32, nprobe=1).build(c)  # negative control: one cell of 32 misses neighbours
    assert recall_at_k(weak.search(q, 10)[0], exact) < 0.8


def test_bad_kind():
    with pytest.raises(EmbtuneError, match="unknown faiss index kind"):
        FaissSearcher("lsh")
