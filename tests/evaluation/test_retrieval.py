from __future__ import annotations

import json
import math

import numpy as np
import pytest

from embtune.errors import EmbtuneError
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
