from __future__ import annotations

import gzip
import logging

import pytest

from embtune.data import read_train_file
from embtune.errors import EmbtuneError


def write(tmp_path, name, content, mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def test_txt_skips_and_counts_blank_lines(tmp_path, caplog):
    p = write(tmp_path, "s.txt", "first\n\n  \nsecond\nthird\n")
    with caplog.at_level(logging.WARNING):
        d = read_train_file(p)
    assert d.columns == ("text",)
    assert [e[0] for e in d.examples] == ["first", "second", "third"]
    assert d.skipped_blank == 2
    assert "skipped 2 blank line" in caplog.text


def test_csv_triples_with_header_and_quotes(tmp_path):
    p = write(tmp_path, "n.csv", 'sent0,sent1,hard_neg\n"a, b",c,d\ne,f,g\n')
    d = read_train_file(p)
    assert d.columns == ("sent0", "sent1", "hard_neg")
    assert d.examples == [("a, b", "c", "d"), ("e", "f", "g")]


def test_tsv_pairs_without_header(tmp_path):
    p = write(tmp_path, "n.tsv", 'he said "hi"\thello\nx\ty\n')
    d = read_train_file(p)
    assert d.columns == ("sent0", "sent1")
    assert d.examples[0] == ('he said "hi"', "hello")


def test_csv_wrong_column_count_names_file_and_line(tmp_path):
    p = write(tmp_path, "bad.csv", "sent0,sent1,hard_neg\na,b,c\nd,e\n")
    with pytest.raises(EmbtuneError, match=r"bad\.csv:3: expected 3 columns .* found 2"):
        read_train_file(p)


def test_csv_single_column_is_rejected(tmp_path):
    p = write(tmp_path, "one.csv", "just one\n")
    with pytest.raises(EmbtuneError, match=r"one\.csv:1: expected 2 columns"):
        read_train_file(p)


def test_empty_file(tmp_path):
    p = write(tmp_path, "e.txt", "\n\n")
    with pytest.raises(EmbtuneError, match=r"e\.txt: no training examples"):
        read_train_file(p)


def test_non_utf8_names_line(tmp_path):
    p = write(tmp_path, "latin.txt", "ok line\nsecond\ncaf\xe9\n".encode("latin-1"), mode="wb")
    with pytest.raises(EmbtuneError, match=r"latin\.txt:3: byte 0xe9 at column 4 is not valid UTF-8"):
        read_train_file(p)


def test_jsonl_fields_and_errors(tmp_path):
    good = write(tmp_path, "g.jsonl", '{"sent0": "a", "sent1": "b", "hard_neg": "c"}\n\n{"sent0": "d", "sent1": "e", "hard_neg": "f"}\n')
    d = read_train_file(good)
    assert d.columns == ("sent0", "sent1", "hard_neg") and len(d) == 2 and d.skipped_blank == 1
    bad = write(tmp_path, "b.jsonl", '{"text": "a"}\n{"text": 3}\n')
    with pytest.raises(EmbtuneError, match=r"b\.jsonl:2: field 'text'"):
        read_train_file(bad)
    broken = write(tmp_path, "c.jsonl", '{"text": "a"}\n{not json\n')
    with pytest.raises(EmbtuneError, match=r"c\.jsonl:2: invalid JSON"):
        read_train_file(broken)


def test_gzip_and_unsupported_suffix(tmp_path):
    p = tmp_path / "s.txt.gz"
    p.write_bytes(gzip.compress(b"one\ntwo\n"))
    assert len(read_train_file(p)) == 2
    with pytest.raises(EmbtuneError, match="unsupported training file type"):
        read_train_file(write(tmp_path, "s.parquet", "x"))


def test_missing_file(tmp_path):
    with pytest.raises(EmbtuneError, match="no such dataset or file"):
        read_train_file(tmp_path / "nope.txt")


def test_named_bundled_datasets():
    wiki = read_train_file("wiki-sample")
    assert len(wiki) == 11914 and wiki.columns == ("text",)
    snli = read_train_file("snli-triples")
    assert len(snli) == 5883 and snli.columns == ("sent0", "sent1", "hard_neg")
