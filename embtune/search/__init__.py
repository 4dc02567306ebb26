"""Search with embeddings: one exact top-k engine (used by retrieval evaluation, hard-negative mining
and ``embtune search``/``serve``), corpus readers and an :class:`Index`.

Engine::

    from embtune.search import topk
    indices, scores = topk(query_emb, corpus_emb, k, doc_ids=None, chunk_size=None, corpus_block=None)

- ``query_emb`` [q, d], ``corpus_emb`` [n, d]: numpy arrays or torch tensors; the score is the inner
  product (normalise for cosine). float64 if either input is float64, else float32.
- returns ``indices`` int64 [q, min(k, n)] (rows of ``corpus_emb``) and ``scores`` [q, min(k, n)], each
  row ordered by score descending, ties by document id descending (trec_eval's order) when
  ``doc_ids`` is given, else by the lower index.
- memory: one tile of ``chunk_size`` queries × ``corpus_block`` documents' scores at a time (defaults:
  blocks of max(4096, 64 k) documents, up to 1024 queries, within 2**25 scores = 128 MiB in float32),
  plus the q × k result; each chunk keeps a running top k across the blocks. ``k <= 0``, an empty corpus
  or a dimension mismatch raise EmbtuneError.

``rank_scores(scores, doc_ids, k)`` applies the same selection to a precomputed score matrix.

Index (:mod:`embtune.search.index`): ``Index.build(model, corpus, ids)``, ``search(queries, k)``,
``add(texts, ids)``, ``save(dir)`` / ``Index.load(dir)``; optional int8/binary codes with float
rescoring (:mod:`embtune.search.quantize`) and faiss backends (:mod:`embtune.search.faiss_backend`).
"""

from embtune.search.index import Index
from embtune.search.topk import rank_scores, topk

__all__ = ["topk", "rank_scores", "Index"]
