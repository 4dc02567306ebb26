"""The training loop shared by every objective.

read data -> tokenize once -> duplicate-free global batches (sharded over processes) -> embed all
views in one forward pass (or in chunks with gradient caching) -> gather embeddings across
processes -> objective loss -> sum gradients over processes -> AdamW with linear decay (the
Hugging Face Trainer defaults the official SimCSE code runs with) -> evaluate / checkpoint ->
save a sentence-transformers folder with the resolved config, library versions and metrics.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from embtune.config import TrainConfig
from embtune.data import read_train_file
from embtune.encoders import TransformerEncoder, load_encoder
from embtune.encoders.base import Encoder, autocast
from embtune.encoders.dropout import use_fast_dropout
from embtune.encoders.layer_cut import LayerSearch, first_layers, search_layers, spread_layers
from embtune.errors import EmbtuneError
from embtune.data.dev_split import DevSplit, dev_task, hold_out, write_held_out
from embtune.evaluation.tasks import LoadedTask, evaluate_tasks, load_task
from embtune.objectives import Batch, Objective, get_objective_class
from embtune.objectives.mlm import AuxiliaryMLM
from embtune.precision import resolve_precision
from embtune.training import checkpoint as ckpt
from embtune.training.anchor import AnchorRegularizer
from embtune.training.distributed import DistContext
from embtune.training.grad_cache import grad_cache_step
from embtune.utils import library_versions, resolve_device, seed_everything, write_json

logger = logging.getLogger(__name__)


class NonFiniteLossError(EmbtuneError):
    pass


class Interrupted(EmbtuneError):
    pass


def disable_dropout(module: torch.nn.Module) -> None:
    """Turn off every dropout: nn.Dropout modules and attention dropout held as a float."""
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        for attr in ("dropout_prob", "attention_dropout"):
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, 0.0)


def step_rng(seed: int, step: int) -> random.Random:
    return random.Random(seed * 1_000_003 + step)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def embed_views(encoder: Encoder, views: list[list[list[int]]], device: torch.device, precision: str,
                one_pass: bool | None = None) -> torch.Tensor:
    """Embed V views of N sequences -> (V, N, d).

    Every row draws its own dropout mask however the rows are grouped into passes, so the two
    views of unsup SimCSE differ exactly as two separate passes would (SimCSE §3).

    ``one_pass`` (default: on an accelerator, unless it would pad to over 1.5x the positions of the
    sorted passes — :func:`one_pass_padding_ok`): all V*N sequences in one forward pass. An accelerator
    runs a BERT-base pass over 128 short sentences in less time than the host takes to issue its
    kernels, so fewer, larger passes are faster there; a CPU is bound by the arithmetic, so there the
    V*N sequences are sorted by length and embedded in V passes of N, each padded to its own longest
    sequence: far less padding when views differ in length (premise vs hypotheses).
    """
    n_views, n = len(views), len(views[0])
    flat = [seq for view in views for seq in view]
    if one_pass is None:
        one_pass = device.type != "cpu" and one_pass_padding_ok([len(s) for s in flat], n)
    if one_pass:
        with autocast(device, precision):
            return encoder.embed_ids(flat).float().view(n_views, n, -1)
    order = sorted(range(len(flat)), key=lambda i: len(flat[i]))
    with autocast(device, precision):
        pieces = [encoder.embed_ids([flat[i] for i in order[s:s + n]]) for s in range(0, len(flat), n)]
    inverse = torch.empty(len(flat), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(flat))
    emb = torch.cat(pieces).float()[inverse.to(pieces[0].device)]
    return emb.view(n_views, n, -1)


def one_pass_padding_ok(lengths: list[int], n: int, limit: float = 1.5) -> bool:
    """Whether one pass over all sequences pads to at most ``limit`` times the positions of length-sorted
    passes of ``n`` (views of very different lengths: the sorted passes keep activation memory down)."""
    ordered = sorted(lengths)
    sorted_cells = sum(max(ordered[s:s + n]) * len(ordered[s:s + n]) for s in range(0, len(ordered), n))
    return max(lengths) * len(lengths) <= limit * sorted_cells


class EvalTracker:
    """Evaluates the eval tasks at step 0 (the starting model is a candidate) and every ``eval_steps``
    steps, logs to JSON lines and TensorBoard, keeps the best weights in memory (as the official SimCSE
    code keeps the best checkpoint) and restores them at the end: a run never returns a model worse on
    the selection metric than the one it started from."""

    def __init__(self, cfg: TrainConfig, out: Path, active: bool, tasks: list[LoadedTask] | None = None,
                 metric: str | None = None, higher_is_better: bool = True):
        self.cfg, self.out, self.active = cfg, out, active and bool(tasks)
        self.tasks = tasks or []
        self.metric, self.higher = metric, higher_is_better
        self.history: list[dict] = []
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        #: the starting model's per-item scores on the selection metric (training/selection.py)
        self.confidence = getattr(cfg, "select_confidence", 0.0)
        self.start_items = None
        #: --guard-metric: (full name, higher is better) of a metric a kept checkpoint may not lose much on
        self.guard = None
        if getattr(cfg, "guard_metric", None) and self.tasks:
            from embtune.evaluation.tasks import resolve_metric

            self.guard = resolve_metric(cfg.guard_metric, [t.spec for t in self.tasks])
        self.tb = _tensorboard(out) if active else None

    def log_loss(self, step: int, loss: float, lr: float) -> None:
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss, step)
            self.tb.add_scalar("train/lr", lr, step)

    def is_better(self, value: float) -> bool:
        """Strictly better than the best so far (a tie keeps the earlier step, the starting model first)."""
        if self.best is None:
            return True
        if not math.isfinite(self.best):
            return math.isfinite(value)
        return value > self.best if self.higher else value < self.best

    def evaluate(self, encoder: Encoder, step: int) -> None:
        if not self.active:
            return
        t0 = time.perf_counter()
        m = evaluate_tasks(self.tasks, encoder, precision=self.cfg.precision)
        rec = {"step": step, **m, "eval_seconds": round(time.perf_counter() - t0, 3)}
        eligible = self.eligible(step, rec)
        self.history.append(rec)
        with open(self.out / "eval_history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in m.items():
                self.tb.add_scalar(f"eval/{k}", v, step)
        if self.cfg.save_item_scores:
            self.write_items(step)
        value = m[self.metric]
        if eligible and self.is_better(value):
            self.best, self.best_step = value, step
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in encoder.state_dict().items()}
        logger.info("step %d: %s (best %s %.4f at step %d)", step,
                    " ".join(f"{k}={v:.4f}" for k, v in m.items()), self.metric, self.best, self.best_step)

    def eligible(self, step: int, rec: dict) -> bool:
        """Whether a checkpoint may be kept. The starting model (the first evaluation) always may. A later one:
        with ``select_confidence``, only when a paired bootstrap over the selection items finds it better than the
        start with that confidence (recorded as ``selection_confidence``; a metric without per-item scores: no
        test); and not when ``guard_metric`` fell more than ``guard_tolerance`` below the start's value — unless
        ``guard_waiver`` is set and the selection gain's confidence reaches it (recorded as ``guard_waived``)."""
        from embtune.training.selection import eligible

        conf = self.gain_confidence(rec)
        loss, loss_conf = None, self.guard_loss_confidence(rec)
        if self.history and self.guard is not None:  # --guard-metric: may not fall far below the start's value
            name, higher = self.guard
            start, now = self.history[0][name], rec[name]
            loss = (start - now) if higher else (now - start)
            if loss > self.cfg.guard_tolerance:
                rec["guard_lost"] = loss
        ok, waived = eligible(conf, loss, select_confidence=self.confidence, guard_tolerance=self.cfg.guard_tolerance,
                              guard_waiver=getattr(self.cfg, "guard_waiver", 0.0), loss_confidence=loss_conf,
                              guard_confidence=getattr(self.cfg, "guard_confidence", 0.0))
        beyond = loss is not None and loss > self.cfg.guard_tolerance
        unshown = beyond and loss_conf is not None and loss_conf < self.cfg.guard_confidence
        if unshown:
            logger.info("step %d: %s is %.2f below the start, a loss shown with confidence %.3f < --guard-confidence "
                        "%.3f: no veto", step, self.guard[0], loss, loss_conf, self.cfg.guard_confidence)
        if waived:
            rec["guard_waived"] = True
            logger.info("step %d: %s is %.2f below the start, but the selection gain has confidence %.3f >= "
                        "--guard-waiver %.3f: the guard is waived", step, self.guard[0], loss, conf, self.cfg.guard_waiver)
        elif not ok and beyond and not unshown:
            logger.info("step %d: %s is %.2f below the start (tolerance %.2f): not eligible", step, self.guard[0],
                        loss, self.cfg.guard_tolerance)
        elif not ok:
            logger.info("step %d: better than the start with confidence %.2f < %.2f: not eligible", step, conf,
                        self.confidence)
        return ok

    def write_items(self, step: int) -> None:
        """``--save-item-scores``: the selection metric's per-item scores of this evaluation, a line of
        ``eval_items.jsonl`` (read back by :func:`embtune.training.selection.read_item_scores`)."""
        from embtune.evaluation.tasks import items_of

        items = items_of(self.tasks).get(self.metric)
        if items is None:
            raise EmbtuneError(f"--save-item-scores: {self.metric} keeps no per-item scores (retrieval, scored and "
                               "binary pair tasks do)")
        with open(self.out / "eval_items.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "metric": self.metric, "stat": items.name,
                                "arrays": [np.asarray(a, dtype=float).tolist() for a in items.arrays]}) + "\n")

    def guard_loss_confidence(self, rec: dict) -> float | None:
        """``--guard-confidence``: the paired bootstrap confidence that the start beats this evaluation on the guard
        metric (stored in ``rec["guard_loss_confidence"]``); None for the start itself, without the option, or when
        the guard metric has no per-item scores."""
        from embtune.evaluation.tasks import items_of
        from embtune.training.selection import ItemStat, gain_confidence

        if self.guard is None or not getattr(self.cfg, "guard_confidence", 0.0):
            return None
        name, higher = self.guard
        items = items_of(self.tasks).get(name)
        if not self.history:
            self.start_guard_items = items
            return None
        start = getattr(self, "start_guard_items", None)
        if items is None or start is None:
            return None
        start = ItemStat(tuple(np.asarray(a) for a in start.arrays), items.stat, items.name)
        rec["guard_loss_confidence"] = conf = gain_confidence(items, start, higher, seed=self.cfg.seed)
        return conf

    def gain_confidence(self, rec: dict) -> float | None:
        """The paired bootstrap confidence that this evaluation beats the start on the selection metric (stored
        in ``rec["selection_confidence"]``); None for the start itself, when neither ``select_confidence`` nor
        ``guard_waiver`` asks for it, or when the metric has no per-item scores."""
        from embtune.evaluation.tasks import items_of
        from embtune.training.selection import ItemStat, gain_confidence

        if not (self.confidence or getattr(self.cfg, "guard_waiver", 0.0)):
            return None
        items = items_of(self.tasks).get(self.metric)
        if not self.history:  # the starting model
            self.start_items = items
            return None
        if items is None or self.start_items is None:
            if not getattr(self, "_warned", False):
                logger.warning("--select-confidence/--guard-waiver: %s has no per-item scores; selecting on its "
                               "value alone", self.metric)
                self._warned = True
            return None
        start = ItemStat(tuple(np.asarray(a) for a in self.start_items.arrays), items.stat)
        rec["selection_confidence"] = conf = gain_confidence(start, items, self.higher, seed=self.cfg.seed)
        return conf

    def state(self) -> dict:
        start = None if self.start_items is None else [np.asarray(a).tolist() for a in self.start_items.arrays]
        guard = getattr(self, "start_guard_items", None)
        return {"history": self.history, "best": self.best, "best_step": self.best_step, "start_items": start,
                "start_guard_items": None if guard is None else [np.asarray(a).tolist() for a in guard.arrays]}

    def restore(self, state: dict, best_state: dict | None) -> None:
        from embtune.training.selection import ItemStat

        self.history, self.best, self.best_step = state["history"], state["best"], state["best_step"]
        self.best_state = best_state
        if state.get("start_items") is not None:  # the stat function comes back with the next evaluation's items
            self.start_items = ItemStat(tuple(np.asarray(a) for a in state["start_items"]))
        if state.get("start_guard_items") is not None:
            self.start_guard_items = ItemStat(tuple(np.asarray(a) for a in state["start_guard_items"]))

    def finish(self, encoder: Encoder) -> dict:
        if self.best_state is not None:
            encoder.load_state_dict(self.best_state)
            logger.info("selected the checkpoint of step %d (%s %.4f%s)", self.best_step, self.metric, self.best,
                        "; the starting model: training did not improve on it" if self.best_step == 0 else "")
        sts = next((t.spec.name for t in self.tasks if t.spec.kind == "stsb-dev"), None)
        if self.history and self.active and sts is not None:
            from embtune.evaluation.plots import plot_align_uniform

            points = [{"step": h["step"], "alignment": h[f"{sts}/alignment"], "uniformity": h[f"{sts}/uniformity"]}
                      for h in self.history]
            plot_align_uniform(points, self.out / "align_uniform.png", title=f"{self.cfg.objective} ({self.cfg.model})")
        if self.tb is not None:
            self.tb.close()
        start = next((h[self.metric] for h in self.history if h["step"] == 0), None)
        return {"best_step": self.best_step, "selected_step": self.best_step, "best_metric": self.metric,
                "best_value": self.best, "start_value": start,
                "eval_tasks": [t.spec.name for t in self.tasks], "evaluations": self.history}


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed: metrics go to JSON files only")
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


class _Signals:
    """SIGINT/SIGTERM set a flag; the loop checkpoints at the end of the step and stops."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def check_output(out: Path, resume: bool, overwrite: bool, inputs: tuple[str | None, ...] = ()) -> bool:
    """A new run needs an empty output folder (``overwrite``: one to clear), so no file of an earlier run
    — weights, checkpoints, an ONNX export, a config — is ever taken for this run's; a resumed run
    needs the folder's checkpoints. Checked first; True when the folder must be cleared, which
    :func:`clear_output` does only once the rest of the run's input has been read and checked (a run
    that fails on a bad option or file never deletes the earlier one). ``inputs``: the run's model and
    data paths; --overwrite never clears the working folder, a folder above it, or one holding an input."""
    if resume:
        if not ckpt.list_checkpoints(out):
            raise EmbtuneError(f"{out}: no complete checkpoint to resume from (train with --save-steps N to write them)")
        return False
    if out.exists() and not out.is_dir():
        raise EmbtuneError(f"--output {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise EmbtuneError(f"--output {out}: the folder is not empty (an earlier run?); choose another folder, "
                               f"continue that run with --resume {out}, or pass --overwrite to clear it")
        here, folder = Path.cwd().resolve(), out.resolve()
        if folder == here or folder in here.parents:
            raise EmbtuneError(f"--output {out}: --overwrite would clear the working folder {here}; choose a run folder")
        for given in inputs:
            path = Path(given).resolve() if given and Path(given).exists() else None
            if path is not None and (folder == path or folder in path.parents):
                raise EmbtuneError(f"--output {out}: --overwrite would clear {given}, an input of this run; "
                                   "choose another output folder")
        return True
    return False


def clear_output(out: Path) -> None:
    logger.warning("--overwrite: clearing %s", out)
    for child in out.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _keep_lines_up_to(path: Path, step: int) -> None:
    """Drop the JSON lines of ``path`` whose ``step`` is past ``step`` (a resumed run evaluates those again)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step]
    if len(kept) < len(lines):
        path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")


def save_final(encoder: Encoder, out: Path, cfg: TrainConfig) -> None:
    """Write the model into a temporary folder, then move its files into ``out``: a failure (a full
    disk) leaves the checkpoints and no half-written model beside a new config."""
    tmp = out / f".tmp-final-{time.time_ns()}"
    try:
        encoder.save(tmp, extra={"train_config": cfg.to_dict()})
        for item in sorted(tmp.iterdir()):
            target = out / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            item.replace(target)
    except OSError as e:
        raise EmbtuneError(f"could not save the final model into {out} ({e}); the checkpoints in "
                           f"{out / 'checkpoints'} are intact: free space and continue with --resume {out}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: called after every optimizer step with the trainer (logging, tests' fault injection, ...)
StepCallback = Callable[["Trainer"], None]


#: devices whose AdamW runs as one fused kernel per step, the CPU included: same update rule, same results
#: (tested); on 2 CPU cores, all-MiniLM-L6-v2, bf16, batch 64, 20 steps took 20.75 s against 21.09 s with the
#: multi-tensor ("foreach") AdamW (1.6%; docs/performance.md).
FUSED_ADAMW = ("cuda", "cpu")


class Trainer:
    def __init__(self, cfg: TrainConfig, progress: bool = True, resume: bool = False, overwrite: bool = False,
                 callbacks: list[StepCallback] | None = None, dist: DistContext | None = None):
        cfg.validate()
        self.cfg, self.progress, self.resume = cfg, progress, resume
        self.callbacks = list(callbacks or [])
        self.dist = dist or DistContext.from_env(resolve_device(cfg.device))  # ``dist``: a seam for tests
        self.device = self.dist.device
        # auto -> bf16 where native, else fp32; a non-native precision stops unless allowed. The resolved
        # value is what train_config.json records.
        cfg = self.cfg = dataclasses.replace(
            cfg, precision=resolve_precision(cfg.precision, self.device, allow_slow=cfg.allow_slow_precision))
        logger.info("precision: %s", cfg.precision)
        seed_everything(cfg.seed)
        self.out = Path(cfg.output)
        inputs = (cfg.model, cfg.train_file, getattr(cfg.objective_options, "teacher", None))
        clear = check_output(self.out, resume, overwrite, inputs) if self.dist.is_main else False

        objective_cls = get_objective_class(cfg.objective)
        self.objective: Objective = objective_cls.from_config(cfg)
        self.data = read_train_file(cfg.train_file)
        self.objective.check_columns(self.data.path, self.data.columns)
        self.dev_split: DevSplit | None = None
        dev_spec = dev_eval = None
        if cfg.dev_fraction:
            self.dev_split = hold_out(self.data, cfg.dev_fraction)
            self.data = self.dev_split.train
            dev_spec, dev_eval = dev_task(self.dev_split)
        specs, metric, higher = cfg.eval_specs(dev_split=dev_spec)
        # every eval task's files are read now: a bad one fails before the first step
        tasks = [load_task(t, dev_eval if t is dev_spec else None) for t in specs] if self.dist.is_main else []
        if self.dist.is_main:  # --watch-task: scored beside them for the record; the metric and guard never read it
            tasks += [load_task(t, purpose="report") for t in cfg.watch_specs(specs)]
        if len(self.data) < 2:
            raise EmbtuneError(f"{self.data.path}: {len(self.data)} example(s); contrastive training needs at least 2 (no negatives otherwise)")
        self.global_batch = cfg.batch_size * self.dist.world
        if len(self.data) < self.global_batch:
            logger.warning("%s has %d examples, fewer than one batch of %d: using batches of %d",
                           self.data.path, len(self.data), self.global_batch, len(self.data))
            self.global_batch = len(self.data)

        wordvec = {}
        if cfg.encoder:
            try:
                kernels = tuple(int(k) for k in cfg.kernel_sizes.split(","))
            except ValueError as e:
                raise EmbtuneError(f"kernel_sizes must be comma-separated integers, got {cfg.kernel_sizes!r}") from e
            wordvec = dict(kernel_sizes=kernels, channels=cfg.cnn_channels, dropout=cfg.word_dropout,
                           projection_dim=cfg.projection_dim, freeze_embeddings=cfg.freeze_embeddings,
                           max_words=cfg.vocab_limit)
        self.encoder = load_encoder(cfg.model, device=str(self.device), pooler=cfg.pooler,
                                    mlp_only_train=cfg.mlp_only_train, trust_remote_code=cfg.trust_remote_code,
                                    default_pooler=objective_cls.default_pooler,
                                    default_mlp_only_train=objective_cls.default_mlp_only_train,
                                    word_encoder=cfg.encoder, allow_pickle=cfg.allow_pickle_weights, mlp_init="new",
                                    **wordvec)
        self.student_cut: dict | None = None
        if cfg.student_layers is not None:
            self.cut_student(tasks, metric, higher)
        logger.info("encoder: %s pooler=%s mlp=%s", type(self.encoder).__name__, self.encoder.pooler,
                    self.encoder.mlp is not None)
        self.encoder.allow_slow_precision = cfg.allow_slow_precision  # for evaluations during training
        if not cfg.dropout:
            disable_dropout(self.encoder)
        self.objective.setup(self.encoder, self.data)
        self.objective.to(self.device)
        self.mlm = AuxiliaryMLM(self.encoder, cfg.mlm_weight, cfg.mlm_probability) if cfg.mlm_weight else None
        # everything trainable, for the optimizer and for checkpoints
        self.modules = torch.nn.ModuleDict({"encoder": self.encoder, "objective": self.objective})
        if self.mlm is not None:
            self.modules["mlm"] = self.mlm
        if cfg.dropout and self.device.type == "cpu":  # the same Bernoulli masks, drawn faster (encoders/dropout.py)
            logger.info("dropout: %d modules draw 15-bit masks", use_fast_dropout(self.modules))
        if cfg.compile:
            if not isinstance(self.encoder, TransformerEncoder):
                raise EmbtuneError("--compile applies to transformer models, not word-vector encoders")
            if cfg.mini_batch_size:  # GradCache replays the RNG for equal dropout masks: not checked under compile
                raise EmbtuneError("--compile does not combine with --mini-batch-size (GradCache's dropout-mask "
                                   "replay is not verified for compiled graphs); use one of them")
            self.encoder.compile_backbone()
            logger.info("compile: the backbone's training forward runs through torch.compile")
        self.params = list({id(p): p for p in self.modules.parameters()}.values())
        # every process draws its own dropout masks
        torch.manual_seed(cfg.seed + 7919 * self.dist.rank)

        # Tokenize every column once, truncated to the training length (§A: max length 32).
        t0 = time.perf_counter()
        columns = [self.tokenize([ex[c] for ex in self.data.examples]) for c in range(len(self.data.text_columns))]
        self.examples = list(zip(*columns))
        logger.info("tokenized %d examples in %.1fs", len(self.examples), time.perf_counter() - t0)

        self.steps_per_epoch = len(self.batches(0))
        if self.steps_per_epoch == 0:
            distinct = len({t for ex in self.data.examples for t in ex})
            raise EmbtuneError(
                f"{self.data.path}: no batch can be formed: {len(self.data)} examples with {distinct} distinct text(s), "
                "and a batch may not hold the same text twice (it would be its own false negative) — every "
                "example shares a text with the others. Give examples with distinct texts (a shared placeholder "
                "hard negative, or one sentence repeated, causes this).")
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.adam_epsilon,
                                           fused=self.device.type in FUSED_ADAMW)
        self.scheduler = linear_schedule(self.optimizer, cfg.warmup_steps, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None
        if clear:  # every input read and checked: only now is the earlier run's folder cleared
            clear_output(self.out)
        self.dist.barrier()
        self.tracker = EvalTracker(cfg, self.out, active=self.dist.is_main, tasks=tasks, metric=metric,
                                   higher_is_better=higher)
        self.anchor = AnchorRegularizer(self.encoder, cfg.anchor_weight) if cfg.anchor_weight else None
        self.step, self.epoch, self.pos = 0, 0, 0
        self.losses: list[float] = []
        self.seen = 0

    # ---- pieces -------------------------------------------------------------------------------
    def cut_student(self, tasks: list[LoadedTask], metric: str | None, higher: bool) -> None:
        """``--student-layers``: keep some of the model's layers (encoders/layer_cut.py says which and why)."""
        cfg = self.cfg
        if not isinstance(self.encoder, TransformerEncoder):
            raise EmbtuneError("--student-layers applies to transformer models, not word-vector encoders")
        n, want = self.encoder.num_layers, cfg.student_layer_count
        search = None  # what the dev choice scored (main process)
        if isinstance(want, tuple):
            keep, how = want, "given"
        else:
            if not 1 <= want <= n:
                raise EmbtuneError(f"--student-layers: a count must be between 1 and {n} (the model's layers), got {want}")
            how = cfg.student_layer_choice
            if how == "auto":
                how = "dev" if cfg.evaluates else "spread"
            if how == "dev":  # scored on the main process (the one holding the eval tasks), then shared
                search = self._search_layers(n, want, tasks, metric, higher) if self.dist.is_main else None
                keep = tuple(self.dist.from_main(list(search.kept if search is not None else range(want))))
            else:
                keep = (spread_layers if how == "spread" else first_layers)(n, want)
        self.encoder.keep_layers(keep)
        logger.info("student: layers %s of %d (%s)", ",".join(map(str, keep)), n, how)
        self.student_cut = {"layers": list(keep), "of": n, "choice": how,
                            **({"search": search.summary()} if search is not None else {})}

    def _search_layers(self, n: int, k: int, tasks: list[LoadedTask], metric: str, higher: bool) -> LayerSearch:
        full = self.encoder.backbone.encoder.layer

        def score(cut: tuple[int, ...]) -> float:
            self.encoder.keep_layers(cut)
            try:
                return evaluate_tasks(tasks, self.encoder, precision=self.cfg.precision)[metric]
            finally:
                self.encoder.backbone.encoder.layer = full
                self.encoder.backbone.config.num_hidden_layers = n

        return search_layers(n, k, score, higher_is_better=higher)

    def tokenize(self, texts):
        return self.encoder.tokenize_ids(texts, max_length=self.cfg.max_seq_length)

    _batch_cache: tuple[int, list[list[int]]] | None = None

    def batches(self, epoch: int) -> list[list[int]]:
        if self._batch_cache is None or self._batch_cache[0] != epoch:
            self._batch_cache = (epoch, self.dist.drop_short_batches(
                self.objective.make_batches(self.data, self.global_batch, self.cfg.seed, epoch)))
        return self._batch_cache[1]

    def loss_and_backward(self, batch: Batch) -> float:
        """Forward and backward for this process's part of the global batch; returns the global loss."""
        cfg, world = self.cfg, self.dist.world
        views = self.objective.views(batch)
        n_views, n = len(views), len(views[0])
        scale = self.scaler.scale if self.scaler is not None else (lambda x: x)

        anchor_targets = self.anchor.targets(views, self.device, cfg.precision) if self.anchor is not None else None

        def loss_from(emb: torch.Tensor) -> torch.Tensor:
            emb = emb.view(n_views, n, -1)
            if self.objective.needs_global_batch:
                loss = self.objective.loss(self.dist.gather(emb), batch)
            else:  # no in-batch interaction: the global loss is the mean of the processes' losses
                loss = self.objective.loss(emb, batch) / world
            if anchor_targets is not None:  # this process's rows; the global term is the mean over processes
                loss = loss + self.anchor(emb, anchor_targets) / world
            return loss

        if cfg.mini_batch_size and cfg.mini_batch_size < n_views * n:
            flat = [seq for view in views for seq in view]

            def embed(ids):
                with autocast(self.device, cfg.precision):
                    return self.encoder.embed_ids(ids)

            loss = grad_cache_step(embed, flat, cfg.mini_batch_size, loss_from, self.device, scale)
        else:
            emb = embed_views(self.encoder, views, self.device, cfg.precision)
            loss = loss_from(emb.view(n_views * n, -1))
            scale(loss).backward()
        # the global loss: the gathered objective's loss is the same on every process; a per-process
        # part (an objective without in-batch interaction, the MLM) is this process's share of a sum
        value, part = (float(loss.item()), 0.0) if self.objective.needs_global_batch else (0.0, float(loss.item()))
        if self.mlm is not None:  # every sentence fed to the encoder, as the official code masks them all
            with autocast(self.device, cfg.precision):
                mlm_loss = self.mlm([seq for view in views for seq in view]) / world
            scale(mlm_loss).backward()
            part += float(mlm_loss.item())
        if not self.objective.needs_global_batch or self.mlm is not None:
            value += self.dist.all_reduce_mean(part) * world
        return value

    def optimizer_step(self) -> None:
        self.dist.all_reduce_grads(self.params)
        stepped = True
        if self.cfg.max_grad_norm > 0:  # the Hugging Face Trainer's clipping, as the official SimCSE runs use
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        if self.scaler is not None:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            stepped = self.scaler.get_scale() >= scale  # a skipped step (inf/nan gradients) lowers the scale
        else:
            self.optimizer.step()
        if stepped:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def trainer_state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "pos": self.pos, "losses": self.losses, "seen": self.seen,
                "seed": self.cfg.seed, "world": self.dist.world, "tracker": self.tracker.state()}

    def save_checkpoint(self) -> None:
        if self.dist.is_main:
            ckpt.save_checkpoint(self.out, self.step, model_state=self.modules.state_dict(), optimizer=self.optimizer,
                                 scheduler=self.scheduler, scaler=self.scaler, trainer_state=self.trainer_state(),
                                 best_state=self.tracker.best_state, total_limit=self.cfg.save_total_limit)
        self.dist.barrier()

    def load_last_checkpoint(self) -> None:
        path = ckpt.last_checkpoint(self.out)
        state, best = ckpt.load_checkpoint(path, module=self.modules, optimizer=self.optimizer,
                                           scheduler=self.scheduler, scaler=self.scaler)
        if state["world"] != self.dist.world:
            raise EmbtuneError(f"{path}: saved with {state['world']} process(es), resumed with {self.dist.world}")
        self.step, self.epoch, self.pos = state["step"], state["epoch"], state["pos"]
        self.losses, self.seen = state["losses"], state["seen"]
        self.tracker.restore(state["tracker"], best)
        if self.dist.is_main:  # evaluations after the checkpoint are run again: their old lines go
            for name in ("eval_history.jsonl", "eval_items.jsonl"):
                _keep_lines_up_to(self.out / name, self.step)
        if self.dist.enabled:  # each process continues its own dropout stream
            torch.manual_seed(self.cfg.seed + 7919 * self.dist.rank + 104729 * self.step)
        logger.info("resumed from %s (step %d)", path, self.step)

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / "train_config.json", cfg.to_dict())
            write_json(self.out / "versions.json", library_versions())
        if self.resume:
            self.load_last_checkpoint()
        elif self.dist.is_main:
            (self.out / "eval_history.jsonl").unlink(missing_ok=True)
            (self.out / "eval_items.jsonl").unlink(missing_ok=True)
            if self.dev_split is not None:
                write_held_out(self.dev_split, self.out / "dev_split.tsv")
        if not self.resume:
            self.tracker.evaluate(self.encoder, 0)  # the starting model is a candidate
        self.encoder.train()
        self.objective.train()
        t_start = time.perf_counter()
        seen_at_start, step_at_start = self.seen, self.step
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress or not self.dist.is_main,
                   desc=cfg.objective, unit="step")
        with _Signals() as signals:
            while self.step < self.total_steps:
                batches = self.batches(self.epoch)
                while self.pos < len(batches) and self.step < self.total_steps:
                    idx = self.dist.shard(batches[self.pos])
                    # labels of the rows the loss sees: the global batch when embeddings are gathered
                    labels, label_idx = self.data.labels, batches[self.pos] if self.dist.gather_embeddings else idx
                    batch = Batch([self.data.examples[i] for i in idx], [self.examples[i] for i in idx],
                                  self.tokenize, step_rng(cfg.seed, self.step),
                                  [labels[i] for i in label_idx] if labels is not None else None)
                    loss = self.loss_and_backward(batch)
                    if not math.isfinite(loss):
                        raise NonFiniteLossError(
                            f"step {self.step + 1}: the loss is {loss}; stopping. The last checkpoint (if any) in "
                            f"{self.out / 'checkpoints'} is intact (lower the lr, or use fp32)")
                    self.optimizer_step()
                    self.step += 1
                    self.pos += 1
                    self.seen += len(batches[self.pos - 1])
                    self.losses.append(loss)
                    for callback in self.callbacks:
                        callback(self)
                    elapsed = time.perf_counter() - t_start
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4g}", ex_per_s=f"{(self.seen - seen_at_start) / elapsed:.1f}")
                    if not self.progress and cfg.log_every and self.step % cfg.log_every == 0 and self.dist.is_main:
                        logger.info("step %d/%d loss %.4g %.1f ex/s", self.step, self.total_steps, loss,
                                    (self.seen - seen_at_start) / elapsed)
                    self.tracker.log_loss(self.step, loss, self.scheduler.get_last_lr()[0])
                    if self.step == self.total_steps or (cfg.eval_steps and self.step % cfg.eval_steps == 0):
                        self.tracker.evaluate(self.encoder, self.step)
                        self.encoder.train()
                    if cfg.save_steps and self.step % cfg.save_steps == 0 and self.step < self.total_steps:
                        self.save_checkpoint()
                    if self.dist.any(signals.received is not None):
                        self.save_checkpoint()
                        raise Interrupted(f"interrupted at step {self.step}; checkpoint saved; continue with "
                                          f"`embtune train --resume {self.out}`")
                if self.pos >= len(batches):
                    self.epoch, self.pos = self.epoch + 1, 0
        bar.close()
        train_seconds = time.perf_counter() - t_start
        best = self.tracker.finish(self.encoder)
        steps_run = max(1, self.step - step_at_start)
        metrics = {
            "steps": self.step,
            "epochs_started": self.epoch + (1 if self.pos else 0),
            "examples_seen": self.seen,
            "train_seconds": round(train_seconds, 3),
            "seconds_per_step": round(train_seconds / steps_run, 4),
            "examples_per_second": round((self.seen - seen_at_start) / max(train_seconds, 1e-9), 2),
            "world_size": self.dist.world,
            "loss_first": self.losses[0] if self.losses else math.nan,
            "loss_last": self.losses[-1] if self.losses else math.nan,
            "loss_mean_last_10": sum(self.losses[-10:]) / max(1, len(self.losses[-10:])),
            "losses": self.losses,
            "train_examples": len(self.data),
            "skipped_blank_lines": self.data.skipped_blank,
            "pooler": self.encoder.pooler,
            **({"dev_split": self.dev_split.summary()} if self.dev_split is not None else {}),
            **({"student_layers": self.student_cut} if self.student_cut is not None else {}),
            **best,
        }
        if self.dist.is_main:
            self.encoder.eval()
            save_final(self.encoder, self.out, cfg)
            write_json(self.out / "metrics.json", metrics)
            logger.info("saved model to %s (%d steps, %.2fs/step)", self.out, self.step, metrics["seconds_per_step"])
        self.dist.barrier()
        return metrics


def train(cfg: TrainConfig, progress: bool = True, resume: bool = False, overwrite: bool = False,
          callbacks: list[StepCallback] | None = None, dist: DistContext | None = None) -> dict:
    """Train ``cfg.model`` with ``cfg.objective`` on ``cfg.train_file``; returns the metrics.

    A new run needs an empty (or absent) ``cfg.output``; ``overwrite`` clears it first. ``dist``: the
    process group (default: the one ``torchrun`` describes)."""
    trainer = Trainer(cfg, progress=progress, resume=resume, overwrite=overwrite, callbacks=callbacks, dist=dist)
    try:
        return trainer.run()
    finally:
        trainer.dist.close()
