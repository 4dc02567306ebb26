"""Retrieval evaluation in the BEIR layout with trec_eval's definitions.

Files: ``corpus.jsonl`` ({"_id", "title"?, "text"}), ``queries.jsonl`` ({"_id", "text"}),
``qrels/<split>.tsv`` (query-id, corpus-id, score; an optional header line). Ids must be unique.
Documents are ranked by cosine similarity with the one top-k engine (:func:`embtune.search.topk`),
keeping the top 1000 per query as BEIR does; ties are broken as trec_eval does (document id,
descending), on float32 scores — trec_eval holds a run's scores as C floats, so this is the order it
gives the same run.

Per query, then averaged over the queries that have at least one relevant document (queries
without one are skipped and counted, as trec_eval does):
- Recall@k = |relevant ∩ top k| / |relevant|
- MRR@10   = 1 / rank of the first relevant document within the top 10 (0 if none)
- MAP@c    = (sum over relevant documents d ranked within the top c of precision at d's rank) / |relevant|
             (trec_eval's ``map_cut_c``; ``map@100`` is the figure TSDAE/USEB report)
- MAP      = ``map@1000``: trec_eval's ``map`` on a run of the top 1000, as BEIR evaluates
- nDCG@10  = DCG@10 / IDCG@10 with gain = graded relevance, discount log2(rank + 1)
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embtune.data.readers import read_text_lines
from embtune.errors import EmbtuneError, located
from embtune.search.corpus import read_jsonl_ids
from embtune.search.topk import rank_scores, topk

logger = logging.getLogger(__name__)


@dataclass
class RetrievalTask:
    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


#: documents kept per query, as BEIR does (trec_eval then sees a run of this depth)
TOP_K = 1000


def rank(scores: np.ndarray, doc_ids: Sequence[str]) -> list[str]:
    """Order documents by score descending, ties by document id descending (trec_eval)."""
    idx, _ = rank_scores(np.asarray(scores)[None, :], doc_ids)
    return [doc_ids[i] for i in idx[0]]


def query_metrics(ranking: Sequence[str], rels: Mapping[str, int], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    relevant = {d for d, r in rels.items() if r > 0}
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = len(relevant & set(ranking[:k])) / len(relevant)
    rr = 0.0
    for i, d in enumerate(ranking[:10], 1):
        if d in relevant:
            rr = 1.0 / i
            break
    out["mrr@10"] = rr
    hits, ap, ap100 = 0, 0.0, 0.0
    for i, d in enumerate(ranking[:TOP_K], 1):
        if d in relevant:
            hits += 1
            ap += hits / i
            if i <= 100:
                ap100 += hits / i
    out["map@100"] = ap100 / len(relevant)
    out["map@1000"] = ap / len(relevant)
    out["map"] = out["map@1000"]
    dcg = sum(rels.get(d, 0) / math.log2(i + 1) for i, d in enumerate(ranking[:10], 1) if rels.get(d, 0) > 0)
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:10]
    idcg = sum(r / math.log2(i + 1) for i, r in enumerate(ideal, 1))
    out["ndcg@10"] = dcg / idcg
    return out


def evaluate_retrieval(encoder, task: RetrievalTask, batch_size: int = 64, precision: str = "fp32",
                       per_query: bool = False) -> dict:
    """The metrics ×100 averaged over the queries with a relevant document; ``per_query``: also each query's
    metrics ×100 (``"per_query": {metric: array}``, queries in the task's order), for paired comparisons."""
    doc_ids = list(task.corpus)
    q_ids = [q for q in task.queries if any(r > 0 for r in task.qrels.get(q, {}).values())]
    skipped = len(task.queries) - len(q_ids)
    if skipped:
        logger.warning("%s: %d quer(ies) without a relevant document skipped", task.name, skipped)
    if not q_ids:
        raise EmbtuneError(f"{task.name}: no query has a relevant document")
    d = encoder.encode([task.corpus[i] for i in doc_ids], batch_size=batch_size, normalize=True, precision=precision)
    q = encoder.encode([task.queries[i] for i in q_ids], batch_size=batch_size, normalize=True, precision=precision)
    t0 = time.perf_counter()
    idx, _ = topk(q.astype(np.float32), d.astype(np.float32), TOP_K, doc_ids=doc_ids)
    per = [query_metrics([doc_ids[j] for j in idx[i]], task.qrels[qid]) for i, qid in enumerate(q_ids)]
    logger.info("%s: ranked %d documents for %d queries in %.2f s", task.name, len(doc_ids), len(q_ids),
                time.perf_counter() - t0)
    metrics = {k: 100 * float(np.mean([p[k] for p in per])) for k in per[0]}
    out = {"metrics": metrics, "queries": len(q_ids), "queries_skipped": skipped, "corpus": len(doc_ids)}
    if per_query:
        out["per_query"] = {k: 100 * np.array([p[k] for p in per]) for k in per[0]}
    return out


def load_beir(folder: str | Path, split: str = "test") -> RetrievalTask:
    folder = Path(folder)
    corpus = read_jsonl_ids(folder / "corpus.jsonl", "document", id_keys=("_id",))
    queries = read_jsonl_ids(folder / "queries.jsonl", "query", id_keys=("_id",))
    qpath = folder / "qrels" / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    for i, ln in enumerate(read_text_lines(qpath), 1):
        cells = ln.split("\t")
        if not ln.strip():
            continue
        if i == 1 and _is_qrels_header(cells):
            continue
        if len(cells) != 3:
            raise located(qpath, i, f"expected 3 tab-separated columns (query-id, corpus-id, score), found {len(cells)}")
        qid, did, score = cells[0], cells[1], cells[2].strip()
        if qid not in queries:
            raise located(qpath, i, f"unknown query id {qid!r} (not in queries.jsonl)")
        if did not in corpus:
            raise located(qpath, i, f"unknown document id {did!r} (not in corpus.jsonl)")
        try:
            qrels.setdefault(qid, {})[did] = int(score)
        except ValueError as e:
            raise located(qpath, i, f"score {score!r} is not an integer") from e
    queries = {q: t for q, t in queries.items() if q in qrels}  # BEIR evaluates the queries of the split
    return RetrievalTask(folder.name, corpus, queries, qrels)


def _is_qrels_header(cells: list[str]) -> bool:
    """Line 1 is a header only if it reads like one (BEIR writes ``query-id corpus-id score``); any other
    line 1 is data, so a malformed one is an error rather than a silently dropped query."""
    words = [c.strip().lower().replace("_", "-") for c in cells]
    return bool(words) and (words[0] in ("query-id", "qid", "query", "queryid")
                            or words[-1] in ("score", "relevance", "label", "rel"))


def stsb_retrieval_task(threshold: float = 4.0) -> RetrievalTask:
    """Built-in task: for every STS-B test pair with gold score >= 4, retrieve its sentence2 among all
    distinct sentence2s of STS-B test (raw text)."""
    from embtune.evaluation.sts import load_sts

    d = load_sts("stsb", "test", text="raw")
    docs = list(dict.fromkeys(d.sent2))
    doc_id = {s: f"d{i}" for i, s in enumerate(docs)}
    queries, qrels = {}, {}
    for s1, s2, score in zip(d.sent1, d.sent2, d.scores):
        if score >= threshold:
            qid = f"q{len(queries)}"
            queries[qid] = s1
            qrels[qid] = {doc_id[s2]: 1}
    return RetrievalTask("stsb-retrieval", {v: k for k, v in doc_id.items()}, queries, qrels)
