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

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embtune.data.readers import CLASS_COLUMNS, read_labelled_file
from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)


@dataclass
class ClassData:
    path: str
    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def read_class_file(path: str | Path) -> ClassData:
    """Read (text, label) rows with the training files' reader (header optional here)."""
    data = read_labelled_file(path, CLASS_COLUMNS)
    return ClassData(data.path, [e[0] for e in data.examples], list(data.labels))


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
