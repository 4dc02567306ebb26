"""Evaluation during training (``--eval-steps``): STS-B dev Spearman (and SICK-R dev), alignment and
uniformity, from one encoding pass over the dev sentences. Like the official SimCSE code, the best
checkpoint is chosen on STS-B dev (never on a test split)."""

from __future__ import annotations

import numpy as np

from embtune.evaluation.align_uniform import align_uniform_from
from embtune.evaluation.sts import _cosine, correlations, load_sts

#: metrics where lower is better
LOWER_IS_BETTER = {"alignment", "uniformity"}
DEV_METRICS = ("stsb_dev_spearman", "sickr_dev_spearman", "alignment", "uniformity")


def evaluate_dev(encoder, sickr: bool = False, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
    sets = {"stsb": load_sts("stsb", "dev")}
    if sickr:
        sets["sickr"] = load_sts("sickr", "dev")
    sents = list(dict.fromkeys(s for d in sets.values() for s in (*d.sent1, *d.sent2)))
    emb = encoder.encode(sents, batch_size=batch_size, precision=precision)
    row = {s: i for i, s in enumerate(sents)}
    out: dict[str, float] = {}
    for name, d in sets.items():
        pred = _cosine(emb[[row[s] for s in d.sent1]], emb[[row[s] for s in d.sent2]])
        out[f"{name}_dev_spearman"] = correlations(pred, d.scores)[0]
    au = align_uniform_from(sets["stsb"], sents, emb)
    out["alignment"], out["uniformity"] = au["alignment"], au["uniformity"]
    return out


def is_better(metric: str, new: float, best: float | None) -> bool:
    if best is None or not np.isfinite(best):
        return True
    return new < best if metric in LOWER_IS_BETTER else new > best
