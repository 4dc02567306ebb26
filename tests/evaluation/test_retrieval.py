from __future__ import annotations

import json
import math

import numpy as np
import pytest

from embtune.errors import EmbtuneError
from embtune.search import topk
from embtune.evaluation.retrieval import (RetrievalTask, evaluate_retrieval, load_beir, query_metrics, rank,
                                          stsb_retrieval_task)


def test_ties_are_broken_by_doc_id_descending():
    assert rank(np.array([0.5, 0.9, 0.5, 0.1]), ["a", "b", "c", "d"]) == ["b", "c", "a", "d"]


def test_three_queries_by_hand():
    # q1: relevant d2 (rank 2) and d4 (rank 4), binary
    m1 = query_metrics(["d1", "d2", "d3", "d4", "d5"], {"d2": 1, "d4": 1})
    assert m1["recall@1"] == 0 and m1["recall@5"] == 1.0
    assert m1["mrr@10"] == 0.5
    assert m1["map"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert m1["ndcg@10"] == pytest.approx(dcg / idcg)
    # q2: graded relevance, d3 (2) at rank 1, d1 (1) at rank 3
    m2 = query_metrics(["d3", "d2", "d1"], {"d1": 1, "d3": 2})
    assert m2["recall@1"] == 0.5 and m2["mrr@10"] == 1.0
    assert m2["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m2["ndcg@10"] == pytest.approx((2 + 1 / math.log2(4)) / (2 + 1 / math.log2(3)))
    # q3: the relevant document is past rank 10 and never retrieved in the top 10
    ranking = [f"x{i}" for i in range(12)] + ["r"]
    m3 = query_metrics(ranking, {"r": 1})
    assert m3["recall@10"] == 0 and m3["mrr@10"] == 0 and m3["ndcg@10"] == 0
    assert m3["map"] == pytest.approx(1 / 13)


class Fixed:
    """A fake encoder with fixed 2-d vectors per text."""

    def __init__(self, table):
        self.table = table

    def encode(self, texts, batch_size=64, normalize=False, precision="fp32"):
        v = np.array([self.table[t] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True) if normalize else v


def test_end_to_end_with_a_query_without_relevant_docs():
    task = RetrievalTask("t", {"a": "A", "b": "B", "c": "C"}, {"q1": "Q1", "q2": "Q2", "q3": "Q3"},
                         {"q1": {"a": 1}, "q2": {"c": 1, "b": 0}, "q3": {"b": 0}})
    enc = Fixed({"A": [1, 0], "B": [0, 1], "C": [1, 1], "Q1": [1, 0.1], "Q2": [0, 1], "Q3": [1, 1]})
    res = evaluate_retrieval(enc, task)
    assert res["queries"] == 2 and res["queries_skipped"] == 1
    # q1 -> a first (rr 1); q2 -> b, c (rr 1/2)
    assert res["metrics"]["mrr@10"] == pytest.approx(75.0)
    assert res["metrics"]["recall@1"] == pytest.approx(50.0)


def write_beir(root, qrels_lines):
    root.mkdir()
    (root / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": i, "title": "", "text": t}) for i, t in
                                                 [("a", "A"), ("b", "B")]) + "\n", encoding="utf-8")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "Q1"}) + "\n", encoding="utf-8")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels_lines) + "\n", encoding="utf-8")
    return root


def test_beir_reader_and_unknown_doc_error(tmp_path):
    task = load_beir(write_beir(tmp_path / "ok", ["q1\ta\t1"]))
    assert task.qrels == {"q1": {"a": 1}} and task.corpus == {"a": "A", "b": "B"}
    bad = write_beir(tmp_path / "bad", ["q1\ta\t1", "q1\tzzz\t1"])
    with pytest.raises(EmbtuneError, match=r"test\.tsv:3: unknown document id 'zzz'"):
        load_beir(bad)


def test_builtin_stsb_retrieval_task():
    task = stsb_retrieval_task()
    assert len(task.queries) > 100
    for qid, rels in task.qrels.items():
        assert len(rels) == 1 and next(iter(rels)) in task.corpus


def test_map_cut_at_100_and_1000_by_hand():
    ranking = [f"x{i}" for i in range(149)] + ["r"] + [f"y{i}" for i in range(1000)] + ["s"]
    m = query_metrics(ranking, {"r": 1, "s": 1, "t": 1})  # r at rank 150, s at 1151 (past the run), t never
    assert m["map@100"] == 0.0
    assert m["map@1000"] == pytest.approx((1 / 150) / 3)
    assert m["map"] == m["map@1000"]
    m = query_metrics(["r", "x", "s"], {"r": 1, "s": 1})
    assert m["map@100"] == m["map@1000"] == pytest.approx((1 + 2 / 3) / 2)


def write_beir_raw(root, corpus_lines, query_lines, qrels_text):
    root.mkdir()
    (root / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
    (root / "queries.jsonl").write_text("\n".join(query_lines) + "\n", encoding="utf-8")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text(qrels_text, encoding="utf-8")
    return root


DOCS = [json.dumps({"_id": i, "text": t}) for i, t in [("a", "A"), ("b", "B")]]
QUERIES = [json.dumps({"_id": q, "text": q.upper()}) for q in ("q1", "q2")]


def test_qrels_without_header_keeps_its_first_query(tmp_path):
    task = load_beir(write_beir_raw(tmp_path / "nohead", DOCS, QUERIES, "q1\ta\t1\nq2\tb\t1\n"))
    assert task.qrels == {"q1": {"a": 1}, "q2": {"b": 1}}


def test_qrels_first_line_with_a_non_integer_score_is_an_error_not_a_header(tmp_path):
    root = write_beir_raw(tmp_path / "badfirst", DOCS, QUERIES, "q1\ta\t1.0\nq2\tb\t1\n")
    with pytest.raises(EmbtuneError, match=r"test\.tsv:1: score '1\.0' is not an integer"):
        load_beir(root)
    # a real header is still skipped
    task = load_beir(write_beir_raw(tmp_path / "head", DOCS, QUERIES, "query-id\tcorpus-id\tscore\nq1\ta\t1\n"))
    assert task.qrels == {"q1": {"a": 1}}


def test_duplicate_ids_are_errors_with_file_and_line(tmp_path):
    dup_doc = DOCS + [json.dumps({"_id": "a", "text": "again"})]
    with pytest.raises(EmbtuneError, match=r"corpus\.jsonl:3: duplicate document id 'a' \(first on line 1\)"):
        load_beir(write_beir_raw(tmp_path / "dd", dup_doc, QUERIES, "q1\ta\t1\n"))
    dup_q = QUERIES + [json.dumps({"_id": "q2", "text": "again"})]
    with pytest.raises(EmbtuneError, match=r"queries\.jsonl:3: duplicate query id 'q2' \(first on line 2\)"):
        load_beir(write_beir_raw(tmp_path / "dq", DOCS, dup_q, "q1\ta\t1\n"))


def test_rank_equals_the_engine_on_the_builtin_task_scores():
    g = np.random.default_rng(0)
    scores = np.round(g.random(200), 2)  # many ties
    ids = [f"d{i}" for i in range(200)]
    ranking = rank(scores, ids)
    assert ranking[0] == ids[int(np.argmax(scores))] or scores[ids.index(ranking[0])] == scores.max()
    for a, b in zip(ranking, ranking[1:]):
        sa, sb = scores[ids.index(a)], scores[ids.index(b)]
        assert sa > sb or (sa == sb and a > b)


def test_metrics_equal_trec_eval_on_a_random_task_with_ties():
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) not installed")
    g = np.random.default_rng(0)
    n_docs, n_q = 1300, 25  # deeper than the 1000-document run
    docs = {f"d{i}": f"D{i}" for i in range(n_docs)}
    queries = {f"q{i}": f"Q{i}" for i in range(n_q)}
    table = {t: g.integers(1, 4, size=4).astype(float) for t in [*docs.values(), *queries.values()]}
    qrels = {q: {f"d{j}": int(g.integers(1, 3)) for j in g.choice(n_docs, size=int(g.integers(1, 6)), replace=False)}
             for q in queries}
    task = RetrievalTask("rand", docs, queries, qrels)
    ours = evaluate_retrieval(Fixed(table), task)["metrics"]
    # the same run handed to trec_eval: top 1000 by cosine, as BEIR builds it
    enc = Fixed(table)
    d = enc.encode(list(docs.values()), normalize=True)
    q = enc.encode(list(queries.values()), normalize=True)
    idx, scores = topk(q, d, 1000, doc_ids=list(docs))  # float32 scores, as trec_eval holds them (C float)
    assert sum(len(np.unique(r)) for r in scores) < 0.1 * scores.size  # ties everywhere, also across the cut
    run = {qid: {f"d{j}": float(s) for j, s in zip(idx[i], scores[i])} for i, qid in enumerate(queries)}
    te = pytrec_eval.RelevanceEvaluator(qrels, {"map", "map_cut.100", "ndcg_cut.10", "recall.1,5,10"}).evaluate(run)
    mean = lambda m: 100 * float(np.mean([te[qid][m] for qid in queries]))  # noqa: E731
    assert ours["map"] == pytest.approx(mean("map"), abs=1e-9)
    assert ours["map@100"] == pytest.approx(mean("map_cut_100"), abs=1e-9)
    assert ours["ndcg@10"] == pytest.approx(mean("ndcg_cut_10"), abs=1e-9)
    for k in (1, 5, 10):
        assert ours[f"recall@{k}"] == pytest.approx(mean(f"recall_{k}"), abs=1e-9)
    assert ours["map@100"] != ours["map"]  # the cut matters on this task
    # negative control: ranked on float64 scores, near-ties that trec_eval's float32 makes ties order otherwise
    idx64, sc64 = topk(q.astype(np.float64), d.astype(np.float64), 1000, doc_ids=list(docs))
    run64 = {qid: {f"d{j}": float(s) for j, s in zip(idx64[i], sc64[i])} for i, qid in enumerate(queries)}
    te64 = pytrec_eval.RelevanceEvaluator(qrels, {"map"}).evaluate(run64)
    ours64 = np.mean([query_metrics([f"d{j}" for j in idx64[i]], qrels[qid])["map"] for i, qid in enumerate(queries)])
    assert 100 * ours64 != pytest.approx(100 * float(np.mean([te64[qid]["map"] for qid in queries])), abs=1e-9)
