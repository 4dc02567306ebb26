"""Chinese sentence-pair evaluation (the "senteval_cn" protocol of Chinese SimCSE / CoSENT tables).

Spearman ×100 between the cosine of the two sentences and the label: 0/1 for LCQMC, ATEC, BQ and
PAWS-X, 0–5 for Chinese STS-B. Works with any tokenizer; the model decides how Chinese is split.
BQ has no labelled test split here (its public test set has no labels): ``bq`` is dev only.
"""

from __future__ import annotations

import logging

import numpy as np

from embtune.data.readers import read_text_lines
from embtune.data.registry import resolve_relpath
from embtune.errors import EmbtuneError, located
from embtune.evaluation.sts import STSData, _cosine, correlations

logger = logging.getLogger(__name__)

# task -> split -> (path relative to the data root, has a header with an id column first)
ZH_TASKS: dict[str, dict[str, tuple[str, bool]]] = {
    "lcqmc": {"dev": ("zh/lcqmc/dev.txt", False), "test": ("zh/lcqmc/test.txt", False)},
    "atec": {"dev": ("zh/atec/ATEC.valid.data", False), "test": ("zh/atec/ATEC.test.data", False)},
    "bq": {"dev": ("zh/bq/dev.tsv", False)},
    "pawsx": {"dev": ("zh/pawsx/dev_2k.tsv", True), "test": ("zh/pawsx/test_2k.tsv", True)},
    "stsb-zh": {"dev": ("zh/stsb_zh/STS-B.valid.data", False), "test": ("zh/stsb_zh/STS-B.test.data", False)},
}


def load_zh(task: str, split: str = "test") -> STSData:
    if task not in ZH_TASKS:
        raise EmbtuneError(f"unknown Chinese task {task!r}; expected one of: {', '.join(ZH_TASKS)}")
    if split not in ZH_TASKS[task]:
        raise EmbtuneError(f"{task} has no labelled {split!r} split; available: {', '.join(ZH_TASKS[task])}")
    relpath, id_header = ZH_TASKS[task][split]
    path = resolve_relpath(relpath)
    s1, s2, labels = [], [], []
    for i, ln in enumerate(read_text_lines(path), 1):
        if id_header and i == 1:
            continue
        if not ln.strip():
            continue
        cells = ln.split("\t")
        if id_header:
            cells = cells[1:]
        if len(cells) != 3:
            raise located(path, i, f"expected sentence1, sentence2 and a label separated by tabs, found {len(cells)} fields")
        try:
            labels.append(float(cells[2]))
        except ValueError as e:
            raise located(path, i, f"label {cells[2]!r} is not a number") from e
        s1.append(cells[0])
        s2.append(cells[1])
    return STSData(task, s1, s2, np.asarray(labels), [task] * len(labels))


def evaluate_zh(encoder, tasks=tuple(ZH_TASKS), split: str = "test", batch_size: int = 64, precision: str = "fp32") -> dict:
    """Spearman ×100 per task; a task without the requested split falls back to dev (noted)."""
    results = {}
    for task in tasks:
        splits = ZH_TASKS.get(task, {})
        sp = split if split in splits else "dev" if split == "test" else None  # BQ: no labelled test split
        if sp is None:
            raise EmbtuneError(f"--split {split}: {task} has the split(s) {', '.join(splits)} here")
        if sp != split:
            logger.warning("%s has no labelled %r split: evaluated on its dev split instead", task, split)
        d = load_zh(task, sp)
        sents = list(dict.fromkeys([*d.sent1, *d.sent2]))
        emb = encoder.encode(sents, batch_size=batch_size, precision=precision)
        row = {s: i for i, s in enumerate(sents)}
        pred = _cosine(emb[[row[s] for s in d.sent1]], emb[[row[s] for s in d.sent2]])
        spearman, pearson = correlations(pred, d.scores)
        results[task] = {"spearman": spearman, "pearson": pearson, "pairs": len(d), "split": sp}
    avg = float(np.mean([r["spearman"] for r in results.values()]))
    return {"tasks": results, "avg": avg}
