"""Own-task evaluators: pair classification, scored pairs, class files — formulas by hand, bad files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embtune.errors import EmbtuneError
from embtune.evaluation.class_eval import ClassEval, class_metrics, read_class_file
from embtune.evaluation.pair_eval import (BinaryPairEval, ScoredPairEval, average_precision,
                                          best_threshold_metrics, read_pair_file)


class Vectors:
    """A fake encoder: each text's vector is given."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = table

    def encode(self, sents, batch_size=64, precision="fp32", **kw):
        return np.asarray([self.table[s] for s in sents], dtype=np.float32)


def test_average_precision_by_hand():
    # 0.9 (1): P 1, R .5 ; 0.8 (0): R unchanged ; 0.7 (1): P 2/3, R 1 -> .5·1 + .5·2/3
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(0.5 + 1 / 3)
    # tied scores are one threshold: {0.9, 0.9} holds one positive -> P .5 at R .5, then P 2/3 at R 1
    tied = average_precision(np.array([0.9, 0.9, 0.1]), np.array([1, 0, 1]))
    assert tied == pytest.approx(0.25 + 1 / 3)
    # negative control: ranking the positive first within the tie would give 1·.5 + 2/3·.5
    assert tied != pytest.approx(0.5 + 1 / 3)
    # a perfect ranking has AP 1, the reverse one less
    assert average_precision(np.array([3.0, 2, 1, 0]), np.array([1, 1, 0, 0])) == 1.0
    assert average_precision(np.array([0.0, 1, 2, 3]), np.array([1, 1, 0, 0])) < 0.6


def test_best_threshold_accuracy_and_f1_by_hand():
    m = best_threshold_metrics(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]))
    # predict 1 for the top 1: tp 1, tn 2 -> accuracy .75 (the top 3 ties it; the first is kept)
    assert m["accuracy"] == pytest.approx(75.0) and m["accuracy_threshold"] == pytest.approx(0.85)
    # F1: top 1 2/3, top 2 1/2, top 3 2·2/(3+2) = .8, all 4/6
    assert m["f1"] == pytest.approx(80.0) and m["f1_threshold"] == pytest.approx(0.65)


def test_binary_pair_task_from_file(tmp_path):
    p = tmp_path / "pairs.tsv"
    p.write_text("sent0\tsent1\tlabel\na\tb\t1\na\tc\t0\nd\te\t1\n\nd\tf\t0\n", encoding="utf-8")
    enc = Vectors({"a": [1, 0], "b": [1, 0.1], "c": [0, 1], "d": [1, 1], "e": [1, 0.9], "f": [1, -1]})
    m = BinaryPairEval.from_file(p).evaluate(enc)
    assert m["ap"] == pytest.approx(100.0) and m["accuracy"] == pytest.approx(100.0) and m["f1"] == pytest.approx(100.0)
    # swapping the labels' meaning (negative control) makes AP poor
    q = tmp_path / "swapped.tsv"
    q.write_text("a\tb\t0\na\tc\t1\nd\te\t0\nd\tf\t1\n", encoding="utf-8")
    assert BinaryPairEval.from_file(q).evaluate(enc)["ap"] < 60


def test_scored_pair_task(tmp_path):
    p = tmp_path / "pairs.csv"
    p.write_text("a,b,5\na,c,0.5\nd,f,0\n", encoding="utf-8")
    enc = Vectors({"a": [1, 0], "b": [1, 0.1], "c": [1, 1], "d": [1, 1], "f": [1, -1]})
    m = ScoredPairEval.from_file(p).evaluate(enc)
    assert m["spearman"] == pytest.approx(100.0)
    p.write_text("a,b,0\na,c,0.5\nd,f,5\n", encoding="utf-8")
    assert ScoredPairEval.from_file(p).evaluate(enc)["spearman"] == pytest.approx(-100.0)


def test_pair_file_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_text("a\tb\t1\na\tb\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"bad.tsv:2: expected 3 columns"):
        read_pair_file(p, "label")
    p.write_text("a\tb\t1\nc\td\t0\ne\tf\t2\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"bad.tsv:3: label '2' is not 0 or 1"):
        BinaryPairEval.from_file(p)
    p.write_text("a\tb\tyes\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"bad.tsv:1: label 'yes' is not 0 or 1"):
        BinaryPairEval.from_file(p)
    p.write_text("a\tb\t1\nc\td\t1\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match="needs both 0 and 1"):
        BinaryPairEval.from_file(p)
    p.write_text("a\t\t1\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"bad.tsv:1: column 'sent1' is empty"):
        read_pair_file(p)
    with pytest.raises(EmbtuneError, match="unsupported file type"):
        read_pair_file(tmp_path / "x.txt")


def test_class_metrics_by_hand():
    emb = np.array([[1, 0], [0.8, 0.6], [0, 1], [0.6, 0.8]])
    m = class_metrics(emb, ["A", "A", "B", "B"])
    # a1: a2 .8, b2 .6, b1 0 -> AP 1, 1-NN right; a2: b2 .96, a1 .8 -> AP .5, wrong; b1 like a1, b2 like a2
    assert m["map"] == pytest.approx(75.0) and m["knn_accuracy"] == pytest.approx(50.0)
    # negative control: labels that follow the geometry score perfectly
    assert class_metrics(emb, ["A", "B", "A", "B"])["map"] < 75.0
    assert class_metrics(emb, ["A", "A", "A", "A"])["map"] == pytest.approx(100.0)


def test_class_file_reading_and_errors(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text("text\tlabel\nx\tA\ny\tA\nz\tB\n", encoding="utf-8")
    d = read_class_file(p)
    assert d.texts == ["x", "y", "z"] and d.labels == ["A", "A", "B"]
    ClassEval(d)  # B has one member: a candidate, never a query
    p.write_text("x\tA\ny\tB\nz\tC\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match="no class has two members"):
        ClassEval.from_file(p)
    p.write_text("x\tA\ny\tB\tC\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"c.tsv:2: expected 2 columns"):
        read_class_file(p)
    p.write_text("x\tA\ny\t \n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"c.tsv:2: field 'label' is missing or empty"):
        read_class_file(p)
