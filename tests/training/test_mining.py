"""Hard-negative mining on hand-made embeddings: window, margin, known positives; bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embtune.cli import main
from embtune.data import read_train_file
from embtune.errors import EmbtuneError
from embtune.training.mining import mine


class FixedEncoder:
    """Each text's embedding is given by hand (a unit vector at an angle): cos(q, d) = cos(angle difference)."""

    def __init__(self, angles: dict[str, float]):
        self.angles = angles

    def encode(self, texts, batch_size=64, normalize=False, show_progress=False):
        return np.array([[math.cos(self.angles[t]), math.sin(self.angles[t])] for t in texts], dtype=np.float32)


# The query sits at angle 0; corpus texts at growing angles rank in that order (cos falls with the angle).
ANGLES = {"q": 0.0, "near1": 0.05, "near2": 0.10, "pos": 0.30, "fn": 0.28, "d1": 0.50, "d2": 0.60, "d3": 0.70,
          "d4": 0.80, "other_pos": 0.55, "q2": 2.0, "pos2": 2.1}
CORPUS = ["near1", "near2", "fn", "pos", "d1", "other_pos", "d2", "d3", "d4", "q2", "pos2", "q"]
# ranking of the corpus for "q" (1-based): q, near1, near2, fn, pos, d1, other_pos, d2, d3, d4, ...


def pairs_file(tmp_path, rows):
    p = tmp_path / "pairs.csv"
    p.write_text("sent0,sent1\n" + "".join(f"{a},{b}\n" for a, b in rows), encoding="utf-8")
    return p


def run(tmp_path, rows, **kw):
    return mine(FixedEncoder(ANGLES), pairs_file(tmp_path, rows), list(CORPUS), **kw)


def test_window_margin_and_known_positives(tmp_path):
    # window ranks 2..10 (range_min 1 skips the query's own text at rank 1)
    rows, report = run(tmp_path, [("q", "pos"), ("q", "other_pos")], range_min=1, range_max=10, num_negatives=3,
                       margin=0.0)
    by_pos = {p: [n for _, pp, n in rows if pp == p] for p in ("pos", "other_pos")}
    # for "pos" (cos 0.955): near1, near2 and fn (cos 0.961) score above it -> likely false negatives, dropped;
    # "pos" itself and "other_pos" (another positive of q) are never negatives
    assert by_pos["pos"] == ["d1", "d2", "d3"]
    # for "other_pos" (angle 0.55) the margin line is lower: d1 (0.50) is above it, d2.. below
    assert by_pos["other_pos"] == ["d2", "d3", "d4"]
    assert all(n not in ("pos", "other_pos", "q") for _, _, n in rows)
    assert report.dropped_margin == 3 + 4  # (near1, near2, fn) and (near1, near2, fn, d1)


def test_margin_widens_the_drop(tmp_path):
    # the line is cos(q, pos) - margin = 0.955 - margin: d1 (cos 0.878) is kept under margin 0.02 (line 0.935)
    # and dropped under margin 0.08 (line 0.875), the next candidate (other_pos, cos 0.853) taken instead
    rows, _ = run(tmp_path, [("q", "pos")], range_min=1, range_max=10, num_negatives=1, margin=0.02)
    assert rows == [("q", "pos", "d1")]
    rows, _ = run(tmp_path, [("q", "pos")], range_min=1, range_max=10, num_negatives=1, margin=0.08)
    assert rows == [("q", "pos", "other_pos")]
    # negative control: without a margin filter (a margin so negative that nothing is above the line) the
    # texts ranked above the positive, likely false negatives, are taken first
    rows, _ = run(tmp_path, [("q", "pos")], range_min=1, range_max=10, num_negatives=1, margin=-2.0)
    assert rows == [("q", "pos", "near1")]


def test_python_entry_point(tmp_path):
    import embtune

    rows, report = embtune.mine(FixedEncoder(ANGLES), pairs_file(tmp_path, [("q", "pos")]), list(CORPUS),
                                range_min=1, range_max=10, margin=0.0)
    assert rows == [("q", "pos", "d1")] and report.triples == 1 and report.dropped_margin == 3


def test_rank_window_is_kept(tmp_path):
    # ranks 7..9 only: other_pos (7, not a positive of q here), d2 (8), d3 (9); d1 (6) and d4 (10) are outside
    rows, _ = run(tmp_path, [("q", "pos")], range_min=6, range_max=9, num_negatives=5, margin=0.0)
    assert [n for _, _, n in rows] == ["other_pos", "d2", "d3"]


def test_writes_a_triples_file_sup_simcse_reads(tmp_path):
    out = tmp_path / "mined" / "triples.csv"
    run(tmp_path, [("q", "pos"), ("q2", "pos2")], range_min=1, range_max=12, num_negatives=2, margin=0.0,
        output=out)
    data = read_train_file(out)
    assert data.columns == ("sent0", "sent1", "hard_neg") and len(data) == 4
    assert ("q2", "pos2") == data.examples[2][:2]


@pytest.mark.parametrize("kw,message", [
    (dict(range_min=-1), "--range-min -1: expected >= 0"),
    (dict(range_min=5, range_max=5), "--range-max 5: expected > --range-min 5"),
    (dict(num_negatives=0), "--num-negatives 0: expected >= 1"),
    (dict(margin=float("nan")), "--margin nan"),
    (dict(range_min=12, range_max=20), "has 12 texts, so the window"),
    (dict(output="t.tsv"), "expected a .csv or .jsonl"),
])
def test_bad_settings(tmp_path, kw, message):
    with pytest.raises(EmbtuneError, match=message):
        run(tmp_path, [("q", "pos")], **kw)


def test_positive_missing_from_the_corpus_names_the_line(tmp_path):
    with pytest.raises(EmbtuneError, match=r"pairs\.csv:3: the positive 'unknown' is not a text of the corpus \(1 of 2"):
        run(tmp_path, [("q", "pos"), ("q2", "unknown")])


def test_empty_corpus_and_nothing_mined(tmp_path):
    empty = tmp_path / "c.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match="c.txt"):
        mine(FixedEncoder(ANGLES), pairs_file(tmp_path, [("q", "pos")]), empty)
    with pytest.raises(EmbtuneError, match="no negatives mined"):
        run(tmp_path, [("q", "pos")], range_min=1, range_max=4, margin=0.0)  # only near1, near2, fn: all above


def test_cli_mine_on_the_tiny_model(tiny_bert, tmp_path, capsys):
    from tests.conftest import SENTENCES

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    pairs = pairs_file(tmp_path, [(SENTENCES[0], SENTENCES[1]), (SENTENCES[2], SENTENCES[10])])
    out = tmp_path / "triples.csv"
    assert main(["mine", str(tiny_bert), "--pairs", str(pairs), "--corpus", str(corpus), "--output", str(out),
                 "--range-min", "1", "--range-max", "12", "--num-negatives", "2", "--margin", "-2"]) == 0
    data = read_train_file(out)
    assert len(data) == 4 and all(n not in (q, p) for q, p, n in data.examples)
    assert "4 triples from 2 pairs" in capsys.readouterr().out
    assert main(["mine", str(tiny_bert), "--pairs", str(pairs), "--corpus", str(corpus), "--output", str(out),
                 "--range-max", "0"]) == 2
    assert "--range-max 0" in capsys.readouterr().err


def test_neighbour_rows_by_hand(tmp_path):
    """Each row is a text and its nearest other texts by angle; the text itself is never its neighbour;
    repeated texts count once; max_rows keeps the first texts in SHA-1 order, neighbours from the whole corpus."""
    import hashlib

    from embtune.training.mining import neighbour_rows

    angles = {"a": 0.0, "b": 0.1, "c": 0.25, "d": 1.0, "e": 1.05, "f": 2.0}
    corpus = ["a", "b", "c", "d", "e", "f", "a"]
    rows = neighbour_rows(FixedEncoder(angles), corpus, tmp_path / "rows.csv", neighbours=2)
    got = {r[0]: r[1:] for r in rows}
    assert len(rows) == 6  # "a" twice in the corpus, one row
    assert got["a"] == ("b", "c") and got["b"] == ("a", "c") and got["d"] == ("e", "c") and got["f"] == ("e", "d")
    assert got["c"] == ("b", "a")  # negative control: not file order (which would give a, b) — by similarity
    data = read_train_file(tmp_path / "rows.csv")
    assert data.columns == ("sent0", "sent1", "hard_neg") and len(data) == 6
    first = sorted(angles, key=lambda t: hashlib.sha1(t.encode()).hexdigest())[:2]
    two = neighbour_rows(FixedEncoder(angles), corpus, neighbours=1, max_rows=2)
    assert [r[0] for r in two] == first and all(len(r) == 2 for r in two)
    with pytest.raises(EmbtuneError, match="--neighbours 3: expected 1 or 2"):
        neighbour_rows(FixedEncoder(angles), corpus, neighbours=3)


def test_cli_neighbours_mode(tiny_bert, tmp_path, capsys):
    from tests.conftest import SENTENCES

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = tmp_path / "rows.csv"
    assert main(["mine", str(tiny_bert), "--corpus", str(corpus), "--neighbours", "2", "--max-rows", "5",
                 "--output", str(out)]) == 0
    assert "5 rows" in capsys.readouterr().out and len(read_train_file(out)) == 5
    assert main(["mine", str(tiny_bert), "--corpus", str(corpus), "--output", str(out)]) == 2
    assert "--pairs" in capsys.readouterr().err
    assert main(["mine", str(tiny_bert), "--corpus", str(corpus), "--neighbours", "1", "--margin", "0.2",
                 "--output", str(out)]) == 2
    assert "--margin: options of hard-negative mining" in capsys.readouterr().err
