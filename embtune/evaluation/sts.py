"""Semantic textual similarity as the SimCSE paper evaluates it (Gao et al. 2021, §B and Table 5).

Score of a pair = cosine of the two embeddings; metric = Spearman (and Pearson) with the gold
scores, ×100. STS12–16 use the "all" setting by default: the subsets concatenated, one
correlation. ``mean`` and ``wmean`` are SentEval's aggregations (plain and size-weighted mean of the
per-subset correlations). STS-B and SICK-R use their test splits. Default text is the
SentEval-tokenized version the paper's numbers come from; ``raw`` is the original text.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
from scipy.stats import pearsonr, spearmanr

from embtune.data.readers import read_text_lines
from embtune.data.registry import resolve_relpath
from embtune.errors import EmbtuneError, located

STS_TASKS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
TASK_LABELS = {"sts12": "STS12", "sts13": "STS13", "sts14": "STS14", "sts15": "STS15", "sts16": "STS16",
               "stsb": "STS-B", "sickr": "SICK-R"}
MODES = ("all", "mean", "wmean")
TEXTS = ("senteval", "raw")


@dataclass
class STSData:
    task: str
    sent1: list[str]
    sent2: list[str]
    scores: np.ndarray
    subsets: list[str]

    def __len__(self) -> int:
        return len(self.scores)


@functools.lru_cache(maxsize=64)
def load_sts(task: str, split: str = "test", text: str = "senteval") -> STSData:
    if task not in STS_TASKS:
        raise EmbtuneError(f"unknown STS task {task!r}; expected one of: {', '.join(STS_TASKS)}")
    if text not in TEXTS:
        raise EmbtuneError(f"unknown text version {text!r}; expected senteval or raw")
    if task.startswith("sts1") and split != "test":
        raise EmbtuneError(f"{task} has only a test split")
    path = resolve_relpath(f"sts/{task}/{split}{'.senteval' if text == 'senteval' else ''}.tsv.gz")
    lines = read_text_lines(path)
    if not lines:
        raise EmbtuneError(f"{path}: empty file; expected a header and scored pairs")
    header = lines[0].split("\t")
    has_subset = len(header) > 3 and header[3] == "subset"
    s1, s2, sc, sub = [], [], [], []
    for i, ln in enumerate(lines[1:], 2):
        cells = ln.split("\t")
        if len(cells) < 3:
            raise located(path, i, f"expected at least 3 tab-separated columns (sentence1, sentence2, score), found {len(cells)}")
        try:
            score = float(cells[2])
        except ValueError as e:
            raise located(path, i, f"score {cells[2]!r} is not a number") from e
        s1.append(cells[0])
        s2.append(cells[1])
        sc.append(score)
        sub.append(cells[3] if has_subset else task)
    return STSData(task, s1, s2, np.asarray(sc, dtype=np.float64), sub)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(min=1e-12)


def correlations(pred: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """(Spearman, Pearson) ×100."""
    return float(spearmanr(pred, gold).statistic * 100), float(pearsonr(pred, gold).statistic * 100)


def aggregate(pred: np.ndarray, gold: np.ndarray, subsets: list[str], mode: str) -> dict:
    """SentEval's aggregations over subsets; returns spearman, pearson and per-subset scores."""
    if mode not in MODES:
        raise EmbtuneError(f"unknown STS mode {mode!r}; expected one of: {', '.join(MODES)}")
    names = list(dict.fromkeys(subsets))
    sub_arr = np.asarray(subsets)
    per = {}
    for name in names:
        m = sub_arr == name
        sp, pe = correlations(pred[m], gold[m])
        per[name] = {"spearman": sp, "pearson": pe, "pairs": int(m.sum())}
    if mode == "all":
        sp, pe = correlations(pred, gold)
    else:
        w = np.array([per[n]["pairs"] for n in names], dtype=np.float64) if mode == "wmean" else np.ones(len(names))
        sp = float(np.average([per[n]["spearman"] for n in names], weights=w))
        pe = float(np.average([per[n]["pearson"] for n in names], weights=w))
    return {"spearman": sp, "pearson": pe, "pairs": len(gold), "subsets": per}


def evaluate_sts(
    encoder,
    tasks: tuple[str, ...] | list[str] = STS_TASKS,
    text: str = "senteval",
    mode: str = "all",
    split: str = "test",
    batch_size: int = 64,
    precision: str = "fp32",
    show_progress: bool = False,
) -> dict:
    """Evaluate on STS tasks; every distinct sentence of the suite is encoded once."""
    t0 = time.perf_counter()
    datasets = [load_sts(t, split, text) for t in tasks]
    sentences = list(dict.fromkeys(s for d in datasets for s in (*d.sent1, *d.sent2)))
    emb = encoder.encode(sentences, batch_size=batch_size, precision=precision, show_progress=show_progress)
    row = {s: i for i, s in enumerate(sentences)}
    results = {}
    for d in datasets:
        pred = _cosine(emb[[row[s] for s in d.sent1]], emb[[row[s] for s in d.sent2]])
        results[d.task] = aggregate(pred, d.scores, d.subsets, mode)
    avg = float(np.mean([r["spearman"] for r in results.values()])) if results else float("nan")
    return {
        "tasks": results,
        "avg": avg,
        "mode": mode,
        "text": text,
        "split": split,
        "distinct_sentences": len(sentences),
        "seconds": round(time.perf_counter() - t0, 2),
    }
