"""The options of ``embtune adapt``, declared once: the flags, the YAML keys and the saved
``adapt_config.json`` all come from :class:`AdaptConfig` (see :mod:`embtune.options`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embtune.config import PRECISIONS, load_yaml
from embtune.errors import EmbtuneError
from embtune.options import at_least, error, in_range, option, options_of, positive


@dataclass
class AdaptConfig:
    model: str = option("minilm-l6", "the model to adapt: built-in name, local folder or Hugging Face id")
    corpus: str | None = option(None, "the user's unlabeled in-domain texts: .txt (one per line), .jsonl "
                                      "(_id/id + text, optional title), .tsv (id<TAB>text) or a BEIR folder "
                                      "(its corpus.jsonl); required")
    output: str | None = option(None, "output folder: the adapted model (OUTPUT/model), each stage's run, "
                                      "report.md/report.json; required")
    pairs: str | None = option(None, "(query, positive) pairs, sent0,sent1[,hard_neg]: every positive must be a "
                                     "text of --corpus")
    scored: str | None = option(None, "scored or 0/1-labelled pairs: sent0,sent1,score or sent0,sent1,label")
    classes: str | None = option(None, "class-labelled texts: text,label")
    teacher: str | None = option(None, "a stronger model whose ranking of the corpus is distilled (e.g. mpnet-base)")
    teacher_backend: str = option("torch", "what runs the teacher pass: torch (in --precision: bf16 where native, "
                                           "2.31× fp32 at equal STS) or onnx-int8 (ONNX Runtime, int8 weights; on an "
                                           "AVX2 CPU 1.72× fp32 torch at −0.31 STS: docs/teacher-pass-avx2.md)",
                                  choices=("torch", "onnx-int8"))
    eval_task: str | None = option(None, "the user's held-out task(s), reported before and after (never trained or "
                                         "selected on): beir:<folder>, scored:<file>, binary:<file>, "
                                         "classes:<file>, a built-in name; repeatable", repeatable=True)
    stages: str | None = option(None, "the stages to run, comma-separated (default: the plan for the data given, "
                                      "embtune/adaptation/recipes.py)", repeatable=True)
    steps: int | None = option(None, "training steps of every stage (default: each stage's own)", check=at_least(1))
    evaluations: int = option(4, "selection evaluations per stage after step 0 (evenly spaced, the last at the end)",
                              check=at_least(1))
    select_confidence: float = option(0.9, "a checkpoint replaces a stage's start only when a paired bootstrap over "
                                           "the selection queries/pairs says it is better with this confidence "
                                           "(training/selection.py); 0 = the best value", check=in_range(0, 1))
    teacher_guard: float = option(1.0, "with a teacher and labels: a checkpoint may lose at most this much agreement "
                                       "with the teacher (nDCG@10 ×100 of held-out corpus texts against the teacher's "
                                       "10 nearest) to be kept", check=at_least(0))
    guard_waiver: float = option(0.99, "with a teacher and labels: a labelled stage's checkpoint that beats the "
                                       "stage's start on the labels with this paired bootstrap confidence is kept "
                                       "even when it lost more than --teacher-guard of agreement (your labels outweigh "
                                       "the proxy when they are this sure); 0 = the teacher guard always holds",
                                 check=in_range(0, 1))
    label_guard: float = option(0.0, "with a teacher and labels: the corpus stage is selected on agreement with the "
                                     "teacher, and a checkpoint may lose at most this much of the labelled selection "
                                     "metric (×100) against the stage's start to be kept", check=at_least(0))
    label_guard_confidence: float = option(0.9, "with a teacher and labels: the corpus stage's label guard vetoes a "
                                                "checkpoint only when a paired bootstrap over the labelled selection "
                                                "queries/pairs also finds it worse than the stage's start with this "
                                                "confidence (a loss must be shown as surely as a gain is); 0 = any "
                                                "loss beyond --label-guard vetoes", check=in_range(0, 1))
    watch: bool = option(False, "also score --eval-task at every evaluation of every stage, for the record (the "
                                "report and each stage's eval_history.jsonl; never used to select): whether the kept "
                                "checkpoint is also the best on your held-out data")
    cross_fit: int = option(2, "labelled stages: K-fold cross-fitted selection — K runs, each trained on the "
                               "rows outside one fold and scored on that fold, so every labelled query/pair "
                               "selects; the chosen length is then trained on all rows (adaptation/crossfit.py). "
                               "1 = one held-out split of --dev-fraction", check=at_least(1))
    dev_fraction: float = option(0.2, "share of the labelled queries/groups held out for selection (with "
                                      "--cross-fit 1, or where cross-fitting does not apply: classes, or two "
                                      "labelled inputs)",
                                 check=lambda v: None if 0 < v <= 0.5 else "a value in (0, 0.5]")
    batch_size: int = option(64, "texts or rows per training step", check=at_least(4))
    max_seq_length: int = option(64, "tokens per text in training", check=at_least(8))
    lr: float | None = option(None, "peak learning rate of every stage (default: each stage's own)", check=positive)
    sts: bool = option(True, "score the STS table before and after (a general-quality check)")
    seed: int = option(42, "random seed", check=in_range(0, 2**32 - 1, include_high=True))
    device: str | None = option(None, "cpu, cuda, cuda:N (default: cuda when available)")
    precision: str = option("auto", "auto (bf16 where the device runs it natively, else fp32), fp32, bf16 or fp16: "
                                    "training, evaluation and the teacher pass", choices=PRECISIONS)
    trust_remote_code: bool = option(False, "run code shipped with the model or teacher (only from this command line)")
    allow_pickle_weights: bool = option(False, "load pickle-based weights (only from this command line)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "AdaptConfig":
        opts = options_of(AdaptConfig)
        for name, o in opts.items():
            problem = o.problem(getattr(self, name))
            if problem:
                raise error(o, problem)
        for flag in ("corpus", "output"):
            if not getattr(self, flag):
                raise EmbtuneError(f"--{flag}: required")
        if self.watch and not self.eval_task:
            raise EmbtuneError("--watch: scores --eval-task during training, and no --eval-task was given")
        return self


ADAPT_OPTIONS = options_of(AdaptConfig)


def make_adapt_config(config_file: str | None = None, **values: Any) -> AdaptConfig:
    """defaults < YAML file < ``values`` -> a validated :class:`AdaptConfig`; an unknown name or a bad value is an
    error naming the flag or the YAML line."""
    where: dict[str, str | None] = {}
    merged: dict[str, Any] = {}
    if config_file:
        raw, lines = load_yaml(config_file)
        for k, v in raw.items():
            merged[k], where[k] = v, f"{config_file}:{lines.get(k, '?')}"
    for k, v in values.items():
        merged[k], where[k] = v, None
    coerced: dict[str, Any] = {}
    for name, v in merged.items():
        o = ADAPT_OPTIONS.get(name)
        if o is None:
            loc = where.get(name)
            msg = f"unknown option {name!r}; known: {', '.join(ADAPT_OPTIONS)}"
            raise EmbtuneError(f"{loc}: {msg}" if loc else f"--{name.replace('_', '-')}: {msg}")
        try:
            coerced[name] = o.coerce(v)
        except ValueError as e:
            raise error(o, str(e), where.get(name)) from None
        problem = o.problem(coerced[name])
        if problem:
            raise error(o, problem, where.get(name))
    return AdaptConfig(**coerced).validate()


def corpus_file(path: str) -> Path:
    """``--corpus``: a file, or a BEIR folder's ``corpus.jsonl``."""
    p = Path(path)
    if p.is_dir():
        if (p / "corpus.jsonl").is_file():
            return p / "corpus.jsonl"
        raise EmbtuneError(f"--corpus {path}: a folder without corpus.jsonl (expected a BEIR folder or a .txt/.jsonl/"
                           ".tsv file)")
    if not p.is_file():
        raise EmbtuneError(f"--corpus {path}: not found (expected a .txt, .jsonl or .tsv file, or a BEIR folder)")
    return p
