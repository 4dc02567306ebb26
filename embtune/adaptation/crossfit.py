"""Cross-fitted selection of a labelled stage (``embtune adapt --cross-fit K``, default 2).

A held-out split of a user's labels is small: 20% of a forum's ~350 tuning queries is ~73, on which the standard
error of a paired nDCG@10 difference is ~1.3 points, so a real +1.5 gain is seen with 0.9 confidence less often
than not (docs/domains-adapt-avx2.md: Android's pairs-only checkpoints had confidence 0.39–0.73 on the selection
split while they were +1.5 on the evaluation half). Cross-fitting lets every labelled query select:

1. the labelled rows are cut into K folds by group (:func:`embtune.data.dev_split.group_folds`);
2. K ordinary ``embtune train`` runs of the stage, run ``j`` trained on the rows outside fold ``j`` and scored on
   fold ``j`` (ranking the whole corpus) at step 0 and at the stage's evenly spaced steps, recording per-item
   scores (``--save-item-scores``); the guard task, when there is one, is scored at the same evaluations;
3. at each evaluation the folds are pooled: the metric over every item (each item scored by the model that
   never trained on it; for Spearman or AP, the folds' values weighted by their sizes), its paired-bootstrap
   confidence against the start stratified by fold
   (:func:`embtune.training.selection.pooled_gain_confidence`), the guard as the folds' mean; the rule is the
   one a single run applies (:func:`embtune.training.selection.eligible`), the start always a candidate;
4. if an evaluation after step 0 is chosen, the stage is trained once more on **every** row for the same share of
   its passes over the data (the refit of cross-validation: Hastie, Tibshirani & Friedman, *Elements of
   Statistical Learning* §7.10; cross-fitting as in Chernozhukov et al. 2018) — a schedule of its own, with its
   own warm-up and linear decay, as one retrains with a cross-validated epoch count (the fold checkpoint at step
   s of T was still at a share (T − s)/T of the peak rate) — and the guard is checked on that model too;
   otherwise the stage returns its start.

What the evidence is about: the recipe (this objective, this many passes, from this start) on queries it did not
train on, measured with K× the items of one split, not the refit model itself, which trains on every row and so
has no held-out labels left. The fold models train on (K−1)/K of the rows, the refit on all, so the evidence is
drawn from weaker models than the one returned. The cost: K training runs with their evaluations, then one
refit whose only evaluation is the guard's (labelled stages are a few dozen steps; the evaluations, each a
corpus encoding, dominate). It applies when one stage trains on the labels and is the plan's last
(:func:`embtune.adaptation.selection.cross_fitted`): a later stage would be selected on rows the refit trained on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from embtune.adaptation.recipes import Stage
from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)


def _rows(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for ln in f if ln.strip()) - 1  # a header row


def pool_evaluations(runs: list[tuple[dict, list]], metric: str, guard_metric: str | None, watched: list[str], *,
                     select_confidence: float, guard_tolerance: float, guard_waiver: float,
                     seed: int) -> tuple[list[dict], int]:
    """The folds' evaluations pooled, one record per evaluation (step, value, confidence, guard, eligibility,
    the folds' own values), and the index of the one to keep: the highest pooled value among the eligible, the
    earliest on a tie (the start, index 0, always eligible). ``runs``: per fold, (its train metrics, its
    ``read_item_scores``). Every selection metric of adapt is higher-is-better."""
    from embtune.training.selection import eligible, pooled_gain_confidence, pooled_value

    steps = [[h["step"] for h in m["evaluations"]] for m, _ in runs]
    item_steps = [[st for st, _ in items] for _, items in runs]
    if any(s != steps[0] for s in steps) or any(s != steps[0] for s in item_steps):
        raise EmbtuneError(f"cross-fit: the fold runs evaluated at different steps ({steps}, items at {item_steps})")
    starts = [items[0][1] for _, items in runs]
    out: list[dict] = []
    best = 0
    for e, step in enumerate(steps[0]):
        cands = [items[e][1] for _, items in runs]
        ev: dict = {"step": step, "value": pooled_value(cands),
                    "folds": [m["evaluations"][e][metric] for m, _ in runs]}
        conf = None
        if e:
            conf = ev["confidence"] = pooled_gain_confidence(starts, cands, True, seed=seed)
        lost = None
        if guard_metric:
            ev["guard"] = sum(m["evaluations"][e][guard_metric] for m, _ in runs) / len(runs)
            lost = out[0]["guard"] - ev["guard"] if e else None
        ok, waived = eligible(conf, lost, select_confidence=select_confidence, guard_tolerance=guard_tolerance,
                              guard_waiver=guard_waiver)
        ev["eligible"] = ok
        if waived:
            ev["guard_waived"] = True
        held = {k: sum(m["evaluations"][e][k] for m, _ in runs) / len(runs) for k in watched
                if all(k in m["evaluations"][e] for m, _ in runs)}
        if held:
            ev["held_out"] = held  # the fold models' mean, for the record
        out.append(ev)
        if e and ok and ev["value"] > out[best]["value"]:
            best = e
    return out, best


def run_cross_fit(ad, index: int, stage: Stage, start: str, inputs, precision: str) -> str:
    """Run ``stage`` with cross-fitted selection; returns the folder of the model it returns (the refit, or the
    start when no evaluation after step 0 was eligible). ``ad``: the :class:`embtune.adaptation.Adaptation`."""
    from embtune.adaptation import StageFailed
    from embtune.evaluation.tasks import evaluate_tasks, load_task, parse_tasks
    from embtune.training import train
    from embtune.training.selection import eligible, read_item_scores

    c = ad.cfg
    t0 = time.perf_counter()
    root = ad.out / "stages" / f"{index}-{stage.name}"
    metric, guard_metric, tolerance = ad.selection_of(stage, inputs)
    waiver = c.guard_waiver if stage.data != "corpus" else 0.0
    fold_steps = c.steps or stage.steps_for(min(_rows(f) for f, _ in inputs.folds), c.batch_size)
    rec: dict = {"stage": stage.name, "objective": stage.objective, "what": stage.what, "from": start,
                 "output": str(root), "steps": fold_steps, "eval_steps": max(1, fold_steps // c.evaluations),
                 "cross_fit": {"folds": len(inputs.folds)}}
    ad.stage_records.append(rec)
    try:
        runs, train_seconds = [], 0.0
        for j, (train_file, selection) in enumerate(inputs.folds, 1):
            cfg = ad.stage_config(stage, index, start, inputs, precision, train_file=train_file, selection=selection,
                                  output=root / f"fold-{j}", steps=fold_steps, select=False, save_item_scores=True)
            logger.info("stage %d (%s), cross-fit fold %d of %d: trains on %s, scored on %s", index, stage.name, j,
                        len(inputs.folds), Path(train_file).name, selection)
            m = train(cfg, progress=ad.progress, overwrite=True)
            train_seconds += m["train_seconds"]
            runs.append((m, read_item_scores(Path(cfg.output) / "eval_items.jsonl")))
        watched = [f"{t.name}/{next(iter(t.metrics))}" for t in cfg.watch_specs()]
        evaluations, best = pool_evaluations(runs, metric, guard_metric, watched,
                                             select_confidence=c.select_confidence, guard_tolerance=tolerance,
                                             guard_waiver=waiver, seed=c.seed)
        kept = best
        if best:
            share = evaluations[best]["step"] / fold_steps
            all_steps = c.steps or stage.steps_for(inputs.rows(stage.data), c.batch_size)
            refit_steps = max(1, round(share * all_steps))
            cfg = ad.stage_config(stage, index, start, inputs, precision, output=root / "refit", steps=refit_steps,
                                  evaluate=False)
            logger.info("stage %d (%s): step %d of %d on the folds chosen (pooled %s %.2f -> %.2f, confidence %.3f); "
                        "refit on every row for %d steps", index, stage.name, evaluations[best]["step"], fold_steps,
                        metric, evaluations[0]["value"], evaluations[best]["value"], evaluations[best]["confidence"],
                        refit_steps)
            m = train(cfg, progress=ad.progress, overwrite=True)
            train_seconds += m["train_seconds"]
            refit: dict = {"steps": refit_steps, "share_of_schedule": round(share, 4), "output": cfg.output}
            if guard_metric:  # the refit model is the one returned: the guard holds for it too
                task = load_task(parse_tasks(inputs.guard)[0])
                value = evaluate_tasks([task], ad.load(cfg.output, "model"), precision=precision)[guard_metric]
                ok, waived = eligible(evaluations[best]["confidence"], evaluations[0]["guard"] - value,
                                      select_confidence=0.0, guard_tolerance=tolerance, guard_waiver=waiver)
                refit.update(guard=value, guard_ok=ok, **({"guard_waived": True} if waived else {}))
                if not ok:
                    logger.info("stage %d (%s): the refit model's %s %.2f is %.2f below the start's %.2f (tolerance "
                                "%.2f): the stage keeps its start", index, stage.name, guard_metric, value,
                                evaluations[0]["guard"] - value, evaluations[0]["guard"], tolerance)
                    kept = 0
            rec["refit"] = refit
    except EmbtuneError as e:
        rec.update(status="failed", error=str(e), seconds=round(time.perf_counter() - t0, 1))
        before = f"; the model before it is {start}" if index > 1 else ""
        raise StageFailed(f"stage {index} ({stage.name}) failed: {e}{before}") from e
    rec.update(status="done", selected_step=evaluations[kept]["step"], start_value=evaluations[0]["value"],
               best_value=evaluations[kept]["value"], metric=metric, guard=guard_metric,
               train_seconds=round(train_seconds, 3), evaluations=evaluations,
               seconds=round(time.perf_counter() - t0, 1))
    logger.info("stage %d (%s), cross-fitted over %d folds: %s %.2f -> %.2f (step %s of %s kept%s)", index,
                stage.name, len(runs), metric, rec["start_value"], rec["best_value"], rec["selected_step"], fold_steps,
                f"; refit {rec['refit']['steps']} steps on every row" if kept else "")
    if kept:
        rec["output"] = rec["refit"]["output"]
        return rec["output"]
    if Path(start).is_dir():
        rec["output"] = start
        return start
    keep = root / "start"  # a built-in name or hub id: the stage's returned model is a folder like any other
    ad.load(start, "model").save(keep)
    rec["output"] = str(keep)
    return str(keep)
