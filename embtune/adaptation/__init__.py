"""``embtune adapt``: one command from the user's corpus (and whatever labels they have) to a model that is
measurably better on their own task.

    read and check the inputs -> the selection task (selection.py) -> the plan for the data given
    (recipes.py) -> the teacher's pass over the corpus, once (cached by content) -> each stage an ordinary
    ``embtune train`` run from the previous stage's returned model, selected on the task that measures
    what it trains (``Adaptation.selection_of``), step 0 a candidate -> OUTPUT/model, the kept model -> the report (report.py): before/after on the user's
    held-out tasks and the STS table, which stage and checkpoint was kept, wall time per stage.

A failing stage leaves the earlier stages' runs and a report saying which stage failed.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from embtune.adaptation.config import AdaptConfig, corpus_file, make_adapt_config
from embtune.adaptation.recipes import STAGES, Stage, plan
from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

__all__ = ["adapt", "AdaptConfig", "make_adapt_config", "STAGES", "plan"]

#: what a stage run keeps out of OUTPUT/model (the training record stays in the stage's own folder)
_RUN_ONLY = ("checkpoints", "tensorboard", "eval_history.jsonl", "dev_split.tsv", "align_uniform.png")


class StageFailed(EmbtuneError):
    pass


def adapt(model: str | None = None, corpus: str | None = None, output: str | None = None, *,
          config: AdaptConfig | None = None, overwrite: bool = False, progress: bool = False, **options) -> dict:
    """Adapt ``model`` to the domain of ``corpus``; returns the report (also written to ``output``).

    Options are :class:`AdaptConfig`'s fields (``pairs=``, ``scored=``, ``classes=``, ``teacher=``,
    ``eval_task=``, ``steps=``, ...), or pass a ready ``config``."""
    if config is None:
        given = {k: v for k, v in dict(model=model, corpus=corpus, output=output).items() if v is not None}
        config = make_adapt_config(**given, **options)
    elif options or model or corpus or output:
        raise EmbtuneError("adapt: pass either config= or options, not both")
    return Adaptation(config, overwrite=overwrite, progress=progress).run()


def _lock(out: Path) -> Path:
    lock = out / ".adapt.lock"
    if lock.is_file():
        try:
            pid = int(lock.read_text().strip() or 0)
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except (ValueError, ProcessLookupError, PermissionError):
            alive = False
        if alive:
            raise EmbtuneError(f"--output {out}: in use by another embtune adapt (process {pid}); wait for it or "
                               "choose another folder")
    return lock


def check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise EmbtuneError(f"--output {out}: exists and is not a folder")
    if out.is_dir():
        _lock(out)
        if any(p.name != ".adapt.lock" for p in out.iterdir()):
            if not overwrite:
                raise EmbtuneError(f"--output {out}: the folder is not empty (an earlier adapt?); choose another "
                                   "folder or pass --overwrite to clear it")
            here = Path.cwd().resolve()
            if out.resolve() == here or out.resolve() in here.parents:
                raise EmbtuneError(f"--output {out}: --overwrite would clear the working folder; choose a run folder")


class Adaptation:
    def __init__(self, cfg: AdaptConfig, overwrite: bool = False, progress: bool = False):
        self.cfg, self.overwrite, self.progress = cfg.validate(), overwrite, progress
        self.out = Path(cfg.output)
        self.stage_records: list[dict] = []

    # ---- pieces -------------------------------------------------------------------------------
    def have(self) -> set[str]:
        c = self.cfg
        return {k for k, v in dict(corpus=c.corpus, pairs=c.pairs, scored=c.scored, classes=c.classes,
                                   teacher=c.teacher).items() if v}

    def precision(self) -> str:
        from embtune.precision import resolve_precision
        from embtune.utils import resolve_device

        return resolve_precision(self.cfg.precision, resolve_device(self.cfg.device), what="--precision")

    def load(self, name: str, flag: str, backend: str = "torch"):
        from embtune.encoders import load_encoder

        try:
            return load_encoder(name, device=self.cfg.device if backend == "torch" else "cpu",
                                trust_remote_code=self.cfg.trust_remote_code,
                                allow_pickle=self.cfg.allow_pickle_weights, backend=backend)
        except EmbtuneError as e:
            raise EmbtuneError(f"--{flag} {name}: cannot be loaded ({e})") from e
        except (OSError, ValueError, KeyError) as e:  # a folder transformers cannot read (another family, no config)
            raise EmbtuneError(f"--{flag} {name}: cannot be loaded as a text encoder ({type(e).__name__}: {e})") from e

    def stage_config(self, stage: Stage, index: int, start: str, inputs, precision: str, *, train_file=None,
                     selection: str | None = None, output=None, steps: int | None = None, select: bool = True,
                     guard: bool = True, evaluate: bool = True, **extra):
        """The ``embtune train`` config of a stage. The keywords are for cross-fitting (crossfit.py): a fold's
        training file and selection task, the run's steps, a run that only records (``select=False``: no
        confidence test, no guard) or one that does not evaluate (the refit)."""
        from embtune.config import make_config

        c = self.cfg
        train_file = train_file or inputs.train_files[stage.data]
        steps = steps or c.steps or stage.steps_for(inputs.rows(stage.data), c.batch_size)
        every = max(1, steps // c.evaluations)
        metric, guard_metric, tolerance = self.selection_of(stage, inputs)
        tasks = ",".join(t for t in (selection or inputs.selection, inputs.guard) if t)
        values = dict(model=start, objective=stage.objective, train_file=str(train_file),
                      output=str(output or self.out / "stages" / f"{index}-{stage.name}"), max_steps=steps,
                      **(dict(eval_steps=every, eval_task=tasks, metric_for_best=metric,
                              select_confidence=c.select_confidence if select else 0.0) if evaluate else {}),
                      batch_size=c.batch_size,
                      max_seq_length=c.max_seq_length, lr=c.lr or stage.lr, seed=c.seed, precision=precision,
                      device=c.device, trust_remote_code=c.trust_remote_code,
                      allow_pickle_weights=c.allow_pickle_weights, **stage.settings)
        if stage.teacher:
            values.update(teacher=c.teacher, teacher_backend=self.backend)
        if guard_metric and guard and select and evaluate:
            values.update(guard_metric=guard_metric, guard_tolerance=tolerance)
            if stage.data != "corpus":  # the labels may overrule the teacher, never the teacher the labels
                values["guard_waiver"] = c.guard_waiver
            else:  # the labels veto the corpus stage on a loss they show, not on one within their noise
                values["guard_confidence"] = c.label_guard_confidence
        if c.watch and evaluate:
            values["watch_task"] = c.eval_task
        values.update(extra)
        return make_config(**values)

    def selection_of(self, stage: Stage, inputs) -> tuple[str, str | None, float]:
        """(metric that selects, guard metric, its tolerance) of a stage.

        With labels and a teacher, each stage is selected on the task that measures what it trains: the corpus
        stage on agreement with the teacher (300 held-out corpus texts), guarded by the labelled selection metric
        (``--label-guard``; a veto needs the loss shown with ``--label-guard-confidence``: with a zero
        tolerance on a point estimate, a checkpoint of no real effect on the labels would be vetoed half the
        time); a labelled stage on the labels, guarded by agreement (``--teacher-guard``) unless its
        labelled gain has bootstrap confidence ≥ ``--guard-waiver`` — the guard catches drift that a small labelled
        split cannot see; a gain that split is near-certain of is the user's own evidence, and on TwitterPara the
        guard vetoed every CoSENT checkpoint of a +5 AP gain on 831 selection pairs. Selecting
        the corpus stage on the labels too made the next stage's bar that split's maximum over the first stage's
        checkpoints — an inflated value (the winner's curse) that the labelled stage then had to beat with
        confidence: on the forums it was kept once in four (docs/domains-adapt.md)."""
        if not inputs.guard:  # one task: labels, or agreement when there are none
            return inputs.metric, None, 0.0
        if stage.data == "corpus":
            return "agree/ndcg@10", inputs.metric, self.cfg.label_guard
        return inputs.metric, "agree/ndcg@10", self.cfg.teacher_guard

    def evaluate(self, encoder, tasks: list, precision: str) -> dict:
        """The user's held-out tasks and (with ``sts``) the STS table, for the report."""
        from embtune.evaluation.sts import STS_TASKS
        from embtune.evaluation.suite import run_evaluation
        from embtune.evaluation.tasks import evaluate_tasks

        out: dict = {}
        t0 = time.perf_counter()
        if tasks:
            out["tasks"] = evaluate_tasks(tasks, encoder, precision=precision)
        if self.cfg.sts:
            r = run_evaluation(encoder, list(STS_TASKS), precision=precision)
            out["sts"] = {t: v["spearman"] for t, v in r["tasks"].items()}
            out["sts_avg"] = r["avg"]
        out["seconds"] = round(time.perf_counter() - t0, 1)
        return out

    # ---- the flow -----------------------------------------------------------------------------
    def run(self) -> dict:
        from embtune.adaptation.report import write_report
        from embtune.adaptation.selection import cross_fitted, prepare_inputs, read_inputs
        from embtune.evaluation.tasks import load_task, parse_tasks
        from embtune.utils import library_versions, seed_everything, write_json

        cfg, out = self.cfg, self.out
        t_all = time.perf_counter()
        check_output(out, self.overwrite)
        corpus = corpus_file(cfg.corpus)
        stages = plan(self.have(), [s.strip() for s in cfg.stages.split(",")] if cfg.stages else None)
        read = read_inputs(cfg, corpus)  # every input checked before anything is cleared or computed
        folded = cross_fitted(cfg, read, stages)
        held_out = [load_task(t, purpose="report") for t in parse_tasks(cfg.eval_task)] if cfg.eval_task else []
        precision = self.precision()
        seed_everything(cfg.seed)
        self.backend = cfg.teacher_backend
        teacher = self.load(cfg.teacher, "teacher", self.backend) if cfg.teacher else None
        start = self.load(cfg.model, "model")
        if out.is_dir():
            for child in out.iterdir():
                if child.name != ".adapt.lock":
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        out.mkdir(parents=True, exist_ok=True)
        lock = out / ".adapt.lock"
        lock.write_text(str(os.getpid()))
        report: dict = {"config": cfg.to_dict(), "precision": precision, "plan": [s.name for s in stages],
                        "stages": self.stage_records, "status": "running"}
        try:
            write_json(out / "adapt_config.json", cfg.to_dict())
            write_json(out / "versions.json", library_versions())
            t0 = time.perf_counter()
            lookup = self.teacher_pass(teacher, read, precision) if teacher is not None else None
            inputs = prepare_inputs(cfg, read, out / "data", lookup, folded)
            report.update(inputs=inputs.counts, selection={"task": inputs.selection, "kind": inputs.selection_kind,
                                                           "metric": inputs.metric, "guard": inputs.guard or None})
            if lookup is not None:
                self.store_stage_targets(teacher, stages, inputs)
            self.stage_records.append({"stage": "prepare", "seconds": round(time.perf_counter() - t0, 1)})
            t0 = time.perf_counter()
            report["before"] = self.evaluate(start, held_out, precision)
            self.stage_records.append({"stage": "evaluate the starting model", "seconds": round(time.perf_counter() - t0, 1)})
            del start
            current = cfg.model
            for i, stage in enumerate(stages, 1):
                current = self.run_stage(i, stage, current, inputs, precision)
            self.keep(current)
            t0 = time.perf_counter()
            report["after"] = self.evaluate(self.load(str(out / "model"), "output"), held_out, precision)
            self.stage_records.append({"stage": "evaluate the adapted model", "seconds": round(time.perf_counter() - t0, 1)})
            report["status"] = "done"
        except EmbtuneError as e:
            report["status"] = "failed"
            report["error"] = str(e)
            raise
        finally:
            report["seconds"] = round(time.perf_counter() - t_all, 1)
            write_report(out, report)
            lock.unlink(missing_ok=True)
        return report

    def teacher_pass(self, teacher, read, precision: str):
        """The teacher's embeddings of every distinct text the run may ask for — the corpus and the labelled
        files' texts — in one pass (cached by content: a second run reads them); returns ``texts -> normalized
        embeddings`` over those texts. The teacher never runs during training: each stage's texts are stored
        under their own cache key by :meth:`store_stage_targets`."""
        import numpy as np
        import torch

        from embtune.objectives.distill import TeacherCache

        t0 = time.perf_counter()
        texts = list(read.texts)
        for data in (read.pairs, read.scored, read.classes):
            if data is not None:
                texts += [t for ex in data.examples for t in ex]
        texts = list(dict.fromkeys(texts))
        cache = TeacherCache(self.cfg.teacher, allow_pickle=self.cfg.allow_pickle_weights, precision=precision,
                             backend=self.backend)
        emb = cache.embeddings(texts, encoder=teacher).float()
        self.teacher_cache, self.teacher_rows = cache, {t: i for i, t in enumerate(texts)}
        self.teacher_emb = emb
        unit = torch.nn.functional.normalize(emb, dim=-1).numpy()
        self.stage_records.append({"stage": "teacher pass", "texts_encoded": cache.forwards, "texts": len(texts),
                                   "precision": cache.pass_precision(teacher), "backend": self.backend,
                                   "seconds": round(time.perf_counter() - t0, 1)})

        def lookup(batch: list[str]) -> np.ndarray:
            return unit[[self.teacher_rows[t] for t in batch]]

        return lookup

    def store_stage_targets(self, teacher, stages: list[Stage], inputs) -> None:
        """Each teacher stage's texts, in the order its objective asks for them, sliced from the one pass."""
        from embtune.data import read_train_file

        for stage in stages:
            if not stage.teacher:
                continue
            files = [inputs.train_files[stage.data]]
            if stage.data == inputs.cross_fit_data:  # each fold run trains on its own file
                files += [train for train, _ in inputs.folds]
            for path in files:
                data = read_train_file(path)
                texts = [ex[0] for ex in data.examples] if stage.data == "corpus" else \
                    list(dict.fromkeys(t for ex in data.examples for t in ex))
                missing = sum(t not in self.teacher_rows for t in texts)
                if missing:  # a text the training file holds differently from the input (should not happen)
                    logger.warning("stage %s (%s): %d text(s) not in the teacher pass; the stage runs the teacher "
                                   "itself", stage.name, path.name, missing)
                    continue
                self.teacher_cache.put(texts, self.teacher_emb[[self.teacher_rows[t] for t in texts]], teacher)

    def run_stage(self, index: int, stage: Stage, start: str, inputs, precision: str) -> str:
        from embtune.training import train

        if inputs.folds and stage.data == inputs.cross_fit_data:
            from embtune.adaptation.crossfit import run_cross_fit

            return run_cross_fit(self, index, stage, start, inputs, precision)
        t0 = time.perf_counter()
        cfg = self.stage_config(stage, index, start, inputs, precision)
        rec = {"stage": stage.name, "objective": stage.objective, "what": stage.what, "from": start,
               "output": cfg.output, "steps": cfg.max_steps, "eval_steps": cfg.eval_steps}
        self.stage_records.append(rec)
        try:
            m = train(cfg, progress=self.progress, overwrite=True)
        except EmbtuneError as e:
            rec["status"] = "failed"
            rec["error"] = str(e)
            rec["seconds"] = round(time.perf_counter() - t0, 1)
            kept = f"; the model before it is {start}" if index > 1 else ""
            raise StageFailed(f"stage {index} ({stage.name}) failed: {e}{kept}") from e
        watched = [f"{t.name}/{next(iter(t.metrics))}" for t in cfg.watch_specs()]
        rec.update(status="done", selected_step=m["selected_step"], start_value=m["start_value"],
                   best_value=m["best_value"], metric=m["best_metric"], guard=cfg.guard_metric,
                   train_seconds=m["train_seconds"],
                   evaluations=[{"step": h["step"], "value": h[m["best_metric"]],
                                 **({"confidence": h["selection_confidence"]} if "selection_confidence" in h else {}),
                                 **({"guard": h[cfg.guard_metric]} if cfg.guard_metric in h else {}),
                                 **({"guard_waived": True} if h.get("guard_waived") else {}),
                                 **({"held_out": {k: h[k] for k in watched if k in h}} if watched else {})}
                                for h in m["evaluations"]],
                   seconds=round(time.perf_counter() - t0, 1))
        logger.info("stage %d (%s): %s %.2f -> %.2f (step %s of %s kept)", index, stage.name, m["best_metric"],
                    m["start_value"], m["best_value"], m["selected_step"], m["steps"])
        return cfg.output

    def keep(self, run: str) -> None:
        """OUTPUT/model: the last stage's returned model (every stage returns its best, the start included)."""
        src, dst = Path(run), self.out / "model"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*_RUN_ONLY))
