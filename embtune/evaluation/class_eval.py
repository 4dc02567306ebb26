"""Own-task evaluation on class-labelled texts: same-class retrieval MAP and leave-one-out 1-NN accuracy.

A class file has two columns — text, label (any string) — as ``.tsv`` / ``.csv`` (optional header
``text,label``) or ``.jsonl`` (fields ``text`` and ``label``); any of them gzipped.

- ``map`` (×100): every text whose class has another member is a query against all the other texts
  (cosine, highest first; ties in file order); relevant = the texts of its class; AP as trec_eval's
  ``map`` over the full ranking. It is the "same-class retrieval" reading of a clustering task.
- ``knn_accuracy`` (×100): the share of texts whose nearest other text (cosine) has the same label
  (leave-one-out 1-NN classification), over the same texts.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embtune.data.readers import read_text_lines
from embtune.errors import EmbtuneError, located

logger = logging.getLogger(__name__)


@dataclass
class ClassData:
    path: str
    texts: list[str]
    labels: list[str]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def read_class_file(path: str | Path) -> ClassData:
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    suffix = Path(name).suffix.lower()
    if suffix not in (".tsv", ".csv", ".jsonl"):
        raise EmbtuneError(f"{path}: unsupported class file type {suffix!r}; expected .tsv, .csv or .jsonl with text, label")
    lines = read_text_lines(path)
    rows: list[tuple[int, list]] = []
    blank = 0
    if suffix == ".jsonl":
        for i, ln in enumerate(lines, 1):
            if not ln.strip():
                blank += 1
                continue
            try:
                obj = json.loads(ln)
            except json.JSONDecodeError as e:
                raise located(path, i, f"invalid JSON ({e.msg}); expected an object with 'text' and 'label'") from e
            if not isinstance(obj, dict) or "text" not in obj or "label" not in obj:
                raise located(path, i, "expected an object with fields 'text' and 'label'")
            rows.append((i, [obj["text"], obj["label"]]))
    else:
        delim = "\t" if suffix == ".tsv" else ","
        reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delim,
                            quoting=csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL, strict=True)
        try:
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    blank += 1
                    continue
                if not rows and [c.strip().lower() for c in row] == ["text", "label"]:
                    continue
                rows.append((reader.line_num, row))
        except csv.Error as e:
            raise located(path, reader.line_num, f"malformed {suffix[1:].upper()} ({e})") from e
    texts, labels, where = [], [], []
    for i, cells in rows:
        if len(cells) != 2:
            raise located(path, i, f"expected 2 columns (text, label), found {len(cells)}")
        text, label = cells
        if not isinstance(text, str) or not text.strip():
            raise located(path, i, "text is empty or not a string; expected a sentence")
        if label is None or not str(label).strip():
            raise located(path, i, "label is empty; expected a class label")
        texts.append(text.strip())
        labels.append(str(label).strip())
        where.append(i)
    if not texts:
        raise EmbtuneError(f"{path}: no labelled texts (the file is empty or holds only blank lines)")
    if blank:
        logger.warning("%s: skipped %d blank line(s)", path, blank)
    return ClassData(str(path), texts, labels, where)


def class_metrics(emb: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Same-class retrieval MAP and leave-one-out 1-NN accuracy (×100) over the texts whose class has
    another member (formulas in the module docstring)."""
    y = np.asarray(labels)
    counts = Counter(labels)
    queries = np.array([i for i, lab in enumerate(labels) if counts[lab] >= 2])
    e = emb.astype(np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True).clip(min=1e-12)
    sims = e[queries] @ e.T
    sims[np.arange(len(queries)), queries] = -np.inf  # a text is not its own neighbour
    order = np.argsort(-sims, axis=1, kind="stable")[:, :-1]  # drop the query itself (last)
    rel = y[order] == y[queries][:, None]
    hits = np.cumsum(rel, axis=1)
    ranks = np.arange(1, rel.shape[1] + 1)
    ap = (rel * hits / ranks).sum(1) / rel.sum(1)
    knn = rel[:, 0]
    return {"map": 100 * float(ap.mean()), "knn_accuracy": 100 * float(knn.mean())}


class ClassEval:
    kind = "classes"
    metrics = {"map": True, "knn_accuracy": True}
    primary = "map"

    def __init__(self, data: ClassData):
        counts = Counter(data.labels)
        if not any(c >= 2 for c in counts.values()):
            raise EmbtuneError(f"{data.path}: no class has two members ({len(counts)} classes, one text each); "
                               "same-class retrieval needs at least one class with two texts")
        single = sum(1 for c in counts.values() if c == 1)
        if single:
            logger.warning("%s: %d class(es) with a single text: those texts are candidates, never queries", data.path, single)
        self.data = data

    @classmethod
    def from_file(cls, path: str | Path) -> "ClassEval":
        return cls(read_class_file(path))

    def evaluate(self, encoder, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
        uniq = list(dict.fromkeys(self.data.texts))
        emb = encoder.encode(uniq, batch_size=batch_size, precision=precision)
        row = {t: i for i, t in enumerate(uniq)}
        return class_metrics(emb[[row[t] for t in self.data.texts]], self.data.labels)
