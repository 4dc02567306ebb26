"""One entry point for ``embtune eval``: a list of task names -> one results dict.

Task names: the English STS tasks (sts12…sickr), the Chinese tasks (lcqmc, atec, bq, pawsx,
stsb-zh), ``align_uniform``, ``stsb-retrieval`` (built-in) and ``beir:<folder>`` (any BEIR-layout folder).
"""

from __future__ import annotations

import time

import numpy as np

from embtune.errors import EmbtuneError
from embtune.evaluation.align_uniform import evaluate_align_uniform
from embtune.evaluation.chinese import ZH_TASKS, evaluate_zh
from embtune.evaluation.retrieval import evaluate_retrieval, load_beir, stsb_retrieval_task
from embtune.evaluation.sts import STS_TASKS, evaluate_sts

OTHER_TASKS = ("align_uniform", "stsb-retrieval")


def parse_tasks(spec: str | list[str]) -> list[str]:
    tasks = [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec) if t.strip()]
    if not tasks:
        raise EmbtuneError(f"--tasks: expected at least one task name, got {spec!r}")
    for t in tasks:
        if t not in STS_TASKS and t not in ZH_TASKS and t not in OTHER_TASKS and not t.startswith("beir:"):
            known = ", ".join([*STS_TASKS, *ZH_TASKS, *OTHER_TASKS, "beir:<folder>"])
            raise EmbtuneError(f"unknown task {t!r}; known: {known}")
    return tasks


def run_evaluation(encoder, tasks: str | list[str], text: str = "senteval", mode: str = "all",
                   split: str = "test", batch_size: int = 64, precision: str = "fp32",
                   show_progress: bool = False) -> dict:
    tasks = parse_tasks(tasks)
    t0 = time.perf_counter()
    out: dict = {"tasks": {}, "mode": mode, "text": text, "split": split, "precision": precision}
    sts = [t for t in tasks if t in STS_TASKS]
    if sts:
        r = evaluate_sts(encoder, sts, text=text, mode=mode, split=split, batch_size=batch_size,
                         precision=precision, show_progress=show_progress)
        out["tasks"].update(r["tasks"])
        out["distinct_sentences"] = r["distinct_sentences"]
        out["sts_seconds"] = r["seconds"]
    zh = [t for t in tasks if t in ZH_TASKS]
    if zh:
        out["tasks"].update(evaluate_zh(encoder, zh, split=split, batch_size=batch_size, precision=precision)["tasks"])
    if "align_uniform" in tasks:
        out["align_uniform"] = evaluate_align_uniform(encoder, batch_size=batch_size, precision=precision)
    for t in tasks:
        if t == "stsb-retrieval" and split != "test":
            raise EmbtuneError(f"--split {split}: stsb-retrieval is built from STS-B's test split only")
        if t == "stsb-retrieval" or t.startswith("beir:"):
            task = stsb_retrieval_task() if t == "stsb-retrieval" else load_beir(t[5:], split=split)
            out.setdefault("retrieval", {})[t] = evaluate_retrieval(encoder, task, batch_size, precision)
    corr = [r["spearman"] for r in out["tasks"].values()]
    out["avg"] = float(np.mean(corr)) if corr else None
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
