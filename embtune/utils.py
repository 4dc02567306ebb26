"""Small shared helpers: seeding, logging, run metadata."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embtune.errors import EmbtuneError

logger = logging.getLogger("embtune")


def setup_logging(level: int = logging.INFO) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(level)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so CPU runs are bit-for-bit repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("embtune", "torch", "transformers", "tokenizers", "numpy", "scipy", "safetensors"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    out["torch_threads"] = str(torch.get_num_threads())
    return out


def write_json(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def weights_digest(module: torch.nn.Module, salt: str = "") -> str:
    """A sha256 of ``salt`` and every tensor of ``module``'s state dict (names, dtypes, shapes, bytes):
    the key of caches that must change whenever the weights do (ONNX exports, teacher embeddings)."""
    h = hashlib.sha256(salt.encode())
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


DEVICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``--device``: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps —
    a device this machine does not have is an error here, not a traceback at the first tensor."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as e:
        raise EmbtuneError(f"--device {device}: expected {DEVICES}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EmbtuneError(f"--device {device}: no CUDA GPU is available here (torch {torch.__version__}, "
                               f"CUDA build {torch.version.cuda or 'none'}); use --device cpu or auto")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise EmbtuneError(f"--device {device}: this machine has {n} CUDA GPU(s), cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise EmbtuneError(f"--device {device}: Apple's MPS backend is not available here; use --device cpu or auto")
    elif dev.type != "cpu":
        raise EmbtuneError(f"--device {device}: expected {DEVICES}")
    return dev
