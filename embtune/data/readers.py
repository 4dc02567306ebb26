"""Readers for training files.

- ``.txt``: one sentence per line (unsupervised objectives).
- ``.csv`` / ``.tsv``: 2 columns (sent0, sent1) or 3 columns (sent0, sent1, hard_neg); the header row
  ``sent0,sent1[,hard_neg]`` is optional.
- ``.jsonl``: one object per line with the same field names (``text`` for single sentences).
- Labelled data, told apart by a header row (CSV/TSV) or the field names (JSONL), which are
  therefore required — a headerless 3-column row is always a (sent0, sent1, hard_neg) triple:
  pairs with a graded score ``sent0,sent1,score``, pairs with a binary label ``sent0,sent1,label``
  (0 or 1) and class-labelled texts ``text,label``. ``sent1,sent2`` and ``sentence1,sentence2`` are
  accepted for the two texts of a pair; columns may come in any order. The texts go to
  ``examples``, the scores/labels to ``labels``.
Any of them may be gzipped (``.gz``). Blank lines are skipped and counted; anything else that is not
as expected raises an :class:`EmbtuneError` naming the file and the line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from embtune.data.registry import DATASETS, resolve_dataset, unknown_source
from embtune.errors import EmbtuneError, located

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ("sent0", "sent1")
TRIPLE_COLUMNS = ("sent0", "sent1", "hard_neg")
SCORED_PAIR_COLUMNS = ("sent0", "sent1", "score")  # graded similarity, any finite number
BINARY_PAIR_COLUMNS = ("sent0", "sent1", "label")  # 0 = not similar / not a duplicate, 1 = similar
CLASS_COLUMNS = ("text", "label")  # class-labelled texts
LABELLED_LAYOUTS = (SCORED_PAIR_COLUMNS, BINARY_PAIR_COLUMNS, CLASS_COLUMNS)
LABEL_COLUMNS = ("score", "label")
#: other names accepted in a header / JSONL for the two texts of a pair
PAIR_ALIASES = (("sent0", "sent1"), ("sent1", "sent2"), ("sentence1", "sentence2"))
#: words that make a first row read as a header (an unknown layout of them is an error, not data)
HEADER_WORDS = frozenset({"sent0", "sent1", "sent2", "sentence1", "sentence2", "hard_neg", "text", "score", "label",
                          "similarity", "query", "positive", "negative", "anchor", "question1", "question2"})


@dataclass
class TrainData:
    path: str
    #: the layout: the text columns, then the label column for labelled data ("score" or "label")
    columns: tuple[str, ...]
    #: the texts of each example (without the score/label)
    examples: list[tuple[str, ...]]
    skipped_blank: int = 0
    notes: list[str] = field(default_factory=list)
    #: per example: a float score (scored pairs), 0.0/1.0 (binary pairs) or the class name (class files)
    labels: list | None = None

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def text_columns(self) -> tuple[str, ...]:
        return self.columns[:-1] if self.columns in LABELLED_LAYOUTS else self.columns


def _layout_of(names: tuple[str, ...]) -> tuple[tuple[str, ...], list[int]] | None:
    """Header names -> (canonical layout, position of each canonical column), or None if not a layout."""
    lowered = tuple(n.strip().lower() for n in names)
    if lowered in (PAIR_COLUMNS, TRIPLE_COLUMNS):
        return lowered, list(range(len(lowered)))
    if set(lowered) == set(CLASS_COLUMNS) and len(lowered) == 2:
        return CLASS_COLUMNS, [lowered.index(c) for c in CLASS_COLUMNS]
    if len(lowered) == 3 and len(set(lowered)) == 3:
        for label in LABEL_COLUMNS:
            for a, b in PAIR_ALIASES:
                if set(lowered) == {a, b, label}:
                    layout = SCORED_PAIR_COLUMNS if label == "score" else BINARY_PAIR_COLUMNS
                    return layout, [lowered.index(a), lowered.index(b), lowered.index(label)]
    return None


ACCEPTED_HEADERS = "sent0,sent1 | sent0,sent1,hard_neg | sent0,sent1,score | sent0,sent1,label | text,label"


def _parse_label(path: Path, line: int, layout: tuple[str, ...], value: object) -> float | str:
    """A score (finite number), a binary label (0 or 1) or a class name, checked."""
    if layout == CLASS_COLUMNS:
        if value is None or isinstance(value, (dict, list)) or not str(value).strip():
            raise located(path, line, "field 'label' is missing or empty; expected the text's class")
        return str(value).strip()
    if isinstance(value, bool):
        value = int(value)
    try:
        number = float(value) if isinstance(value, (int, float, str)) else math.nan
    except ValueError:
        number = math.nan
    if layout == SCORED_PAIR_COLUMNS:
        if not math.isfinite(number):
            raise located(path, line, f"score {value!r} is not a number; expected a finite number (a graded similarity)")
        return number
    if number not in (0.0, 1.0):
        raise located(path, line, f"label {value!r} is not 0 or 1; a pair file with a 'label' column holds binary "
                                  "labels (name the column 'score' for graded similarities)")
    return number


def check_classes(data: TrainData) -> None:
    """A class file must have a class with at least two texts (else there is no positive pair)."""
    counts: dict[str, int] = {}
    for lab in data.labels or []:
        counts[lab] = counts.get(lab, 0) + 1
    if counts and max(counts.values()) < 2:
        raise EmbtuneError(f"{data.path}: no class has two texts ({len(counts)} classes, one text each); a class "
                           "file needs classes with several texts (same-class texts are the positives)")
    single = sum(1 for c in counts.values() if c == 1)
    if single:
        data.notes.append(f"{single} class(es) with a single text (they are only ever negatives of other classes)")
        logger.warning("%s: %d of %d classes have a single text", data.path, single, len(counts))


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise EmbtuneError(f"{path}: file does not exist")
    if path.is_dir():
        raise EmbtuneError(f"{path}: is a directory; expected a training file (.txt, .csv, .tsv or .jsonl, "
                           "optionally .gz) or a text file of sentences")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise EmbtuneError(f"{path}: cannot be read ({e.strerror or e}); expected a readable file") from e
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
    """An existing file, else a named dataset (see :mod:`embtune.data.registry`), else an error."""
    p = Path(path_or_name)
    if p.exists():
        return p
    if path_or_name in DATASETS:
        return resolve_dataset(path_or_name)
    raise unknown_source(path_or_name)


def read_train_file(path_or_name: str | Path) -> TrainData:
    """Read a training file (or a named dataset such as ``wiki-sample``)."""
    return _read(resolve_train_path(str(path_or_name)))


def read_labelled_file(path: str | Path, layout: tuple[str, ...]) -> TrainData:
    """Read a file whose layout the caller names (an evaluation task: ``scored:``, ``binary:``, ``class:``).

    The header rule, one for every reader: a header row names the columns, and it may be left out only
    where the layout is known without it — here, where the task says it, but not in a training file,
    whose labelled layouts the header alone tells apart from (sent0, sent1, hard_neg) triples."""
    if layout not in LABELLED_LAYOUTS:
        raise ValueError(f"not a labelled layout: {layout}")
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    suffix = Path(name).suffix.lower()
    if suffix not in (".tsv", ".csv", ".jsonl"):
        raise EmbtuneError(f"{path}: unsupported file type {suffix!r} for ({', '.join(layout)}); expected .tsv, .csv "
                           "or .jsonl")
    if not path.is_file():
        raise EmbtuneError(f"{path}: no such file (expected a {suffix} file with {', '.join(layout)})")
    return _read(path, layout)


def _read(path: Path, expected: tuple[str, ...] | None = None) -> TrainData:
    kind = _kind(path)
    lines = read_text_lines(path)
    if kind == ".txt":
        data = _read_txt(path, lines)
    elif kind == ".jsonl":
        data = _read_jsonl(path, lines, expected)
    else:
        data = _read_delimited(path, lines, "\t" if kind == ".tsv" else ",", expected)
    if not data.examples:
        what = "training examples" if expected is None else "rows"
        raise EmbtuneError(f"{path}: no {what} (the file is empty or holds only blank lines)")
    if data.columns == CLASS_COLUMNS and expected is None:  # an evaluation file has its own rule (ClassEval)
        check_classes(data)
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


def _read_delimited(path: Path, lines: list[str], delimiter: str, expected: tuple[str, ...] | None = None) -> TrainData:
    # QUOTE_NONE for TSV: STS-style TSVs carry bare double quotes inside sentences.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter, quoting=quoting, strict=True)
    examples: list[tuple[str, ...]] = []
    labels: list = []
    ncols: int | None = None
    layout: tuple[str, ...] | None = None
    positions: list[int] = []
    blank = 0
    try:
        for row in reader:
            lineno = reader.line_num
            if not row or all(not c.strip() for c in row):
                blank += 1
                continue
            cells = tuple(c.strip() for c in row)
            if layout is None and not examples:
                found = _layout_of(cells)
                if found is not None:
                    layout, positions = found
                    if expected is not None and layout != expected:
                        raise located(path, lineno, f"header ({', '.join(cells)}) is not the expected columns "
                                                    f"({', '.join(expected)})")
                    ncols = len(cells)
                    continue
                if sum(c.lower() in HEADER_WORDS for c in cells) >= 2:
                    raise located(path, lineno, f"header ({', '.join(cells)}) is not a known layout; expected one of "
                                                f"{ACCEPTED_HEADERS}")
            if ncols is None and expected is not None:  # no header: the caller's layout, by position
                if len(cells) != len(expected):
                    raise located(path, lineno, f"expected {len(expected)} columns ({', '.join(expected)}), "
                                                f"found {len(cells)}")
                ncols, layout, positions = len(expected), expected, list(range(len(expected)))
            if ncols is None:
                if len(cells) not in (2, 3):
                    raise located(path, lineno, f"expected 2 columns (sent0, sent1) or 3 (sent0, sent1, hard_neg), found {len(cells)}; "
                                                f"labelled data needs a header row ({ACCEPTED_HEADERS})")
                if len(cells) == 3 and _is_number(cells[2]):
                    raise located(path, lineno, f"the third column {cells[2]!r} is a number, but a file without a header "
                                                "is read as (sent0, sent1, hard_neg) triples; for scored or labelled pairs "
                                                "add the header row sent0,sent1,score or sent0,sent1,label")
                ncols = len(cells)
                layout, positions = TRIPLE_COLUMNS[:ncols], list(range(ncols))
            if len(cells) != ncols:
                raise located(path, lineno, f"expected {ncols} columns like the rows above, found {len(cells)}")
            values = [cells[i] for i in positions]
            labelled = layout in LABELLED_LAYOUTS
            texts = values[:-1] if labelled else values
            for name, c in zip(layout, texts):
                if not c:
                    raise located(path, lineno, f"column {name!r} is empty; expected a text")
            if labelled:
                labels.append(_parse_label(path, lineno, layout, values[-1]))
            examples.append(tuple(texts))
    except csv.Error as e:
        raise located(path, reader.line_num, f"malformed CSV ({e})") from e
    layout = layout or PAIR_COLUMNS
    return TrainData(str(path), layout, examples, blank, labels=labels if layout in LABELLED_LAYOUTS else None)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _jsonl_layout(obj: dict) -> tuple[tuple[str, ...], list[str]] | None:
    """A JSONL object's fields -> (canonical layout, the field name of each column), or None."""
    keys = set(obj)
    if "text" in keys and "label" in keys:
        return CLASS_COLUMNS, ["text", "label"]
    for a, b in PAIR_ALIASES:
        if a in keys and b in keys:
            if "score" in keys:
                return SCORED_PAIR_COLUMNS, [a, b, "score"]
            if "label" in keys:
                return BINARY_PAIR_COLUMNS, [a, b, "label"]
    if "text" in keys:
        return ("text",), ["text"]
    if "hard_neg" in keys:
        return TRIPLE_COLUMNS, list(TRIPLE_COLUMNS)
    if "sent0" in keys and "sent1" in keys:
        return PAIR_COLUMNS, list(PAIR_COLUMNS)
    return None


def _read_jsonl(path: Path, lines: list[str], want: tuple[str, ...] | None = None) -> TrainData:
    examples: list[tuple[str, ...]] = []
    labels: list = []
    layout: tuple[str, ...] | None = None
    fields: list[str] = []
    blank = 0
    expected = ("fields 'text', 'sent0', 'sent1'[, 'hard_neg'], or for labelled data 'sent0', 'sent1', 'score' | "
                "'sent0', 'sent1', 'label' | 'text', 'label'")
    for i, ln in enumerate(lines, 1):
        if not ln.strip():
            blank += 1
            continue
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError as e:
            raise located(path, i, f"invalid JSON ({e.msg}); expected one object per line") from e
        if not isinstance(obj, dict):
            raise located(path, i, f"expected a JSON object with {expected}")
        if layout is None:
            found = _jsonl_layout(obj)
            if found is None:
                raise located(path, i, f"expected {expected}; found {', '.join(map(repr, obj)) or 'no fields'}")
            layout, fields = found
            if want is not None and layout != want:
                raise located(path, i, f"expected fields for ({', '.join(want)}); found "
                                       f"{', '.join(map(repr, obj)) or 'no fields'}")
        labelled = layout in LABELLED_LAYOUTS
        values = []
        for c in fields[:-1] if labelled else fields:
            v = obj.get(c)
            if not isinstance(v, str) or not v.strip():
                raise located(path, i, f"field {c!r} is missing or not a non-empty string (fields of the first line: {', '.join(fields)})")
            values.append(v.strip())
        if labelled:
            if fields[-1] not in obj:
                raise located(path, i, f"field {fields[-1]!r} is missing (fields of the first line: {', '.join(fields)})")
            labels.append(_parse_label(path, i, layout, obj[fields[-1]]))
        examples.append(tuple(values))
    layout = layout or ("text",)
    return TrainData(str(path), layout, examples, blank, labels=labels if layout in LABELLED_LAYOUTS else None)
