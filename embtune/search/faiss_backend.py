"""Approximate (and exact) inner-product search with faiss, an optional extra (``pip install 'embtune[faiss]'``).

Kinds (Johnson, Douze & Jégou 2019, *Billion-scale similarity search with GPUs*; Malkov & Yashunin
2018, *HNSW*):

- ``flat``: ``IndexFlatIP``, exact;
- ``ivf``: ``IndexIVFFlat`` with ``nlist`` k-means cells (default ≈ 4·√n), ``nprobe`` cells searched;
- ``hnsw``: ``IndexHNSWFlat`` with ``m`` links per node, ``ef_construction``, ``ef_search``.

Approximate kinds return what faiss finds, ordered by faiss's score (no trec_eval tie-break): use
the exact engine (:func:`embtune.search.topk`) for evaluation. Their recall against exact search is
measured in ``bench/search.py`` (``docs/search.md``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from embtune.errors import EmbtuneError

KINDS = ("flat", "ivf", "hnsw")


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise EmbtuneError("faiss is not installed; pip install 'embtune[faiss]' (faiss-cpu)") from e
    return faiss


class FaissSearcher:
    """``build(corpus_emb)`` then ``search(query_emb, k) -> (indices int64 [q, k], scores float32 [q, k])``."""

    def __init__(self, kind: str = "hnsw", nlist: int | None = None, nprobe: int = 16, m: int = 32,
                 ef_construction: int = 80, ef_search: int = 64, train_size: int = 100_000, seed: int = 0):
        if kind not in KINDS:
            raise EmbtuneError(f"unknown faiss index kind {kind!r}; expected one of: {', '.join(KINDS)}")
        self.kind, self.nlist, self.nprobe, self.m = kind, nlist, nprobe, m
        self.ef_construction, self.ef_search, self.train_size, self.seed = ef_construction, ef_search, train_size, seed
        self.index = None

    def build(self, corpus_emb: np.ndarray) -> "FaissSearcher":
        faiss = _faiss()
        x = np.ascontiguousarray(corpus_emb, dtype=np.float32)
        n, d = x.shape
        if n == 0:
            raise EmbtuneError("the corpus is empty")
        if self.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif self.kind == "ivf":
            nlist = self.nlist or max(1, min(n // 39, int(4 * math.sqrt(n))))  # faiss wants >= 39 points per cell
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            g = np.random.default_rng(self.seed)
            sample = x[g.choice(n, size=min(n, max(self.train_size, 39 * nlist)), replace=False)]
            index.train(sample)
            index.nprobe = self.nprobe
        else:
            index = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
        index.add(x)
        self.index = index
        return self

    def search(self, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise EmbtuneError("build() the faiss index before searching it")
        if k <= 0:
            raise EmbtuneError(f"k must be a positive integer, got {k}")
        k = min(k, self.index.ntotal)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.ef_search, k)
        scores, idx = self.index.search(np.ascontiguousarray(query_emb, dtype=np.float32), k)
        return idx.astype(np.int64), scores


    def save(self, path: Path) -> None:
        if self.index is None:
            raise EmbtuneError("build() the faiss index before saving it")
        tmp = path.with_name(path.name + ".tmp")
        _faiss().write_index(self.index, str(tmp))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, kind: str, count: int, dim: int, **options) -> "FaissSearcher":
        """Read a saved faiss index (its checksum was checked by the caller); its size must match."""
        faiss = _faiss()
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise EmbtuneError(f"{path}: corrupt faiss index ({str(e).splitlines()[0]})") from e
        if index.ntotal != count or index.d != dim:
            raise EmbtuneError(f"{path}: faiss index of {index.ntotal} × {index.d}, expected {count} × {dim}; "
                               "rebuild the index")
        s = cls(kind, **options)
        s.index = index
        if kind == "ivf":
            faiss.extract_index_ivf(index).nprobe = s.nprobe
        elif kind == "hnsw":
            index.hnsw.efSearch = s.ef_search
        return s


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approx top k ∩ exact top k| / k."""
    k = exact.shape[1]
    return float(np.mean([len(set(a[:k]) & set(e)) / k for a, e in zip(approx, exact)]))
