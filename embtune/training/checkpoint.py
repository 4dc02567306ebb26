"""Atomic checkpoints and resume.

A checkpoint is a folder ``OUTPUT/checkpoints/checkpoint-<step>`` holding
- ``model.safetensors``   the trainable state (encoder and objective), as safetensors
- ``optimizer.pt``, ``scheduler.pt``, ``scaler.pt``   state dicts (loaded with ``weights_only=True``)
- ``rng.pt``              Python, NumPy and torch RNG states
- ``trainer_state.json``  step, epoch, position in the epoch, losses, evaluation history
- ``best.safetensors``    the best weights so far, when evaluating during training
It is written into a temporary folder that is renamed into place once complete, so a crash leaves
either the previous checkpoint or a ``.tmp-*`` folder that resume ignores.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

PATTERN = re.compile(r"^checkpoint-(\d+)$")


def rng_state() -> dict[str, Any]:
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst[0], npst[1].numpy().astype(np.uint32), *npst[2:]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; clone so tied weights are saved under every name
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}


def save_checkpoint(root: Path, step: int, *, model_state: dict, optimizer, scheduler, scaler,
                    trainer_state: dict, best_state: dict | None, total_limit: int | None) -> Path:
    ckpt_dir = root / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"checkpoint-{step}"
    tmp = ckpt_dir / f".tmp-checkpoint-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_tensors(model_state), str(tmp / "model.safetensors"))
    if best_state is not None:
        save_file(_tensors(best_state), str(tmp / "best.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    if scaler is not None:
        torch.save(scaler.state_dict(), tmp / "scaler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1), encoding="utf-8")
    for f in tmp.iterdir():  # make the contents durable before the rename publishes them
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    logger.info("saved checkpoint %s", final)
    if total_limit:
        for old in list_checkpoints(root)[:-total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (half-written ``.tmp-*`` folders are not listed)."""
    d = root / "checkpoints"
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = PATTERN.match(p.name)
        if m and (p / "trainer_state.json").is_file() and (p / "model.safetensors").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


REQUIRED = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "trainer_state.json")


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from (a file missing, corrupt or truncated),
    or None when every file reads. Reads each file completely: a damaged newest checkpoint (a full
    disk, a copy cut short) must be found before training resumes from it."""
    from safetensors import SafetensorError

    for name in REQUIRED:
        if not (path / name).is_file():
            return f"{name} is missing"
    for name in ("model.safetensors", "best.safetensors"):
        if (path / name).is_file():
            try:
                load_file(str(path / name))
            except (SafetensorError, OSError, ValueError) as e:
                return f"{name} is corrupt or truncated ({e})"
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt", "scaler.pt"):
        if (path / name).is_file():
            try:
                torch.load(path / name, weights_only=True, map_location="cpu")
            except Exception as e:  # noqa: BLE001 — torch.load raises many types for a damaged file
                return f"{name} is corrupt or truncated ({type(e).__name__}: {str(e)[:200]})"
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"trainer_state.json is corrupt or truncated ({e})"
    if not isinstance(state, dict) or "step" not in state:
        return "trainer_state.json holds no step"
    return None


def last_checkpoint(root: Path) -> Path:
    """The newest checkpoint whose files all read; a damaged newer one is skipped with a warning."""
    ckpts = list_checkpoints(root)
    if not ckpts:
        raise EmbtuneError(f"{root}: no complete checkpoint to resume from (train with --save-steps N)")
    skipped: list[str] = []
    for path in reversed(ckpts):
        problem = checkpoint_problem(path)
        if problem is None:
            if skipped:
                logger.warning("resuming from %s, the newest usable checkpoint: skipped %s", path.name, "; ".join(skipped))
            return path
        skipped.append(f"{path.name} ({problem})")
        logger.warning("%s is unusable: %s; falling back to the previous checkpoint", path, problem)
    raise EmbtuneError(f"{root}: no usable checkpoint to resume from: {'; '.join(skipped)}")


def load_checkpoint(path: Path, *, module: torch.nn.Module, optimizer, scheduler, scaler) -> tuple[dict, dict | None]:
    """Restore everything into the given objects; returns (trainer_state, best_state)."""
    try:
        module.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    except RuntimeError as e:
        raise EmbtuneError(f"{path}: the checkpoint does not match the model being trained ({e})") from e
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    if scaler is not None and (path / "scaler.pt").is_file():
        scaler.load_state_dict(torch.load(path / "scaler.pt", weights_only=True))
    set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    trainer_state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    best = load_file(str(path / "best.safetensors")) if (path / "best.safetensors").is_file() else None
    return trainer_state, best
