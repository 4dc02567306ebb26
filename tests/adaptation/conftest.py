"""A small domain for ``embtune adapt``: a corpus of distinct sentences, (query, positive) pairs whose positives
are corpus texts, scored pairs, class-labelled texts and a held-out BEIR folder."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

SUBJECTS = ["a man", "a woman", "two dogs", "a child", "the cat", "an old man", "three young women", "people"]
VERBS = ["is playing the guitar", "is eating", "are running in the park", "is sitting on the car",
         "is riding a horse", "is walking down the street", "are standing in the water", "plays the piano"]


def corpus_texts() -> list[str]:
    return [f"{s} {v} ." for s, v in itertools.product(SUBJECTS, VERBS)]  # 64 distinct texts


@pytest.fixture
def domain(tmp_path) -> dict[str, Path]:
    texts = corpus_texts()
    d = tmp_path / "domain"
    d.mkdir()
    (d / "corpus.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    # a query is a rewording of a corpus text; its positive is that text
    pairs = [(t.replace(" is ", " was ").replace(" are ", " were ").replace("a ", "one ", 1), t) for t in texts[:40]]
    (d / "pairs.tsv").write_text("sent0\tsent1\n" + "".join(f"{q}\t{p}\n" for q, p in pairs), encoding="utf-8")
    scored = [(texts[i], texts[j], float((i % 8) == (j % 8)) * 4 + (i // 8 == j // 8)) for i in range(0, 40, 3)
              for j in range(1, 40, 7)]
    (d / "scored.tsv").write_text("sent0\tsent1\tscore\n" + "".join(f"{a}\t{b}\t{y}\n" for a, b, y in scored),
                                  encoding="utf-8")
    (d / "classes.tsv").write_text("text\tlabel\n" + "".join(f"{t}\tv{i % 8}\n" for i, t in enumerate(texts)),
                                   encoding="utf-8")
    beir = d / "heldout"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n"
                                               for i, t in enumerate(texts)), encoding="utf-8")
    held = [(t.replace(" is ", " was ").replace(" are ", " were "), i) for i, t in enumerate(texts) if i >= 44]
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": q}) + "\n"
                                                for i, (q, _) in enumerate(held)), encoding="utf-8")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{j}\t1\n" for i, (_, j) in enumerate(held)), encoding="utf-8")
    return {"dir": d, "corpus": d / "corpus.txt", "pairs": d / "pairs.tsv", "scored": d / "scored.tsv",
            "classes": d / "classes.tsv", "heldout": beir}
