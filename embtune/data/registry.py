"""Named datasets and where they come from.

A name resolves, in order, to
1. ``$EMBTUNE_DATA/<relpath>`` (a folder laid out like ``embtune/data/bundled``; ``.gz`` optional),
2. the copy bundled with embtune (small English sets, see ``bundled/LICENSES.md``),
3. a file already downloaded into the cache (``$EMBTUNE_CACHE`` or ``~/.cache/embtune``),
4. a download from the dataset's public source, when it has one.

Downloads are pinned: the URL names a revision (a commit) and the file's sha256 is checked. Where
the pin is not known yet (``None`` below: SimCSE's files could not be hashed when this was
written), the first download is trusted and recorded ("trust on first use"): the commit the
revision resolved to and the sha256 go into ``<file>.embtune.json`` beside the cached file, and
every later use is checked against that record. A cached file is hashed once; it is hashed again
only when its size or modification time changes, and a changed content is an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

BUNDLED = Path(__file__).parent / "bundled"

SIMCSE_DATA = "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/{revision}"
#: The commit of princeton-nlp/datasets-for-simcse and the files' sha256, to fill in once known;
#: until then the first download records them (see the module docstring).
SIMCSE_REVISION: str | None = None
WIKI1M_SHA256: str | None = None
NLI_FOR_SIMCSE_SHA256: str | None = None


@dataclass(frozen=True)
class NamedDataset:
    relpath: str
    description: str
    url: str | None = None  # may hold ``{revision}``: the pinned revision, else "main" (recorded on first use)
    sha256: str | None = None  # pinned hash; None: trust on first use
    revision: str | None = None


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
        url=f"{SIMCSE_DATA}/wiki1m_for_simcse.txt", sha256=WIKI1M_SHA256, revision=SIMCSE_REVISION,
    ),
    "nli-for-simcse": NamedDataset(
        "train/nli_for_simcse.csv", "SimCSE's SNLI+MNLI triples (sup training set)",
        url=f"{SIMCSE_DATA}/nli_for_simcse.csv", sha256=NLI_FOR_SIMCSE_SHA256, revision=SIMCSE_REVISION,
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("EMBTUNE_CACHE", Path.home() / ".cache" / "embtune"))


def _candidates(root: Path, relpath: str) -> list[Path]:
    p = root / relpath
    alt = p.with_suffix("") if p.suffix == ".gz" else p.with_name(p.name + ".gz")
    return [p, alt]


def resolve_relpath(relpath: str, url: str | None = None, sha256: str | None = None,
                    revision: str | None = None) -> Path:
    """Find a data file by its path relative to the bundled layout (see module docstring)."""
    roots = []
    if os.environ.get("EMBTUNE_DATA"):
        roots.append(Path(os.environ["EMBTUNE_DATA"]))
    cache = cache_dir() / "data"
    roots += [BUNDLED, cache]
    for root in roots:
        for cand in _candidates(root, relpath):
            if cand.is_file():
                if root == cache:
                    verify_cached(cand, sha256)
                return cand
    if url is None:
        raise EmbtuneError(
            f"data file {relpath!r} was not found in $EMBTUNE_DATA, the bundled copy or the cache, "
            "and it has no download source"
        )
    return _download(url, cache / relpath, sha256, revision)


def record_path(path: Path) -> Path:
    """Where the verification record of a cached file lives (beside it)."""
    return path.with_name(path.name + ".embtune.json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_record(path: Path, sha256: str, trust: str, url: str | None, revision: str | None) -> None:
    st = path.stat()
    rec = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "trust": trust, "url": url,
           "revision": revision, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = record_path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    tmp.replace(record_path(path))


def verify_cached(path: Path, sha256: str | None) -> None:
    """Check a cached download against its pin and its record; hash it only when it has no record
    or its size or modification time changed since it was verified."""
    rec_file = record_path(path)
    rec = None
    if rec_file.is_file():
        try:
            rec = json.loads(rec_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rec = None  # an unreadable record: verify the file again
    st = path.stat()
    if rec and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns and \
            (sha256 is None or rec.get("sha256") == sha256):
        return
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise EmbtuneError(f"{path}: sha256 {digest}, expected {sha256}; delete it to download it again")
    if rec and rec.get("sha256") and digest != rec["sha256"]:
        raise EmbtuneError(f"{path}: changed since it was verified (sha256 {digest}, recorded {rec['sha256']} in "
                           f"{rec_file}); delete it to download it again")
    trust = "pinned" if sha256 is not None else (rec or {}).get("trust", "first-use")
    if rec is None and sha256 is None:
        logger.warning("%s: no pinned sha256 and no record; recording sha256 %s (trust on first use)", path, digest)
    _write_record(path, digest, trust, (rec or {}).get("url"), (rec or {}).get("revision"))


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
    return resolve_relpath(d.relpath, d.url, d.sha256, d.revision)


def _download(url: str, dest: Path, sha256: str | None, revision: str | None = None) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = url.replace("{revision}", revision or "main")
    logger.info("downloading %s -> %s", url, dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            commit = resp.headers.get("X-Repo-Commit")  # the Hugging Face hub names the resolved commit
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256:
            raise EmbtuneError(f"download of {url} has sha256 {digest}, expected {sha256}")
        shutil.move(tmp, dest)
        if sha256 is None:
            logger.warning("%s has no pinned sha256: recorded sha256 %s and commit %s in %s (trust on first use; "
                           "later uses are checked against them)", url, digest, commit or revision or "?",
                           record_path(dest))
        _write_record(dest, digest, "pinned" if sha256 is not None else "first-use", url, commit or revision)
    except OSError as e:  # URLError is an OSError
        raise EmbtuneError(f"could not download {url}: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
