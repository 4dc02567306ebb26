"""`embtune train --objective cosent|supcon` end to end on the tiny BERT, from the command line."""

from __future__ import annotations

import json

from embtune.cli import main
from tests.conftest import SENTENCES


def _train(tiny_bert, train_file, out, objective, *extra):
    return main(["train", "--model", str(tiny_bert), "--objective", objective, "--train-file", str(train_file),
                 "--output", str(out), "--batch-size", "8", "--max-steps", "24", "--epochs", "20", "--lr", "1e-3",
                 "--max-seq-length", "16", "--no-progress", *extra])


def test_cosent_on_scored_pairs(tiny_bert, tmp_path):
    rows = ["sentence1,sentence2,score"]
    for i in range(12):
        rows.append(f"{SENTENCES[i]},{SENTENCES[i]},5")  # a sentence and itself: most similar
        rows.append(f"{SENTENCES[i]},{SENTENCES[(i + 5) % 12]},{i % 3}")
    f = tmp_path / "pairs.csv"
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "cosent"
    assert _train(tiny_bert, f, out, "cosent", "--cosent-lambda", "20") == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 24 and sum(m["losses"][-6:]) < sum(m["losses"][:6])
    assert json.loads((out / "train_config.json").read_text())["cosent_lambda"] == 20.0


def test_supcon_on_class_texts(tiny_bert, tmp_path, capsys):
    f = tmp_path / "classes.tsv"
    f.write_text("text\tlabel\n" + "".join(f"{s}\tc{i % 3}\n" for i, s in enumerate(SENTENCES)), encoding="utf-8")
    out = tmp_path / "supcon"
    assert _train(tiny_bert, f, out, "supcon", "--samples-per-class", "2") == 0
    m = json.loads((out / "metrics.json").read_text())
    assert sum(m["losses"][-6:]) < sum(m["losses"][:6])
    # the wrong file for the objective, and a batch that cannot hold a class's group, are clear errors
    assert _train(tiny_bert, f, tmp_path / "x", "cosent") == 2
    assert "expects columns (sent0, sent1, score) or (sent0, sent1, label)" in capsys.readouterr().err
    assert _train(tiny_bert, f, tmp_path / "y", "supcon", "--samples-per-class", "9") == 2
    assert "cannot hold --samples-per-class 9" in capsys.readouterr().err
