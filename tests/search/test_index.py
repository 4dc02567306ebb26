from __future__ import annotations

import json

import numpy as np
import pytest

import embtune
from embtune.errors import EmbtuneError
from embtune.search import Index, topk
from tests.conftest import SENTENCES, build_tiny_bert


@pytest.fixture(scope="module")
def enc(tiny_st):
    return embtune.load(str(tiny_st))


def test_build_search_equals_the_engine_on_the_embeddings(enc):
    ids = [f"s{i}" for i in range(len(SENTENCES))]
    index = Index.build(enc, SENTENCES, ids=ids)
    got_ids, scores = index.search(SENTENCES[:3], k=4)
    q = enc.encode(SENTENCES[:3], normalize=True)
    d = enc.encode(SENTENCES, normalize=True)
    idx, want = topk(q, d, 4, doc_ids=ids)
    assert got_ids == [[ids[j] for j in row] for row in idx]
    np.testing.assert_allclose(scores, want, atol=1e-6)
    assert [r[0] for r in got_ids] == ["s0", "s1", "s2"]  # a document is its own best match
    assert embtune.Index is Index


def test_add_save_load_round_trip(enc, tmp_path, caplog):
    index = Index.build(enc, {"a": SENTENCES[0], "b": SENTENCES[1]})
    index.add(SENTENCES[2:4], ids=["c", "d"])
    with pytest.raises(EmbtuneError, match="duplicate document id 'c'"):
        index.add([SENTENCES[5]], ids=["c"])
    index.save(tmp_path / "ix")
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert meta["count"] == 4 and meta["dimension"] == enc.embedding_dim and meta["normalize"] is True
    back = Index.load(tmp_path / "ix", model=enc)
    assert back.ids == ["a", "b", "c", "d"] and back.texts == SENTENCES[:4]
    np.testing.assert_array_equal(back.embeddings, index.embeddings)
    ids, _ = back.search(SENTENCES[3], k=10)  # k larger than the index: clamped, and said so
    assert ids[0][0] == "d" and len(ids[0]) == 4
    assert "larger than the index" in caplog.text
    with pytest.raises(EmbtuneError, match="k must be a positive integer"):
        back.search("x", k=0)


def test_load_with_another_model_or_a_corrupt_file_is_an_error(enc, tmp_path):
    Index.build(enc, SENTENCES[:5]).save(tmp_path / "ix")
    other = embtune.load(str(build_tiny_bert(tmp_path / "other", seed=1)))
    with pytest.raises(EmbtuneError, match="built with model .* other weights"):
        Index.load(tmp_path / "ix", model=other)
    emb = tmp_path / "ix" / "embeddings.npy"
    emb.write_bytes(emb.read_bytes()[:-7])
    with pytest.raises(EmbtuneError, match=r"embeddings\.npy: corrupt index file"):
        Index.load(tmp_path / "ix", model=enc)
    with pytest.raises(EmbtuneError, match="not an embtune index"):
        Index.load(tmp_path, model=enc)


def test_corpus_files(enc, tmp_path):
    (tmp_path / "c.txt").write_text("first doc\n\nthird doc\n", encoding="utf-8")
    index = Index.build(enc, tmp_path / "c.txt")
    assert index.ids == ["1", "3"]  # line numbers; the blank line is skipped
    lines = [json.dumps({"_id": "x", "title": "T", "text": "one"}), json.dumps({"text": "no id"})]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"c\.jsonl:2: document without an id"):
        Index.build(enc, tmp_path / "c.jsonl")
    (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"e\.jsonl: no documents"):
        Index.build(enc, tmp_path / "e.jsonl")


def test_faiss_index_searches_saves_and_loads(enc, tmp_path):
    """ann='flat' (faiss, exact) gives the engine's ids in the engine's order; hnsw finds the document
    itself; both survive save/load (the faiss file is checksummed like the others)."""
    pytest.importorskip("faiss", reason="faiss not installed (pip install 'embtune[faiss]')")
    ids = [f"s{i}" for i in range(len(SENTENCES))]
    exact = Index.build(enc, SENTENCES, ids=ids)
    flat = Index.build(enc, SENTENCES, ids=ids, ann="flat")
    want_ids, want_sc = exact.search(SENTENCES[:4], k=5)
    got_ids, got_sc = flat.search(SENTENCES[:4], k=5)
    assert got_ids == want_ids
    np.testing.assert_allclose(got_sc, want_sc, atol=1e-5)
    hnsw = Index.build(enc, SENTENCES, ids=ids, ann="hnsw")
    hnsw.save(tmp_path / "h")
    back = Index.load(tmp_path / "h", model=enc)
    assert back.ann == "hnsw" and json.loads((tmp_path / "h" / "index.json").read_text())["ann"] == "hnsw"
    assert [r[0] for r in back.search(SENTENCES[:3], k=3)[0]] == ["s0", "s1", "s2"]
    back.add(["A completely new sentence about tea."], ids=["new"])  # the faiss index is rebuilt with it
    assert back.search("A completely new sentence about tea.", k=1)[0] == [["new"]]
    ann = tmp_path / "h" / "ann.faiss"
    ann.write_bytes(ann.read_bytes()[:-5])
    with pytest.raises(EmbtuneError, match=r"ann\.faiss: corrupt index file"):
        Index.load(tmp_path / "h", model=enc)
    with pytest.raises(EmbtuneError, match="cannot be combined"):
        Index(enc, ann="hnsw", quantize="int8")
    with pytest.raises(EmbtuneError, match="unknown ann index"):
        Index(enc, ann="annoy")


def test_blank_lines_of_id_files_are_counted(tmp_path, caplog):
    from embtune.search.corpus import read_jsonl_ids, _read_tsv_ids

    (tmp_path / "c.jsonl").write_text('{"_id": "a", "text": "x"}\n\n  \n{"_id": "b", "text": "y"}\n', encoding="utf-8")
    (tmp_path / "c.tsv").write_text("a\tx\n\nb\ty\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        assert read_jsonl_ids(tmp_path / "c.jsonl") == {"a": "x", "b": "y"}
        assert _read_tsv_ids(tmp_path / "c.tsv", "document") == {"a": "x", "b": "y"}
    assert "c.jsonl: 2 blank line(s) skipped" in caplog.text and "c.tsv: 1 blank line(s) skipped" in caplog.text
