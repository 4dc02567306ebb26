"""Evaluation tasks for training (``--eval-task``): the user's own task, evaluated at step 0 and every
``--eval-steps``, any of whose metrics may select the checkpoint (``--metric-for-best``).

A task spec is ``[NAME=]KIND:TARGET`` or a built-in name:

============================  ===================================================  =========================
spec                          what                                                 metrics (primary first)
============================  ===================================================  =========================
``stsb-dev`` (default)        STS-B dev (SentEval text), alignment/uniformity      spearman, alignment↓, uniformity↓
``sickr-dev``                 SICK-R dev                                           spearman
``lcqmc`` ``atec`` ``bq``     the Chinese sets' dev splits                         spearman
``pawsx`` ``stsb-zh``
``beir:<folder>``             BEIR-layout retrieval; ``qrels/dev.tsv`` when the    ndcg@10, map, recall@k, mrr@10, ...
                              folder has one, else ``qrels/test.tsv`` (warned)     (as ``evaluation/retrieval.py`` gives)
``scored:<file>``             (sentence1, sentence2, score) pairs                  spearman, pearson
``binary:<file>``             (sentence1, sentence2, 0/1) pairs                    ap, accuracy, f1
``classes:<file>``            (text, label) rows                                   map, knn_accuracy
============================  ===================================================  =========================

A metric's full name is ``<task name>/<metric>``: ``stsb-dev/spearman``, ``beir:android/ndcg@10``,
``binary:dev/ap``. The task name is the built-in name, or ``KIND:<file or folder name without
extensions>``, or the ``NAME`` given before ``=`` (``--eval-task mine=binary:data/dev.tsv`` -> ``mine/ap``).
The held-out part of the training data (``--dev-fraction``) is the task ``dev``. Today's names
``stsb_dev_spearman``, ``sickr_dev_spearman``, ``alignment`` and ``uniformity`` stay valid aliases.
Every metric is higher-is-better except those marked ↓.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

BUILTIN = ("stsb-dev", "sickr-dev")
KINDS = ("beir", "scored", "binary", "classes")
DEFAULT_TASK = "stsb-dev"
#: today's flat metric names -> the full names
ALIASES = {"stsb_dev_spearman": "stsb-dev/spearman", "sickr_dev_spearman": "sickr-dev/spearman",
           "alignment": "stsb-dev/alignment", "uniformity": "stsb-dev/uniformity"}


class Evaluator(Protocol):
    def evaluate(self, encoder, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]: ...


def retrieval_metric_names() -> dict[str, bool]:
    """The metrics the retrieval evaluation produces (read from it, so they follow it)."""
    from embtune.evaluation.retrieval import query_metrics

    names = list(query_metrics(["a", "b"], {"a": 1}))
    names.sort(key=lambda n: (n != "ndcg@10", n != "map"))  # primary first
    return {n: True for n in names}


def _zh_tasks() -> tuple[str, ...]:
    from embtune.evaluation.chinese import ZH_TASKS

    return tuple(ZH_TASKS)


@dataclass(frozen=True)
class TaskSpec:
    """A parsed ``--eval-task`` entry: what it is and which metrics it declares (no file is read)."""

    name: str
    kind: str  # stsb-dev, sickr-dev, zh, beir, scored, binary, classes, dev-split
    target: str = ""
    #: metric -> higher is better; the first is the task's primary metric
    metrics: dict[str, bool] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        return f"{self.name}/{next(iter(self.metrics))}"

    def full_names(self) -> dict[str, bool]:
        return {f"{self.name}/{m}": hi for m, hi in self.metrics.items()}


def _metrics_of(kind: str) -> dict[str, bool]:
    if kind == "stsb-dev":
        return {"spearman": True, "alignment": False, "uniformity": False}
    if kind in ("sickr-dev", "zh"):
        return {"spearman": True}
    if kind == "beir":
        return retrieval_metric_names()
    if kind == "scored":
        from embtune.evaluation.pair_eval import ScoredPairEval
        return dict(ScoredPairEval.metrics)
    if kind == "binary":
        from embtune.evaluation.pair_eval import BinaryPairEval
        return dict(BinaryPairEval.metrics)
    if kind == "classes":
        from embtune.evaluation.class_eval import ClassEval
        return dict(ClassEval.metrics)
    raise AssertionError(kind)


def _stem(target: str) -> str:
    name = Path(target.rstrip("/")).name
    for ext in (".gz", ".tsv", ".csv", ".jsonl", ".txt"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name or target


def parse_task(spec: str) -> TaskSpec:
    """One ``--eval-task`` entry -> its :class:`TaskSpec` (an error names the flag and what was expected)."""
    text = spec.strip()
    name = None
    head = text.split(":", 1)[0]
    if "=" in head:
        name, text = (p.strip() for p in text.split("=", 1))
        if not name or "/" in name or "," in name:
            raise EmbtuneError(f"--eval-task {spec!r}: the name before '=' must be non-empty, without '/' or ','")
    if text in BUILTIN:
        return TaskSpec(name or text, text, metrics=_metrics_of(text))
    if text in _zh_tasks():
        return TaskSpec(name or text, "zh", text, metrics=_metrics_of("zh"))
    kind, sep, target = text.partition(":")
    if not sep or kind not in KINDS or not target.strip():
        raise EmbtuneError(
            f"--eval-task {spec!r}: expected one of {', '.join([*BUILTIN, *_zh_tasks()])} or KIND:PATH with KIND one "
            f"of {', '.join(KINDS)} (beir:<folder>, scored:<pairs file>, binary:<pairs file>, classes:<file>), "
            "optionally NAME=... in front")
    target = target.strip()
    return TaskSpec(name or f"{kind}:{_stem(target)}", kind, target, _metrics_of(kind))


def parse_tasks(spec: str | None, sickr: bool = False, dev_split: "TaskSpec | None" = None) -> list[TaskSpec]:
    """The comma-separated ``--eval-task`` value (plus ``--eval-sickr``'s ``sickr-dev`` and the held-out
    ``dev`` task) -> task specs with unique names; STS-B dev when nothing else is asked for."""
    tasks = [parse_task(s) for s in (spec or "").split(",") if s.strip()]
    if dev_split is not None:
        tasks.append(dev_split)
    if not tasks:
        tasks.append(parse_task(DEFAULT_TASK))
    if sickr and not any(t.kind == "sickr-dev" for t in tasks):
        tasks.append(parse_task("sickr-dev"))
    seen: dict[str, TaskSpec] = {}
    for t in tasks:
        if t.name in seen:
            raise EmbtuneError(f"--eval-task: two tasks are named {t.name!r}; name one with NAME=... in front "
                               f"(e.g. other={t.kind}:{t.target or t.name})")
        seen[t.name] = t
    return tasks


def dev_split_placeholder() -> TaskSpec:
    """The ``dev`` task before the training file is read: it declares the metrics of any kind it may be."""
    metrics: dict[str, bool] = {}
    for kind in ("beir", "scored", "binary", "classes"):
        metrics.update(_metrics_of(kind))
    return TaskSpec("dev", "dev-split", "held-out", metrics)


def resolve_metric(metric: str | None, tasks: list[TaskSpec]) -> tuple[str, bool]:
    """``--metric-for-best`` -> (full metric name, higher is better); the default is the first task's
    primary metric. A name no task declares is an error listing the ones that exist."""
    declared: dict[str, bool] = {}
    for t in tasks:
        declared.update(t.full_names())
    if metric is None:
        return tasks[0].primary, True
    full = ALIASES.get(metric, metric)
    if full not in declared and "/" not in full and len(tasks) == 1:
        full = f"{tasks[0].name}/{full}"  # a bare metric name of the only task
    if full not in declared:
        raise EmbtuneError(f"--metric-for-best {metric!r}: no eval task produces it; the eval tasks "
                           f"({', '.join(t.name for t in tasks)}) produce: {', '.join(declared)}")
    return full, declared[full]


# ---- loading and running --------------------------------------------------------------------------

class _StsbDev:
    def evaluate(self, encoder, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
        from embtune.evaluation import dev

        m = dev.evaluate_dev(encoder, batch_size=batch_size, precision=precision)
        return {"spearman": m["stsb_dev_spearman"], "alignment": m["alignment"], "uniformity": m["uniformity"]}


class _SickrDev:
    def evaluate(self, encoder, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
        from embtune.evaluation.sts import load_sts

        return {"spearman": _sts_spearman(encoder, load_sts("sickr", "dev"), batch_size, precision)}


class _ZhDev:
    def __init__(self, task: str):
        from embtune.evaluation.chinese import load_zh

        self.data = load_zh(task, "dev")

    def evaluate(self, encoder, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
        return {"spearman": _sts_spearman(encoder, self.data, batch_size, precision)}


def _sts_spearman(encoder, d, batch_size: int, precision: str) -> float:
    from embtune.evaluation.sts import _cosine, correlations

    sents = list(dict.fromkeys([*d.sent1, *d.sent2]))
    emb = encoder.encode(sents, batch_size=batch_size, precision=precision)
    row = {s: i for i, s in enumerate(sents)}
    return correlations(_cosine(emb[[row[s] for s in d.sent1]], emb[[row[s] for s in d.sent2]]), d.scores)[0]


class RetrievalEval:
    """A BEIR-layout folder (or an in-memory :class:`RetrievalTask`) -> the retrieval metrics."""

    def __init__(self, task):
        self.task = task

    @classmethod
    def from_folder(cls, folder: str, purpose: str = "select") -> "RetrievalEval":
        """``purpose``: ``select`` reads ``qrels/dev.tsv`` when the folder has one (else test, warned);
        ``report`` (a held-out figure) reads ``qrels/test.tsv`` when it has one (else dev)."""
        from embtune.evaluation.retrieval import load_beir

        path = Path(folder)
        if not path.is_dir():
            raise EmbtuneError(f"--eval-task beir:{folder}: not a folder (expected corpus.jsonl, queries.jsonl, qrels/)")
        has = {s: (path / "qrels" / f"{s}.tsv").is_file() for s in ("dev", "test")}
        if purpose == "report":
            return cls(load_beir(path, split="test" if has["test"] or not has["dev"] else "dev"))
        split = "dev" if has["dev"] else "test"
        if split == "test":
            logger.warning("beir:%s has no qrels/dev.tsv: selecting on qrels/test.tsv (report test numbers from "
                           "other queries, or give a dev split)", folder)
        return cls(load_beir(path, split=split))

    def evaluate(self, encoder, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
        from embtune.evaluation.retrieval import evaluate_retrieval
        from embtune.training.selection import ItemStat

        r = evaluate_retrieval(encoder, self.task, batch_size, precision, per_query=True)
        self.items = {k: ItemStat((v,)) for k, v in r["per_query"].items()}  # per query, for paired selection
        return dict(r["metrics"])


@dataclass
class LoadedTask:
    spec: TaskSpec
    evaluator: Any


def load_task(spec: TaskSpec, evaluator: Any = None, purpose: str = "select") -> LoadedTask:
    """Read the task's files now (before training), so a bad file fails before any step is taken.
    ``purpose``: ``select`` (training's evaluations) or ``report`` (a held-out figure: a BEIR folder's test qrels)."""
    if evaluator is not None:
        return LoadedTask(spec, evaluator)
    if spec.kind == "stsb-dev":
        ev: Any = _StsbDev()
    elif spec.kind == "sickr-dev":
        ev = _SickrDev()
    elif spec.kind == "zh":
        ev = _ZhDev(spec.target)
    elif spec.kind == "beir":
        ev = RetrievalEval.from_folder(spec.target, purpose)
    elif spec.kind == "scored":
        from embtune.evaluation.pair_eval import ScoredPairEval
        ev = ScoredPairEval.from_file(spec.target)
    elif spec.kind == "binary":
        from embtune.evaluation.pair_eval import BinaryPairEval
        ev = BinaryPairEval.from_file(spec.target)
    elif spec.kind == "classes":
        from embtune.evaluation.class_eval import ClassEval
        ev = ClassEval.from_file(spec.target)
    else:
        raise AssertionError(spec.kind)
    return LoadedTask(spec, ev)


def items_of(tasks: list[LoadedTask]) -> dict[str, Any]:
    """The per-item form (:class:`embtune.training.selection.ItemStat`) of the metrics of the last evaluation,
    under their full names, for the tasks whose evaluators keep one (retrieval per query, pairs per pair)."""
    out: dict[str, Any] = {}
    for t in tasks:
        for k, v in (getattr(t.evaluator, "items", None) or {}).items():
            out[f"{t.spec.name}/{k}"] = v
    return out


class SharedEncodings:
    """The encoder, with each distinct text embedded once across the tasks of one evaluation (two retrieval
    tasks over the same corpus encode it once). Other attributes are the encoder's."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.memo: dict[tuple, Any] = {}

    def __getattr__(self, name: str):
        return getattr(self.encoder, name)

    def encode(self, texts, batch_size: int = 64, normalize: bool = False, precision: str = "fp32", **kw):
        import numpy as np

        texts = list(texts)
        if kw:  # anything unusual goes straight through
            return self.encoder.encode(texts, batch_size=batch_size, normalize=normalize, precision=precision, **kw)
        key = (bool(normalize), precision)
        missing = [t for t in dict.fromkeys(texts) if (key, t) not in self.memo]
        if missing:
            emb = self.encoder.encode(missing, batch_size=batch_size, normalize=normalize, precision=precision)
            self.memo.update(((key, t), e) for t, e in zip(missing, emb))
        if not texts:
            return self.encoder.encode(texts, batch_size=batch_size, normalize=normalize, precision=precision)
        return np.stack([self.memo[(key, t)] for t in texts])


def evaluate_tasks(tasks: list[LoadedTask], encoder, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
    """Every task's metrics under their full names (``task/metric``); texts shared by several tasks are
    embedded once."""
    out: dict[str, float] = {}
    if len(tasks) > 1:
        encoder = SharedEncodings(encoder)
    for t in tasks:
        for k, v in t.evaluator.evaluate(encoder, batch_size=batch_size, precision=precision).items():
            out[f"{t.spec.name}/{k}"] = float(v)
    return out
