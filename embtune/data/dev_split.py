"""``--dev-fraction f``: hold out a deterministic part of the labelled training data, by group, as a dev set.

Rows are grouped by their first text — the query of (query, positive[, negative]) pairs, sentence1 of
scored/binary pairs, the text itself of (text, label) rows — so every row of a group lands on the same
side and no query (or class-file item) is both trained on and evaluated. Groups are ordered by the
SHA-1 of their text and the first ``round(f · groups)`` (at least 1) are held out: the split depends
on the data only, not on the file order or the seed.

The held-out rows become the eval task ``dev``: (query, positive[, hard negative]) rows a retrieval task
(each held-out query against every positive and hard negative of the file, relevant = its own
positives); scored pairs Spearman; binary pairs AP/accuracy/F1; class files same-class MAP.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from embtune.data.readers import TrainData
from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)


@dataclass
class DevSplit:
    fraction: float
    train: TrainData
    held_out: TrainData
    groups: int
    groups_held_out: int

    def summary(self) -> dict:
        return {"fraction": self.fraction, "groups": self.groups, "groups_held_out": self.groups_held_out,
                "rows_train": len(self.train), "rows_held_out": len(self.held_out),
                "grouped_by": self.train.columns[0], "file": "dev_split.tsv"}


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def split_groups(keys: list[str], fraction: float) -> set[str]:
    """The group keys held out: the first round(fraction · groups) (at least 1) in SHA-1 order."""
    groups = sorted(set(keys), key=lambda k: (_digest(k), k))
    n_dev = max(1, round(fraction * len(groups)))
    if n_dev >= len(groups):
        raise EmbtuneError(f"--dev-fraction {fraction}: the training data has {len(groups)} distinct group(s) "
                           "(first texts); holding out would leave nothing to train on")
    return set(groups[:n_dev])


def hold_out(data: TrainData, fraction: float) -> DevSplit:
    if not 0 < fraction <= 0.5:
        raise EmbtuneError(f"--dev-fraction: expected a value in (0, 0.5], got {fraction!r}")
    if len(data.columns) < 2:
        raise EmbtuneError(f"--dev-fraction: {data.path} holds single sentences ({data.columns[0]}); a dev split "
                           "needs labelled data (pairs, triples, scored or binary pairs, or (text, label) rows)")
    keys = [ex[0] for ex in data.examples]
    dev_keys = split_groups(keys, fraction)
    train_i = [i for i, k in enumerate(keys) if k not in dev_keys]
    dev_i = [i for i, k in enumerate(keys) if k in dev_keys]

    def part(idx: list[int], **kw) -> TrainData:
        labels = [data.labels[i] for i in idx] if data.labels is not None else None
        return replace(data, examples=[data.examples[i] for i in idx], labels=labels, **kw)

    split = DevSplit(fraction, part(train_i), part(dev_i, skipped_blank=0), len(set(keys)), len(dev_keys))
    dev = split.held_out.examples
    logger.info("--dev-fraction %s: held out %d of %d groups (%d of %d rows, grouped by %s)", fraction,
                split.groups_held_out, split.groups, len(dev), len(data), data.columns[0])
    return split


def group_folds(data: TrainData, k: int) -> list[DevSplit]:
    """``k`` splits of the rows by group for cross-fitting: the groups in SHA-1 order (as :func:`split_groups`)
    cut into ``k`` contiguous runs of near-equal size; split ``j`` holds out run ``j`` and trains on the rest, so
    every group is held out exactly once."""
    if k < 2:
        raise EmbtuneError(f"--cross-fit: expected at least 2 folds, got {k}")
    keys = [ex[0] for ex in data.examples]
    groups = sorted(set(keys), key=lambda g: (_digest(g), g))
    if len(groups) < 2 * k:
        raise EmbtuneError(f"--cross-fit {k}: {data.path} has {len(groups)} distinct group(s) (first texts); "
                           f"{k} folds need at least {2 * k} (--cross-fit 1 holds out one --dev-fraction share instead)")
    fold_of = {g: i * k // len(groups) for i, g in enumerate(groups)}

    def part(idx: list[int], **kw) -> TrainData:
        labels = [data.labels[i] for i in idx] if data.labels is not None else None
        return replace(data, examples=[data.examples[i] for i in idx], labels=labels, **kw)

    out = []
    for j in range(k):
        held = [i for i, key in enumerate(keys) if fold_of[key] == j]
        rest = [i for i, key in enumerate(keys) if fold_of[key] != j]
        out.append(DevSplit(1 / k, part(rest), part(held, skipped_blank=0), len(groups),
                            sum(1 for g in groups if fold_of[g] == j)))
    logger.info("--cross-fit %d: %d groups (%d rows) in folds of %s groups", k, len(groups), len(data),
                "/".join(str(s.groups_held_out) for s in out))
    return out


def write_held_out(split: DevSplit, path: Path) -> None:
    """The held-out rows, tab-separated with a header of the column names."""
    write_rows(split.held_out, path)


def write_rows(data: TrainData, path: Path) -> None:
    """Rows of labelled data, tab-separated with a header of the column names (a file every reader takes).

    The TSV reader takes fields as they are (no quoting, no escapes: STS-style files carry bare quotes), so
    the texts are written as they are; a tab or line break inside a text (possible from a CSV or JSONL input)
    would split the row and becomes a space (counted and logged)."""
    changed = 0

    def field(v) -> str:
        nonlocal changed
        v = f"{v:g}" if isinstance(v, float) else str(v)
        if "\t" in v or "\n" in v or "\r" in v:
            changed += 1
            v = v.replace("\r\n", " ").replace("\t", " ").replace("\n", " ").replace("\r", " ")
        return v

    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(data.columns) + "\n")
        for ex, label in zip(data.examples, _labels(data)):
            row = (*ex, label) if label is not None else ex
            f.write("\t".join(field(v) for v in row) + "\n")
    if changed:
        logger.warning("%s: %d text(s) held a tab or line break, written as a space", path, changed)


def _labels(data: TrainData) -> list:
    return data.labels if data.labels is not None else [None] * len(data.examples)


def dev_task(split: DevSplit):
    """The eval task the held-out rows make -> (its TaskSpec named ``dev``, its evaluator)."""
    from embtune.evaluation.tasks import TaskSpec, _metrics_of

    cols = split.train.columns
    # rows with their label last, as the file had them
    rows = [(*ex, lab) if lab is not None else ex for ex, lab in zip(split.held_out.examples, _labels(split.held_out))]
    if cols[-1] == "score":
        from embtune.evaluation.pair_eval import ScoredPairEval

        kind, ev = "scored", ScoredPairEval(_pairs(split, rows))
    elif cols[-1] == "label" and len(cols) == 3:
        from embtune.evaluation.pair_eval import BinaryPairEval

        kind, ev = "binary", BinaryPairEval(_pairs(split, rows))
    elif cols[-1] == "label" and len(cols) == 2:
        # a class file's dev items are ranked among every item of the file (train ones too): held-out
        # texts are the queries; the MAP counts same-class texts from both sides as relevant
        kind, ev = "classes", _ClassDevEval(split)
    else:
        from embtune.evaluation.retrieval import RetrievalTask
        from embtune.evaluation.tasks import RetrievalEval

        docs = list(dict.fromkeys(t for ex in [*split.train.examples, *split.held_out.examples] for t in ex[1:]))
        doc_id = {t: f"d{i}" for i, t in enumerate(docs)}
        queries: dict[str, str] = {}
        qrels: dict[str, dict[str, int]] = {}
        for ex in rows:
            qid = queries.setdefault(ex[0], f"q{len(queries)}")
            qrels.setdefault(qid, {})[doc_id[ex[1]]] = 1
        task = RetrievalTask("dev", {i: t for t, i in doc_id.items()}, {i: q for q, i in queries.items()}, qrels)
        kind, ev = "beir", RetrievalEval(task)
    return TaskSpec("dev", kind, "held-out", _metrics_of(kind)), ev


def _pairs(split: DevSplit, rows):
    from embtune.evaluation.pair_eval import PairData

    return PairData(f"{split.train.path} (held-out rows)", [r[0] for r in rows], [r[1] for r in rows],
                    np.asarray([float(r[2]) for r in rows]))


class _ClassDevEval:
    """Same-class retrieval with the held-out texts as queries against all texts of the file."""

    def __init__(self, split: DevSplit):
        from collections import Counter

        def items(d: TrainData) -> list[tuple[str, str]]:
            return [(ex[0], str(lab)) for ex, lab in zip(d.examples, _labels(d))]

        self.queries = items(split.held_out)
        self.pool = list(dict.fromkeys([*items(split.train), *items(split.held_out)]))
        counts = Counter(lab for _, lab in self.pool)
        self.queries = [(t, lab) for t, lab in self.queries if counts[lab] >= 2]
        if not self.queries:
            raise EmbtuneError(f"--dev-fraction: no held-out text of {split.train.path} has a class with another member")

    def evaluate(self, encoder, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
        texts = [t for t, _ in self.pool]
        emb = encoder.encode(texts, batch_size=batch_size, precision=precision).astype(np.float64)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-12)
        index = {p: i for i, p in enumerate(self.pool)}
        labels = np.asarray([lab for _, lab in self.pool])
        aps, knn = [], []
        for q in self.queries:
            i = index[q]
            sims = emb @ emb[i]
            sims[i] = -np.inf
            order = np.argsort(-sims, kind="stable")[:-1]
            rel = labels[order] == q[1]
            hits = np.cumsum(rel)
            aps.append(float((rel * hits / np.arange(1, len(rel) + 1)).sum() / rel.sum()))
            knn.append(bool(rel[0]))
        return {"map": 100 * float(np.mean(aps)), "knn_accuracy": 100 * float(np.mean(knn))}
