from __future__ import annotations

import numpy as np
import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.search import rank_scores, topk
from embtune.search.topk import tie_keys


def reference_ranking(scores: np.ndarray, doc_ids: list[str]) -> list[int]:
    """The per-query Python sort retrieval.rank() used before the engine: score desc, then id desc."""

    class Desc(str):
        def __lt__(self, other):
            return str.__gt__(self, other)

    return sorted(range(len(doc_ids)), key=lambda i: (-float(scores[i]), Desc(doc_ids[i])))


def tied_data(seed: int, q: int = 23, n: int = 57, d: int = 4):
    """Small-integer vectors: many exactly equal scores, including across the top-k cut."""
    g = np.random.default_rng(seed)
    qe = g.integers(-1, 2, size=(q, d)).astype(np.float64)
    ce = g.integers(-1, 2, size=(n, d)).astype(np.float64)
    ids = [str(x) for x in g.permutation(10 * n)[:n]]  # numeric strings: string order != number order
    return qe, ce, ids


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 20, 57])
@pytest.mark.parametrize("block", [None, 5, 13])
def test_matches_the_old_python_sort_with_many_ties(seed, k, block):
    qe, ce, ids = tied_data(seed)
    # several query chunks, one ragged; blocks of the corpus (one ragged, some smaller than k) whose
    # running top-k lists are merged: ties straddle block boundaries as well as the top-k cut
    idx, sc = topk(qe, ce, k, doc_ids=ids, chunk_size=7, corpus_block=block)
    full = qe @ ce.T
    assert len(np.unique(full)) < 15  # the data really is full of ties
    for r in range(qe.shape[0]):
        assert idx[r].tolist() == reference_ranking(full[r], ids)[:k]
        np.testing.assert_array_equal(sc[r], full[r, idx[r]])


def test_float32_random_unit_vectors_match_reference():
    g = np.random.default_rng(3)
    qe = g.standard_normal((40, 16)).astype(np.float32)
    ce = g.standard_normal((300, 16)).astype(np.float32)
    ce[150] = ce[20]  # exact duplicates: equal scores, tie by id
    ids = [f"d{i}" for i in range(300)]
    idx, sc = topk(torch.from_numpy(qe), ce, 10, doc_ids=ids)
    assert sc.dtype == np.float32 and idx.dtype == np.int64 and idx.shape == (40, 10)
    full = torch.from_numpy(qe) @ torch.from_numpy(ce).T
    for r in range(40):
        assert idx[r].tolist() == reference_ranking(full[r].numpy(), ids)[:10]


def test_tie_break_by_hand_and_negative_control():
    scores = np.array([[0.5, 0.9, 0.5, 0.1]])
    idx, _ = rank_scores(scores, ["a", "b", "c", "d"])
    assert idx[0].tolist() == [1, 2, 0, 3]  # b, then c before a (id descending)
    idx, _ = rank_scores(scores, None)
    assert idx[0].tolist() == [1, 0, 2, 3]  # no ids: lower index first
    # the cut falls inside the tie: k=2 must keep c (larger id), not a
    idx, _ = rank_scores(scores, ["a", "b", "c", "d"], k=2)
    assert idx[0].tolist() == [1, 2]
    idx, _ = rank_scores(scores, ["z", "b", "c", "d"], k=2)
    assert idx[0].tolist() == [1, 0]


def test_keys_follow_string_order():
    assert tie_keys(["10", "9", "100"], 3).tolist() == [0, 2, 1]


def test_bad_input():
    e = np.eye(3, dtype=np.float32)
    with pytest.raises(EmbtuneError, match="k must be a positive integer"):
        topk(e, e, 0)
    with pytest.raises(EmbtuneError, match="dimension"):
        topk(e, np.eye(4), 1)
    with pytest.raises(EmbtuneError, match="duplicate document id 'a'"):
        topk(e, e, 1, doc_ids=["a", "b", "a"])
    with pytest.raises(EmbtuneError, match="empty"):
        topk(e, np.zeros((0, 3)), 1)
    idx, _ = topk(e, e, 10)  # clamped to the corpus
    assert idx.shape == (3, 3) and idx[:, 0].tolist() == [0, 1, 2]


def test_float32_sort_key_orders_like_lexsort():
    from embtune.search.topk import _order

    vals = np.array([[0.5, -0.0, 0.0, -1.5, 0.5, np.float32(1e-30), -np.float32(1e-30), 2.0]], dtype=np.float32)
    keys = np.array([[3, 1, 7, 0, 9, 2, 5, 4]], dtype=np.int64)
    want = np.lexsort((-keys, -vals), axis=-1)
    assert _order(vals, keys).tolist() == want.tolist() == [[7, 4, 0, 5, 2, 1, 6, 3]]
    assert _order(vals.astype(np.float64), keys).tolist() == want.tolist()


@pytest.mark.parametrize("ids", [None, "ids"])
def test_blocked_search_equals_one_block_float32(ids):
    g = np.random.default_rng(3)
    qe = g.normal(size=(40, 8)).astype(np.float32)
    ce = np.round(g.normal(size=(300, 8)), 1).astype(np.float32)  # rounded: equal scores occur
    ce[150:] = ce[:150]  # every document twice: ties between the first and the second half
    doc_ids = [f"d{x}" for x in g.permutation(300)] if ids else None
    one = topk(qe, ce, 25, doc_ids=doc_ids, corpus_block=300)
    for block in (7, 64, 150):
        got = topk(qe, ce, 25, doc_ids=doc_ids, chunk_size=9, corpus_block=block)
        np.testing.assert_array_equal(got[0], one[0])
        np.testing.assert_allclose(got[1], one[1], rtol=1e-6)  # a GEMM of another shape may round differently
    # negative control: concatenating the blocks' top k without the merge is not the answer
    per_block = np.concatenate([topk(qe, ce[j:j + 64], 25)[0][:, :5] + j for j in range(0, 300, 64)], 1)
    assert not np.array_equal(per_block[:, :25], one[0])


def test_bad_tile_sizes_are_clear_errors():
    qe, ce = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)
    for kw in ({"chunk_size": 0}, {"corpus_block": -1}, {"corpus_block": 2.5}):
        with pytest.raises(EmbtuneError, match=f"{next(iter(kw))} must be a positive integer"):
            topk(qe, ce, 2, **kw)
