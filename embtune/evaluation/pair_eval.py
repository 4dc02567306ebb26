"""Own-task evaluation on sentence pairs: graded scores (Spearman) and binary labels (pair classification).

A pair file has three columns — sentence1, sentence2, and a score or a 0/1 label — as ``.tsv`` or
``.csv`` (optional header ``sent0,sent1,score`` / ``sent0,sent1,label``, or ``sentence1,sentence2,...``) or
``.jsonl`` (fields ``sent0``, ``sent1`` and ``score`` or ``label``); any of them gzipped. It is read by the
training files' reader (:func:`embtune.data.readers.read_labelled_file`): blank lines are skipped and
counted; anything else that is not as expected is an error naming the file and line.

- scored pairs: Spearman (and Pearson) ×100 between the cosine of the two sentences and the score,
  as STS is evaluated (Agirre et al.; SentEval);
- binary pairs: the metrics of pair classification as sentence-transformers'
  ``BinaryClassificationEvaluator`` and TSDAE/USEB report them for TwitterPara (Wang et al. 2021):
  average precision (×100) of the cosine against the label, and the accuracy and F1 (×100) at the
  best cosine threshold (each chosen on the same pairs), with those thresholds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embtune.data.readers import BINARY_PAIR_COLUMNS, SCORED_PAIR_COLUMNS, read_labelled_file
from embtune.errors import EmbtuneError
from embtune.evaluation.sts import _cosine, correlations

logger = logging.getLogger(__name__)

@dataclass
class PairData:
    path: str
    sent1: list[str]
    sent2: list[str]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.values)


def read_pair_file(path: str | Path, what: str = "score") -> PairData:
    """Read (sentence1, sentence2, value) rows with the training files' reader; ``what`` ("score" or
    "label") is the third column: a finite number, or a 0/1 label."""
    layout = SCORED_PAIR_COLUMNS if what == "score" else BINARY_PAIR_COLUMNS
    data = read_labelled_file(path, layout)
    return PairData(data.path, [e[0] for e in data.examples], [e[1] for e in data.examples],
                    np.asarray(data.labels, dtype=np.float64))


def check_binary(data: PairData) -> np.ndarray:
    """The 0/1 labels as integers (the reader checked each); both labels must occur."""
    labels = data.values.astype(np.int64)
    if labels.min() == labels.max():
        raise EmbtuneError(f"{data.path}: every label is {labels[0]}; a binary pair file needs both 0 and 1 labels")
    return labels


def pair_cosines(encoder, data: PairData, batch_size: int = 64, precision: str = "fp32") -> np.ndarray:
    sents = list(dict.fromkeys([*data.sent1, *data.sent2]))
    emb = encoder.encode(sents, batch_size=batch_size, precision=precision)
    row = {s: i for i, s in enumerate(sents)}
    return _cosine(emb[[row[s] for s in data.sent1]], emb[[row[s] for s in data.sent2]])


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP = Σ_n (R_n − R_{n−1}) · P_n over the distinct score thresholds, highest first (tied scores
    form one threshold), as scikit-learn's ``average_precision_score``."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last_of_group = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # index of the last item at each threshold
    tp = np.cumsum(y)[last_of_group]
    predicted = last_of_group + 1
    precision = tp / predicted
    recall = tp / y.sum()
    prev_recall = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev_recall) * precision))


def best_threshold_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and F1 at their best thresholds (predict 1 when cosine >= threshold).

    Candidate thresholds are the scores themselves (and +inf: predict all 0); the threshold reported is the
    midpoint between the chosen score and the next lower one, as sentence-transformers reports it."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    n, pos = len(y), int(y.sum())
    last_of_group = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.r_[0, np.cumsum(y)[last_of_group]]       # predicted positive: none, then the top groups
    predicted = np.r_[0, last_of_group + 1]
    fp = predicted - tp
    tn = (n - pos) - fp
    acc = (tp + tn) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(tp > 0, 2 * tp / (predicted + pos), 0.0)
    cuts = np.r_[np.inf, s[last_of_group]]
    nxt = np.r_[s[last_of_group], -np.inf]

    def threshold(i: int) -> float:
        if i == 0:  # predict none: just above the highest score
            return float(np.nextafter(s[0], np.inf))
        return float((cuts[i] + nxt[i]) / 2) if np.isfinite(nxt[i]) else float(cuts[i])

    ia, i_f = int(np.argmax(acc)), int(np.argmax(f1))
    return {"accuracy": 100 * float(acc[ia]), "accuracy_threshold": threshold(ia),
            "f1": 100 * float(f1[i_f]), "f1_threshold": threshold(i_f)}


class ScoredPairEval:
    """Spearman/Pearson ×100 of the cosine against graded scores."""

    kind = "scored"
    metrics = {"spearman": True, "pearson": True}
    primary = "spearman"

    def __init__(self, data: PairData):
        if len(data) < 2 or np.ptp(data.values) == 0:
            raise EmbtuneError(f"{data.path}: a scored pair task needs at least 2 pairs with different scores")
        self.data = data

    @classmethod
    def from_file(cls, path: str | Path) -> "ScoredPairEval":
        return cls(read_pair_file(path, "score"))

    def evaluate(self, encoder, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
        from embtune.training.selection import ItemStat

        cos = pair_cosines(encoder, self.data, batch_size, precision)
        sp, pe = correlations(cos, self.data.values)
        self.items = {"spearman": ItemStat((cos, self.data.values), _spearman, "spearman")}  # per pair, for paired selection
        return {"spearman": sp, "pearson": pe}


class BinaryPairEval:
    """Pair classification: AP ×100 of the cosine, best-threshold accuracy and F1 ×100."""

    kind = "binary"
    metrics = {"ap": True, "accuracy": True, "f1": True}
    primary = "ap"

    def __init__(self, data: PairData):
        self.data = data
        self.labels = check_binary(data)

    @classmethod
    def from_file(cls, path: str | Path) -> "BinaryPairEval":
        return cls(read_pair_file(path, "label"))

    def evaluate(self, encoder, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
        from embtune.training.selection import ItemStat

        cos = pair_cosines(encoder, self.data, batch_size, precision)
        self.items = {"ap": ItemStat((cos, self.labels), _ap, "ap")}  # per pair, for paired selection
        return {"ap": 100 * average_precision(cos, self.labels), **best_threshold_metrics(cos, self.labels)}


def _spearman(cos: np.ndarray, values: np.ndarray) -> float:
    """Spearman ×100 of a resample (0 where the resample has one distinct score: no order to agree with)."""
    return correlations(cos, values)[0] if np.ptp(values) > 0 and np.ptp(cos) > 0 else 0.0


def _ap(cos: np.ndarray, labels: np.ndarray) -> float:
    """AP ×100 of a resample (0 where it holds no positive)."""
    return 100 * average_precision(cos, labels) if labels.sum() > 0 else 0.0


#: the per-item stats of these evaluators by name (an ``ItemStat`` read back from ``eval_items.jsonl``)
ITEM_STATS = {"spearman": _spearman, "ap": _ap}
