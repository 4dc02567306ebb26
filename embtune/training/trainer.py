"""The training loop: read data -> tokenize once -> duplicate-free batches -> embed all views in one
forward pass -> objective loss -> AdamW with linear decay (the Hugging Face Trainer defaults the
official SimCSE code runs with) -> save a sentence-transformers folder with config and metrics."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from embtune.config import TrainConfig, config_dict
from embtune.data import duplicate_free_batches, read_train_file
from embtune.encoders import load_encoder
from embtune.encoders.base import Encoder, autocast
from embtune.errors import EmbtuneError
from embtune.evaluation.dev import evaluate_dev, is_better
from embtune.objectives import Batch, Objective, get_objective_class
from embtune.objectives.mlm import AuxiliaryMLM
from embtune.utils import library_versions, resolve_device, seed_everything, write_json

logger = logging.getLogger(__name__)


class NonFiniteLossError(EmbtuneError):
    pass


def embed_views(encoder: Encoder, views: list[list[list[int]]], device: torch.device, precision: str) -> torch.Tensor:
    """Embed V views of N sequences in one forward pass -> (V, N, d).

    One pass over the concatenation gives every row its own dropout mask, exactly as V passes
    would, at less overhead (SimCSE §3: "feed the same input to the encoder twice").
    """
    n_views, n = len(views), len(views[0])
    flat = [seq for view in views for seq in view]
    with autocast(device, precision):
        emb = encoder.embed_ids(flat)
    return emb.float().view(n_views, n, -1)


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


class EvalTracker:
    """Evaluates every ``eval_steps`` steps, logs to JSON lines and TensorBoard, keeps the best weights
    in memory (as the official code keeps the best checkpoint) and restores them at the end."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out = cfg, out
        self.history: list[dict] = []
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.tb = _tensorboard(out)

    def log_loss(self, step: int, loss: float, lr: float) -> None:
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss, step)
            self.tb.add_scalar("train/lr", lr, step)

    def evaluate(self, encoder: Encoder, step: int) -> dict:
        m = evaluate_dev(encoder, sickr=self.cfg.eval_sickr, precision=self.cfg.precision)
        rec = {"step": step, **m}
        self.history.append(rec)
        with open(self.out / "eval_history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in m.items():
                self.tb.add_scalar(f"eval/{k}", v, step)
        value = m[self.cfg.metric_for_best]
        if is_better(self.cfg.metric_for_best, value, self.best):
            self.best, self.best_step = value, step
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in encoder.state_dict().items()}
        logger.info("step %d: %s (best %s %.4f at step %d)", step,
                    " ".join(f"{k}={v:.4f}" for k, v in m.items()), self.cfg.metric_for_best, self.best, self.best_step)
        return rec

    def finish(self, encoder: Encoder) -> dict:
        if self.best_state is not None:
            encoder.load_state_dict(self.best_state)
            logger.info("loaded the best checkpoint: step %d (%s %.4f)", self.best_step, self.cfg.metric_for_best, self.best)
        if self.history:
            from embtune.evaluation.plots import plot_align_uniform

            plot_align_uniform(self.history, self.out / "align_uniform.png", title=f"{self.cfg.objective} ({self.cfg.model})")
        if self.tb is not None:
            self.tb.close()
        return {"best_step": self.best_step, "best_metric": self.cfg.metric_for_best, "best_value": self.best,
                "evaluations": self.history}


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed: metrics go to JSON files only")
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train ``cfg.model`` with ``cfg.objective`` on ``cfg.train_file``; returns the metrics."""
    cfg.validate()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    objective_cls = get_objective_class(cfg.objective)
    objective: Objective = objective_cls.from_config(cfg)

    data = read_train_file(cfg.train_file)
    objective.check_columns(data.path, data.columns)
    if len(data) < 2:
        raise EmbtuneError(f"{data.path}: {len(data)} example(s); contrastive training needs at least 2 (no negatives otherwise)")
    batch_size = cfg.batch_size
    if len(data) < batch_size:
        logger.warning("%s has %d examples, fewer than one batch of %d: using batches of %d",
                       data.path, len(data), batch_size, len(data))
        batch_size = len(data)

    encoder = load_encoder(cfg.model, device=str(device), pooler=cfg.pooler, mlp_only_train=cfg.mlp_only_train,
                           trust_remote_code=cfg.trust_remote_code, default_pooler=objective_cls.default_pooler,
                           default_mlp_only_train=objective_cls.default_mlp_only_train)
    logger.info("encoder: pooler=%s mlp=%s mlp_only_train=%s", encoder.pooler, encoder.mlp is not None, encoder.mlp_only_train)
    if not cfg.dropout:
        disable_dropout(encoder)
    objective.setup(encoder)
    objective.to(device)
    mlm = AuxiliaryMLM(encoder, cfg.mlm_weight, cfg.mlm_probability) if cfg.mlm_weight else None

    # Tokenize every column once, truncated to the training length (§A: max length 32).
    t0 = time.perf_counter()
    columns = [encoder.tokenize_ids([ex[c] for ex in data.examples], max_length=cfg.max_seq_length)
               for c in range(len(data.columns))]
    examples = list(zip(*columns))

    def tokenize(texts):  # views made during training (augmentations, corrupted inputs)
        return encoder.tokenize_ids(texts, max_length=cfg.max_seq_length)
    logger.info("tokenized %d examples in %.1fs", len(examples), time.perf_counter() - t0)

    epoch_batches = duplicate_free_batches(data.examples, batch_size, cfg.seed, epoch=0)
    total_steps = cfg.max_steps or cfg.epochs * len(epoch_batches)
    params = list({id(p): p for m in (encoder, objective, mlm) if m is not None for p in m.parameters()}.values())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = linear_schedule(optimizer, cfg.warmup_steps, total_steps)

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "train_config.json", config_dict(cfg))
    write_json(out / "versions.json", library_versions())

    (out / "eval_history.jsonl").unlink(missing_ok=True)
    tracker = EvalTracker(cfg, out)
    encoder.train()
    losses: list[float] = []
    step, epoch, seen = 0, 0, 0
    t_start = time.perf_counter()
    bar = tqdm(total=total_steps, disable=not progress, desc=cfg.objective, unit="step")
    while step < total_steps:
        batches = epoch_batches if epoch == 0 else duplicate_free_batches(data.examples, batch_size, cfg.seed, epoch)
        for idx in batches:
            if step >= total_steps:
                break
            batch = Batch([data.examples[i] for i in idx], [examples[i] for i in idx], tokenize, step_rng(cfg.seed, step))
            emb = embed_views(encoder, objective.views(batch), device, cfg.precision)
            loss = objective.loss(emb, batch)
            if mlm is not None:
                with autocast(device, cfg.precision):
                    loss = loss + mlm(batch.column(0))
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"step {step + 1}: the loss is {loss.item()}; stopping (lower the lr or use fp32)")
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += len(idx)
            losses.append(loss.item())
            tracker.log_loss(step, losses[-1], scheduler.get_last_lr()[0])
            if cfg.eval_steps and (step % cfg.eval_steps == 0 or step == total_steps):
                tracker.evaluate(encoder, step)
            elapsed = time.perf_counter() - t_start
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", ex_per_s=f"{seen / elapsed:.1f}")
            if cfg.log_every and step % cfg.log_every == 0 and not progress:
                logger.info("step %d/%d loss %.4f %.1f ex/s", step, total_steps, losses[-1], seen / elapsed)
        epoch += 1
    bar.close()
    train_seconds = time.perf_counter() - t_start

    best = tracker.finish(encoder)
    encoder.eval()
    encoder.save(out, extra={"train_config": config_dict(cfg)})
    metrics = {
        "steps": step,
        "epochs_started": epoch,
        "examples_seen": seen,
        "train_seconds": round(train_seconds, 3),
        "seconds_per_step": round(train_seconds / max(1, step), 4),
        "examples_per_second": round(seen / max(train_seconds, 1e-9), 2),
        "loss_first": losses[0] if losses else math.nan,
        "loss_last": losses[-1] if losses else math.nan,
        "loss_mean_last_10": sum(losses[-10:]) / max(1, len(losses[-10:])),
        "losses": losses,
        "train_examples": len(data),
        "skipped_blank_lines": data.skipped_blank,
        "pooler": encoder.pooler,
        **best,
    }
    write_json(out / "metrics.json", metrics)
    logger.info("saved model to %s (%d steps, %.2fs/step)", out, step, metrics["seconds_per_step"])
    return metrics
