"""Weight files: safetensors only, checked before use.

Pickle-based formats (``pytorch_model.bin``, ``*.pt``) can run arbitrary code when loaded, so a
model folder that holds only those is refused unless the user opts in (``--allow-pickle-weights``,
``allow_pickle=True``). A safetensors file is checked (its header and that the data covers it)
before a library reads it, so a corrupt or truncated download is reported with its path.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from embtune.errors import EmbtuneError

PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
OPT_IN = "--allow-pickle-weights (Python: allow_pickle=True)"


def check_safetensors(path: Path) -> None:
    """Raise an :class:`EmbtuneError` naming ``path`` unless it is a complete safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError, ValueError) as e:
        raise EmbtuneError(f"{path}: corrupt or truncated weights file ({e}); download or save the model again") from e


def load_safetensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a safetensors file; a missing or damaged file is an error naming it."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise EmbtuneError(f"{path}: missing weights file (expected model.safetensors)")
    check_safetensors(path)
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 — safetensors raises its own error types
        raise EmbtuneError(f"{path}: corrupt or truncated weights file ({e}); download or save the model again") from e


def use_safetensors(folder: Path, allow_pickle: bool = False) -> bool:
    """Check a Hugging Face model folder's weights; True when they are (checked) safetensors files,
    False when only pickle-based files are there and the user allowed them."""
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        for f in safe:
            check_safetensors(f)
        return True
    pickled = sorted({p.name for pat in PICKLE_PATTERNS for p in folder.glob(pat)})
    if pickled and allow_pickle:
        return False
    if pickled:
        raise EmbtuneError(f"{folder}: the weights are only in {', '.join(pickled)}, a pickle-based format that can "
                           "run code when loaded; convert them to safetensors, or load them anyway with " + OPT_IN)
    raise EmbtuneError(f"{folder}: no weights file; expected model.safetensors")
