"""Reading a corpus or a query file with ids: BEIR ``corpus.jsonl`` / ``queries.jsonl``, any JSONL
with an id field, or a TXT file (one text per line, the 1-based line number as id).

Every id must be unique (a repeated id is an error naming both lines); a JSONL line without an id
or text is an error naming the line; blank lines are skipped (a TXT file's blank lines are counted
and logged; its ids stay the line numbers).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from embtune.data.readers import read_text_lines
from embtune.errors import EmbtuneError, located

logger = logging.getLogger(__name__)

ID_KEYS = ("_id", "id")


def read_jsonl_ids(path: str | Path, what: str = "document", id_keys: tuple[str, ...] = ID_KEYS) -> dict[str, str]:
    """``{id: text}`` from a JSONL file of ``{"_id" (or "id"), "text", "title"?}`` objects; a title is
    prepended to the text (as BEIR does)."""
    path = Path(path)
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    blank = 0
    for i, ln in enumerate(read_text_lines(path), 1):
        if not ln.strip():
            blank += 1
            continue
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError as e:
            raise located(path, i, f"invalid JSON ({e.msg}); expected one {what} object per line") from e
        key = next((k for k in id_keys if isinstance(obj, dict) and k in obj), None) if isinstance(obj, dict) else None
        if key is None or obj[key] is None or str(obj[key]) == "":
            raise located(path, i, f"{what} without an id; expected a {what} object with "
                                   f"{' or '.join(repr(k) for k in id_keys)} and 'text'")
        if not isinstance(obj.get("text"), str):
            raise located(path, i, f"expected a {what} object with {key!r} and a string 'text'")
        did = str(obj[key])
        if did in out:
            raise located(path, i, f"duplicate {what} id {did!r} (first on line {first_line[did]}); ids must be unique")
        first_line[did] = i
        title = obj.get("title") or ""
        out[did] = f"{title} {obj['text']}".strip() if title else obj["text"]
    _log_blank(path, blank)
    return out


def _log_blank(path: Path, blank: int) -> None:
    if blank:
        logger.warning("%s: %d blank line(s) skipped", path, blank)


def read_txt_ids(path: str | Path, what: str = "document") -> dict[str, str]:
    """``{line number: text}`` from a text file, one text per line; blank lines are skipped and counted."""
    path = Path(path)
    out: dict[str, str] = {}
    blank = 0
    for i, ln in enumerate(read_text_lines(path), 1):
        if not ln.strip():
            blank += 1
            continue
        out[str(i)] = ln
    if blank:
        logger.warning("%s: %d blank line(s) skipped (ids are line numbers)", path, blank)
    return out


def read_id_texts(path: str | Path, what: str = "document") -> dict[str, str]:
    """A corpus or query file by its suffix: ``.jsonl`` (ids from ``_id``/``id``), ``.txt`` (line numbers),
    ``.tsv`` (``id<TAB>text``; a first line ``id``/``_id``/``query-id``… is a header); gzipped or not.
    An empty result is an error."""
    path = Path(path)
    if not path.is_file():
        raise EmbtuneError(f"{path}: not found; expected a {what} file (.jsonl, .tsv or .txt)")
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    suffix = Path(name).suffix.lower()
    if suffix == ".jsonl":
        out = read_jsonl_ids(path, what)
    elif suffix == ".txt":
        out = read_txt_ids(path, what)
    elif suffix == ".tsv":
        out = _read_tsv_ids(path, what)
    else:
        raise EmbtuneError(f"{path}: unsupported {what} file type {suffix!r}; expected .jsonl, .tsv or .txt")
    if not out:
        plural = "queries" if what == "query" else f"{what}s"
        raise EmbtuneError(f"{path}: no {plural} (the file is empty or has only blank lines)")
    return out


def _read_tsv_ids(path: Path, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    blank = 0
    for i, ln in enumerate(read_text_lines(path), 1):
        if not ln.strip():
            blank += 1
            continue
        cells = ln.split("\t")
        if i == 1 and cells[0].strip().lower() in ("id", "_id", "qid", "query-id", "query_id", "doc-id", "docid"):
            continue
        if len(cells) < 2 or not cells[0].strip():
            raise located(path, i, f"expected 'id<TAB>text', found {len(cells)} column(s)")
        did, text = cells[0].strip(), "\t".join(cells[1:])
        if did in out:
            raise located(path, i, f"duplicate {what} id {did!r} (first on line {first_line[did]}); ids must be unique")
        first_line[did] = i
        out[did] = text
    _log_blank(path, blank)
    return out
