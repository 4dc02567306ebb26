"""`embtune index` and `embtune search` end to end on the tiny model, and their bad input."""

from __future__ import annotations

import json

import pytest

from embtune.cli import main
from tests.conftest import SENTENCES, build_tiny_bert


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.jsonl"
    p.write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": s}) + "\n" for i, s in enumerate(SENTENCES)),
                 encoding="utf-8")
    return p


@pytest.fixture
def index_dir(tiny_st, corpus, tmp_path):
    out = tmp_path / "ix"
    assert main(["index", str(tiny_st), "--corpus", str(corpus), "--output", str(out)]) == 0
    return out


def test_index_then_search_one_query(index_dir, capsys):
    capsys.readouterr()
    assert main(["search", str(index_dir), SENTENCES[2], "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    rank, score, doc, text = lines[0].split(None, 3)
    assert (rank, doc, text) == ("1", "d2", SENTENCES[2]) and float(score) == pytest.approx(1.0, abs=1e-4)
    scores = [float(ln.split()[1]) for ln in lines]
    assert scores == sorted(scores, reverse=True)


def test_index_with_a_faiss_hnsw_index(tiny_st, corpus, tmp_path, capsys):
    pytest.importorskip("faiss", reason="faiss not installed (pip install 'embtune[faiss]')")
    out = tmp_path / "hnsw"
    assert main(["index", str(tiny_st), "--corpus", str(corpus), "--output", str(out), "--ann", "hnsw"]) == 0
    assert "faiss hnsw index" in capsys.readouterr().out and (out / "ann.faiss").is_file()
    assert main(["search", str(out), SENTENCES[5], "-k", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split(None, 3)[2] == "d5"
    assert main(["index", str(tiny_st), "--corpus", str(corpus), "--output", str(tmp_path / "x"), "--ann", "hnsw",
                 "--quantize", "int8"]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_trec_run_is_read_by_pytrec_eval(index_dir, tmp_path):
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) not installed")
    q = tmp_path / "q.jsonl"
    q.write_text("".join(json.dumps({"_id": f"q{i}", "text": SENTENCES[i]}) + "\n" for i in (0, 4, 7)), encoding="utf-8")
    run_file = tmp_path / "run.tsv"
    assert main(["search", str(index_dir), "--queries", str(q), "--output", str(run_file), "-k", "5"]) == 0
    rows = [ln.split() for ln in run_file.read_text().splitlines()]
    assert len(rows) == 15 and all(len(r) == 6 and r[1] == "Q0" and r[5] == "embtune" for r in rows)
    assert [r[3] for r in rows[:5]] == ["1", "2", "3", "4", "5"]
    run: dict = {}
    for qid, _, did, _, score, _ in rows:
        run.setdefault(qid, {})[did] = float(score)
    qrels = {"q0": {"d0": 1}, "q4": {"d4": 1}, "q7": {"d7": 1}}
    res = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)
    assert {q: r["recip_rank"] for q, r in res.items()} == {"q0": 1.0, "q4": 1.0, "q7": 1.0}


def test_k_larger_than_the_corpus_is_clamped_and_said(index_dir, capsys, caplog):
    assert main(["search", str(index_dir), "a dog", "-k", "99"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == len(SENTENCES)
    assert "--k 99 is larger than the index (12 documents)" in caplog.text


def run_err(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bad_input_is_a_clear_error(index_dir, corpus, tiny_st, tmp_path, capsys):
    assert "--k must be a positive integer, got 0" in run_err(["search", str(index_dir), "x", "-k", "0"], capsys)
    dup = tmp_path / "dup.jsonl"
    dup.write_text(json.dumps({"_id": "q", "text": "a"}) + "\n" + json.dumps({"_id": "q", "text": "b"}) + "\n")
    err = run_err(["search", str(index_dir), "--queries", str(dup)], capsys)
    assert "dup.jsonl:2: duplicate query id 'q' (first on line 1)" in err
    noid = tmp_path / "noid.jsonl"
    noid.write_text(json.dumps({"text": "a"}) + "\n")
    assert "noid.jsonl:1: document without an id" in run_err(
        ["index", str(tiny_st), "--corpus", str(noid), "--output", str(tmp_path / "x")], capsys)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert "empty.txt: no documents" in run_err(
        ["index", str(tiny_st), "--corpus", str(empty), "--output", str(tmp_path / "y")], capsys)
    cdup = tmp_path / "cdup.tsv"
    cdup.write_text("a\tone\nb\ttwo\na\tthree\n")
    assert "cdup.tsv:3: duplicate document id 'a' (first on line 1)" in run_err(
        ["index", str(tiny_st), "--corpus", str(cdup), "--output", str(tmp_path / "z")], capsys)
    other = build_tiny_bert(tmp_path / "other", seed=3)
    assert "other weights" in run_err(["search", str(index_dir), "x", "--model", str(other)], capsys)
    (index_dir / "docs.jsonl").write_text("garbage\n")
    assert "docs.jsonl: corrupt index file" in run_err(["search", str(index_dir), "x"], capsys)
    assert "either a query text or --queries" in run_err(["search", str(index_dir)], capsys)


def test_an_empty_query_file_names_the_file(index_dir, tmp_path, capsys):
    empty = tmp_path / "q.txt"
    empty.write_text("\n")
    assert "q.txt: no queries (the file is empty" in run_err(["search", str(index_dir), "--queries", str(empty)], capsys)
