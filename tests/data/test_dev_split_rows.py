"""write_rows: the rows a split writes read back as the same texts (the adapt stages train on these files)."""

from __future__ import annotations

import logging

from embtune.data.dev_split import write_rows
from embtune.data.readers import TrainData, read_train_file


def test_quotes_and_backslashes_read_back_unchanged(tmp_path):
    ex = [('Are there "All" and "Any" functions?', r"$H_{\infty}$ optimization"),
          ("a 'single' quote", 'ends with a backslash \\'), ('"quoted whole"', "plain")]
    path = tmp_path / "rows.tsv"
    write_rows(TrainData(str(path), ("sent0", "sent1"), ex), path)
    back = read_train_file(path)
    assert back.columns == ("sent0", "sent1")
    assert [tuple(e) for e in back.examples] == ex


def test_scores_and_a_tab_inside_a_text(tmp_path, caplog):
    path = tmp_path / "scored.tsv"
    data = TrainData(str(path), ("sent0", "sent1", "score"), [("a\tb", "c"), ("d", "e\nf")], labels=[0.5, 4.0])
    with caplog.at_level(logging.WARNING):
        write_rows(data, path)
    back = read_train_file(path)
    assert [tuple(e) for e in back.examples] == [("a b", "c"), ("d", "e f")]
    assert back.labels == [0.5, 4.0]
    assert "2 text(s) held a tab or line break" in caplog.text
