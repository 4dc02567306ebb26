"""Labelled training files: scored pairs, binary pairs, class-labelled texts; their bad inputs."""

from __future__ import annotations

import pytest

from embtune.data import read_train_file
from embtune.errors import EmbtuneError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_scored_pairs_csv_with_header_aliases_and_any_order(tmp_path):
    d = read_train_file(write(tmp_path, "s.csv", "sentence1,sentence2,score\na,b,4.5\nc,d,0\n"))
    assert d.columns == ("sent0", "sent1", "score") and d.text_columns == ("sent0", "sent1")
    assert d.examples == [("a", "b"), ("c", "d")] and d.labels == [4.5, 0.0]
    d = read_train_file(write(tmp_path, "t.tsv", "score\tsent1\tsent2\n2.5\tx\ty\n"))
    assert d.examples == [("x", "y")] and d.labels == [2.5]


def test_binary_pairs_and_class_texts(tmp_path):
    d = read_train_file(write(tmp_path, "b.csv", "sent0,sent1,label\na,b,1\nc,d,0\ne,f,1.0\n"))
    assert d.columns == ("sent0", "sent1", "label") and d.labels == [1.0, 0.0, 1.0]
    d = read_train_file(write(tmp_path, "c.tsv", "text\tlabel\nhow do i\tq\nwhat is\tq\nbuy now\tspam\n"))
    assert d.columns == ("text", "label") and d.examples == [("how do i",), ("what is",), ("buy now",)]
    assert d.labels == ["q", "q", "spam"]
    assert any("single text" in n for n in d.notes)  # "spam" has one text: counted


def test_jsonl_labelled(tmp_path):
    d = read_train_file(write(tmp_path, "s.jsonl", '{"sent1": "a", "sent2": "b", "score": 3}\n{"sent1": "c", "sent2": "d", "score": "1.5"}\n'))
    assert d.columns == ("sent0", "sent1", "score") and d.labels == [3.0, 1.5]
    d = read_train_file(write(tmp_path, "b.jsonl", '{"sent0": "a", "sent1": "b", "label": true}\n{"sent0": "c", "sent1": "d", "label": 0}\n'))
    assert d.columns == ("sent0", "sent1", "label") and d.labels == [1.0, 0.0]
    d = read_train_file(write(tmp_path, "c.jsonl", '{"text": "a", "label": 7}\n{"text": "b", "label": 7}\n'))
    assert d.columns == ("text", "label") and d.labels == ["7", "7"]


@pytest.mark.parametrize("name,text,message", [
    ("bad_score.csv", "sent0,sent1,score\na,b,1\nc,d,high\n", r"bad_score\.csv:3: score 'high' is not a number"),
    ("nan.csv", "sent0,sent1,score\na,b,nan\n", r"nan\.csv:2: score 'nan' is not a number"),
    ("bad_label.csv", "sent0,sent1,label\na,b,1\nc,d,2\n", r"bad_label\.csv:3: label '2' is not 0 or 1.*'score'"),
    ("cols.csv", "sent0,sent1,score\na,b\n", r"cols\.csv:2: expected 3 columns"),
    ("header.csv", "sent1,sent2,similarity\na,b,1\n", r"header\.csv:1: header \(sent1, sent2, similarity\) is not a known layout"),
    ("unknown.csv", "text,score\na,1\n", r"unknown\.csv:1: header \(text, score\) is not a known layout"),
    ("headerless.csv", "a,b,0.8\n", r"headerless\.csv:1: the third column '0.8' is a number.*sent0,sent1,score"),
    ("jl.jsonl", '{"sent0": "a", "sent1": "b", "label": "yes"}\n', r"jl\.jsonl:1: label 'yes' is not 0 or 1"),
    ("jl2.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', r"jl2\.jsonl:2: field 'label' is missing"),
    ("jl3.jsonl", '{"sent0": "a", "sent1": "b", "score": 1}\n{"sent0": "a", "sent1": "b", "score": null}\n',
     r"jl3\.jsonl:2: score None is not a number"),
    ("empty_label.csv", "text,label\na,x\nb,\n", r"empty_label\.csv:3: field 'label' is missing or empty"),
])
def test_bad_labelled_input_names_file_and_line(tmp_path, name, text, message):
    with pytest.raises(EmbtuneError, match=message):
        read_train_file(write(tmp_path, name, text))


def test_class_file_without_any_class_of_two(tmp_path):
    with pytest.raises(EmbtuneError, match=r"c\.csv: no class has two texts \(3 classes"):
        read_train_file(write(tmp_path, "c.csv", "text,label\na,x\nb,y\nc,z\n"))


def test_headerless_triples_and_pairs_are_unchanged(tmp_path):
    d = read_train_file(write(tmp_path, "t.csv", "a,b,c\nd,e,f\n"))
    assert d.columns == ("sent0", "sent1", "hard_neg") and d.labels is None and d.text_columns == d.columns
