"""Named datasets and where they come from.

A name resolves, in order, to
1. ``$EMBTUNE_DATA/<relpath>`` (a folder laid out like ``embtune/data/bundled``; ``.gz`` optional),
2. the copy bundled with embtune (small English sets, see ``bundled/LICENSES.md``),
3. a file already downloaded into the cache (``$EMBTUNE_CACHE`` or ``~/.cache/embtune``),
4. a download from the dataset's public source, when it has one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

BUNDLED = Path(__file__).parent / "bundled"

SIMCSE_DATA = "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main"


@dataclass(frozen=True)
class NamedDataset:
    relpath: str
    description: str
    url: str | None = None
    sha256: str | None = None


DATASETS: dict[str, NamedDataset] = {
    "wiki-sample": NamedDataset(
        "train/wiki1m_head.txt.gz", "first 11,914 sentences of SimCSE's wiki1m_for_simcse.txt"
    ),
    "snli-triples": NamedDataset(
        "train/snli_devtest_triples.csv.gz",
        "5,883 (sent0, sent1, hard_neg) triples from SNLI dev+test (for small sup runs only)",
    ),
    "wiki1m": NamedDataset(
        "train/wiki1m_for_simcse.txt", "SimCSE's 1M Wikipedia sentences (unsup training set)",
        url=f"{SIMCSE_DATA}/wiki1m_for_simcse.txt",
    ),
    "nli-for-simcse": NamedDataset(
        "train/nli_for_simcse.csv", "SimCSE's SNLI+MNLI triples (sup training set)",
        url=f"{SIMCSE_DATA}/nli_for_simcse.csv",
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("EMBTUNE_CACHE", Path.home() / ".cache" / "embtune"))


def _candidates(root: Path, relpath: str) -> list[Path]:
    p = root / relpath
    alt = p.with_suffix("") if p.suffix == ".gz" else p.with_name(p.name + ".gz")
    return [p, alt]


def resolve_relpath(relpath: str, url: str | None = None, sha256: str | None = None) -> Path:
    """Find a data file by its path relative to the bundled layout (see module docstring)."""
    roots = []
    if os.environ.get("EMBTUNE_DATA"):
        roots.append(Path(os.environ["EMBTUNE_DATA"]))
    roots += [BUNDLED, cache_dir() / "data"]
    for root in roots:
        for cand in _candidates(root, relpath):
            if cand.is_file():
                return cand
    if url is None:
        raise EmbtuneError(
            f"data file {relpath!r} was not found in $EMBTUNE_DATA, the bundled copy or the cache, "
            "and it has no download source"
        )
    return _download(url, cache_dir() / "data" / relpath, sha256)


def unknown_source(name: str) -> EmbtuneError:
    """The error for a training source that is neither an existing file nor a dataset name."""
    import difflib

    close = difflib.get_close_matches(name.lower(), list(DATASETS), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return EmbtuneError(f"no such dataset or file {name!r}{hint}; known names: {', '.join(sorted(DATASETS))} "
                        "(or the path of a .txt, .csv, .tsv or .jsonl file)")


def resolve_dataset(name: str) -> Path:
    if name not in DATASETS:
        raise unknown_source(name)
    d = DATASETS[name]
    return resolve_relpath(d.relpath, d.url, d.sha256)


def _download(url: str, dest: Path, sha256: str | None) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s -> %s", url, dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if sha256 is not None and h.hexdigest() != sha256:
            raise EmbtuneError(f"download of {url} has sha256 {h.hexdigest()}, expected {sha256}")
        shutil.move(tmp, dest)
    except OSError as e:  # URLError is an OSError
        raise EmbtuneError(f"could not download {url}: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
