"""The recipes of ``embtune adapt``: which training stages run for the data a user has.

A stage is one ``embtune train`` run — an objective on one of the user's inputs — with own-task selection:
it starts from the previous stage's returned model, is evaluated on the selection task at step 0 (that
model is a candidate) and at evenly spaced steps, and returns its best checkpoint. The chain is therefore
never worse on the selection metric than the model it started from.

The plan is the order the domain benchmark measured best (``python -m bench.domains``, ``docs/domains.md``):
unlabeled text with a teacher first (the corpus is the largest input and the teacher's ranking of it the
strongest signal), then the labelled data from the distilled model — the TSDAE paper's order (in-domain
unsupervised first, then the labels) and the order of the TwitterPara winner (distillation, then CoSENT).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embtune.errors import EmbtuneError


@dataclass(frozen=True)
class Stage:
    name: str
    objective: str
    #: the input it trains on: "corpus", "pairs", "scored" or "classes"
    data: str
    teacher: bool  # whether it needs --teacher
    steps: int  # a corpus stage's steps; a labelled stage's at most (its epochs decide, below)
    lr: float
    what: str
    #: objective options (and generic ones, e.g. batch_size) of this stage
    settings: dict[str, Any] = field(default_factory=dict)
    #: labelled stages: passes over the training rows (sentence-transformers' standard recipe: 3); a few hundred
    #: pairs are ~10 batches, so a fixed step count would be dozens of epochs
    epochs: int | None = None

    def steps_for(self, rows: int, batch_size: int) -> int:
        if self.epochs is None:
            return self.steps
        return max(1, min(self.steps, self.epochs * -(-rows // batch_size)))


STAGES: dict[str, Stage] = {s.name: s for s in (
    # distill: 400 steps. Longer is not better on the user's task: 1,200 steps on Mathematica (corpus alone)
    # raised agreement with the teacher at every evaluation after step 300 (66.3 -> 70.0) while held-out nDCG@10 peaked at
    # step 600 (+0.69) and ended at +0.23 (docs/domains-adapt-avx2.md).
    Stage("distill", "listwise-distill", "corpus", True, 400, 1e-4,
          "the teacher's ranking of each corpus text's neighbours, listwise KL (objectives/listwise_distill.py)",
          {"cluster_size": 8, "student_neighbours": 3}),
    Stage("guided", "guided", "pairs", True, 1000, 3e-5,
          "(query, positive) pairs, in-batch negatives the teacher marks as false negatives removed "
          "(objectives/guided_contrastive.py)", epochs=3),
    Stage("pairs", "sup-simcse", "pairs", False, 1000, 3e-5,
          "(query, positive) pairs, supervised SimCSE with in-batch negatives", epochs=3),
    Stage("cosent", "cosent", "scored", False, 1000, 3e-5, "scored or 0/1 pairs, CoSENT", epochs=3),
    Stage("supcon", "supcon", "classes", False, 1000, 3e-5, "class-labelled texts, supervised contrastive", epochs=3),
)}


def plan(have: set[str], stages: list[str] | None = None) -> list[Stage]:
    """The stages for the inputs in ``have`` (any of corpus, teacher, pairs, scored, classes), or the ones
    named by ``--stages`` (each checked against the inputs it needs)."""
    if stages:
        chosen = []
        for name in stages:
            if name not in STAGES:
                raise EmbtuneError(f"--stages: unknown stage {name!r}; expected some of {', '.join(STAGES)}")
            s = STAGES[name]
            if s.data not in have:
                raise EmbtuneError(f"--stages {name}: trains on --{s.data}, which was not given")
            if s.teacher and "teacher" not in have:
                raise EmbtuneError(f"--stages {name}: needs --teacher")
            chosen.append(s)
        return chosen
    out: list[Stage] = []
    if "teacher" in have:
        out.append(STAGES["distill"])
    if "pairs" in have:
        out.append(STAGES["guided"] if "teacher" in have else STAGES["pairs"])
    if "scored" in have:
        out.append(STAGES["cosent"])
    if "classes" in have:
        out.append(STAGES["supcon"])
    if not out:
        raise EmbtuneError("adapt: with --corpus alone nothing can show that a model got better on your task; give "
                           "a --teacher (e.g. mpnet-base) to distil from, or labels (--pairs, --scored or --classes)")
    return out
