"""Readers for training files.

- ``.txt``: one sentence per line (unsupervised objectives).
- ``.csv`` / ``.tsv``: 2 columns (sent0, sent1) or 3 columns (sent0, sent1, hard_neg); the header row
  ``sent0,sent1[,hard_neg]`` is optional.
- ``.jsonl``: one object per line with the same field names (``text`` for single sentences).
Any of them may be gzipped (``.gz``). Blank lines are skipped and counted; anything else that is not
as expected raises an :class:`EmbtuneError` naming the file and the line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from embtune.data.registry import DATASETS, resolve_dataset
from embtune.errors import EmbtuneError, located

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ("sent0", "sent1")
TRIPLE_COLUMNS = ("sent0", "sent1", "hard_neg")


@dataclass
class TrainData:
    path: str
    columns: tuple[str, ...]
    examples: list[tuple[str, ...]]
    skipped_blank: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise EmbtuneError(f"{path}: file does not exist")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise located(path, None, f"not a valid gzip file ({e})") from e
    return raw


def read_text_lines(path: str | Path) -> list[str]:
    """Decode a (possibly gzipped) UTF-8 file into lines; a bad byte is reported with its line."""
    path = Path(path)
    raw = _read_bytes(path)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise located(
            path, line, f"byte 0x{raw[e.start]:02x} at column {col} is not valid UTF-8; expected UTF-8 text"
        ) from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _kind(path: Path) -> str:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    suffix = Path(name).suffix.lower()
    if suffix not in (".txt", ".csv", ".tsv", ".jsonl"):
        raise EmbtuneError(f"{path}: unsupported training file type {suffix!r}; expected .txt, .csv, .tsv or .jsonl")
    return suffix


def resolve_train_path(path_or_name: str) -> Path:
    p = Path(path_or_name)
    if p.exists() or path_or_name not in DATASETS:
        return p
    return resolve_dataset(path_or_name)


def read_train_file(path_or_name: str | Path) -> TrainData:
    """Read a training file (or a named dataset such as ``wiki-sample``)."""
    path = resolve_train_path(str(path_or_name))
    kind = _kind(path)
    lines = read_text_lines(path)
    if kind == ".txt":
        data = _read_txt(path, lines)
    elif kind == ".jsonl":
        data = _read_jsonl(path, lines)
    else:
        data = _read_delimited(path, lines, "\t" if kind == ".tsv" else ",")
    if not data.examples:
        raise EmbtuneError(f"{path}: no training examples (the file is empty or holds only blank lines)")
    if data.skipped_blank:
        logger.warning("%s: skipped %d blank line(s)", path, data.skipped_blank)
    logger.info("%s: %d examples with columns %s", path, len(data), ",".join(data.columns))
    return data


def _read_txt(path: Path, lines: list[str]) -> TrainData:
    examples, blank = [], 0
    for ln in lines:
        s = ln.strip()
        if not s:
            blank += 1
            continue
        examples.append((s,))
    return TrainData(str(path), ("text",), examples, blank)


def _read_delimited(path: Path, lines: list[str], delimiter: str) -> TrainData:
    # QUOTE_NONE for TSV: STS-style TSVs carry bare double quotes inside sentences.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter, quoting=quoting, strict=True)
    examples: list[tuple[str, ...]] = []
    ncols: int | None = None
    blank = 0
    header_seen = False
    try:
        for row in reader:
            lineno = reader.line_num
            if not row or all(not c.strip() for c in row):
                blank += 1
                continue
            cells = tuple(c.strip() for c in row)
            if not header_seen and not examples and cells in (PAIR_COLUMNS, TRIPLE_COLUMNS):
                header_seen = True
                ncols = len(cells)
                continue
            if ncols is None:
                if len(cells) not in (2, 3):
                    raise located(path, lineno, f"expected 2 columns (sent0, sent1) or 3 (sent0, sent1, hard_neg), found {len(cells)}")
                ncols = len(cells)
            if len(cells) != ncols:
                raise located(path, lineno, f"expected {ncols} columns like the rows above, found {len(cells)}")
            for name, c in zip(TRIPLE_COLUMNS, cells):
                if not c:
                    raise located(path, lineno, f"column {name!r} is empty; expected a sentence")
            examples.append(cells)
    except csv.Error as e:
        raise located(path, reader.line_num, f"malformed CSV ({e})") from e
    columns = TRIPLE_COLUMNS[: ncols or 2]
    return TrainData(str(path), columns, examples, blank)


def _read_jsonl(path: Path, lines: list[str]) -> TrainData:
    examples: list[tuple[str, ...]] = []
    columns: tuple[str, ...] | None = None
    blank = 0
    for i, ln in enumerate(lines, 1):
        if not ln.strip():
            blank += 1
            continue
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError as e:
            raise located(path, i, f"invalid JSON ({e.msg}); expected one object per line") from e
        if not isinstance(obj, dict):
            raise located(path, i, "expected a JSON object with fields 'text' or 'sent0', 'sent1'[, 'hard_neg']")
        if columns is None:
            if "text" in obj:
                columns = ("text",)
            elif "hard_neg" in obj:
                columns = TRIPLE_COLUMNS
            elif "sent0" in obj and "sent1" in obj:
                columns = PAIR_COLUMNS
            else:
                raise located(path, i, "expected fields 'text' or 'sent0', 'sent1'[, 'hard_neg']")
        values = []
        for c in columns:
            v = obj.get(c)
            if not isinstance(v, str) or not v.strip():
                raise located(path, i, f"field {c!r} is missing or not a non-empty string (fields of line 1: {', '.join(columns)})")
            values.append(v.strip())
        examples.append(tuple(values))
    return TrainData(str(path), columns or ("text",), examples, blank)
