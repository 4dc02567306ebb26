"""Evaluation: SentEval-exact STS and reports."""

from embtune.evaluation.sts import STS_TASKS, evaluate_sts, load_sts

__all__ = ["STS_TASKS", "evaluate_sts", "load_sts"]
