"""Hard-negative mining from the user's corpus with the current model.

For every (query, positive) pair, the corpus is ranked by cosine similarity to the query with the
model (exact top-k search, :func:`embtune.search.topk`), and hard negatives are taken from a window
of that ranking, hardest first, as in sentence-transformers' ``mine_hard_negatives`` and
NV-Retriever's positive-aware mining (Moreira et al. 2024):

- **rank window**: ranks ``range_min + 1`` … ``range_max`` of the query's ranking of the whole
  corpus (1 = most similar; every corpus text counts, the positive included). Skipping the top
  ``range_min`` leaves out the texts most likely to be unlabelled positives.
- **margin** (a likely false negative is dropped): a candidate ``c`` is dropped when
  ``cos(q, c) > cos(q, p) − margin``, ``p`` the pair's positive (both scored on the corpus
  embeddings, so on the same footing); ``margin`` 0 drops candidates the model scores above the
  positive, a larger margin also those just below it; a negative margin keeps some above it.
- **never** a negative: the positive itself, any other known positive of the query (every
  ``sent1`` the pairs file gives for that ``sent0``), the query's own text, or a text already
  taken for this pair (corpus texts are compared after trimming spaces).
- up to ``num_negatives`` per pair: one ``(sent0, sent1, hard_neg)`` row each, the file that
  ``sup-simcse`` reads. A pair left with fewer is counted and logged (with none it gets no row).

Every positive must be a text of the corpus (an error naming the pairs file's line otherwise): the
ranking is of the corpus, and the margin compares a candidate's corpus score with the positive's.

Without pairs, :func:`neighbour_rows` writes rows of a corpus text and its nearest other texts — training
rows for **distillation** from a stronger teacher on unlabeled in-domain text: a batch of random texts
of one domain is mostly unrelated pairs, while rows of neighbours put the close pairs a domain's task is
about (the duplicates and near-misses) into every batch, and the teacher says how close each one is —
the idea of GPL's pseudo-labelling of mined candidates (Wang et al. 2022), with the teacher's
bi-encoder similarities as the labels (the relational / similarity losses of ``distill``). They are not
triples for sup-simcse: the neighbours are unlabeled, not positives and negatives.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embtune.data.readers import PAIR_COLUMNS, read_train_file
from embtune.errors import EmbtuneError, located

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".csv", ".jsonl")


@dataclass
class MiningReport:
    pairs: int = 0
    queries: int = 0
    corpus: int = 0
    triples: int = 0
    pairs_without_negative: int = 0
    pairs_with_fewer: int = 0  # fewer than num_negatives, at least one
    dropped_margin: int = 0  # candidates in the window above the margin line (likely false negatives)
    dropped_known_positive: int = 0  # the positive itself, other positives of the query, the query's own text
    output: str | None = None
    settings: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.triples} triples from {self.pairs} pairs ({self.queries} queries, corpus of {self.corpus}); "
                f"window candidates dropped: {self.dropped_margin} within the margin of the positive, "
                f"{self.dropped_known_positive} known positives/the query; pairs with fewer than "
                f"{self.settings.get('num_negatives')} negatives: {self.pairs_with_fewer}, with none: "
                f"{self.pairs_without_negative}")


def check_settings(range_min: int, range_max: int, num_negatives: int, margin: float) -> None:
    for flag, v in (("--range-min", range_min), ("--range-max", range_max), ("--num-negatives", num_negatives)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise EmbtuneError(f"{flag}: expected an integer, got {v!r}")
    if range_min < 0:
        raise EmbtuneError(f"--range-min {range_min}: expected >= 0 (the number of top-ranked texts skipped)")
    if range_max <= range_min:
        raise EmbtuneError(f"--range-max {range_max}: expected > --range-min {range_min} (the window is ranks "
                           "range_min+1 … range_max)")
    if num_negatives < 1:
        raise EmbtuneError(f"--num-negatives {num_negatives}: expected >= 1")
    if not isinstance(margin, (int, float)) or not math.isfinite(margin):
        raise EmbtuneError(f"--margin {margin!r}: expected a finite number")


def read_corpus(path: str | Path) -> list[str]:
    """Corpus texts from a TXT file (one per line) or a BEIR ``corpus.jsonl`` (title + text), in file order."""
    from embtune.search.corpus import read_id_texts

    return [t.strip() for t in read_id_texts(path, "document").values()]


def select_negatives(ranked: np.ndarray, scores: np.ndarray, positive_score: float, exclude: set[int],
                     range_min: int, num_negatives: int, margin: float, report: MiningReport) -> list[int]:
    """The negatives of one pair from its query's ranking (corpus indices ``ranked``, best first, with
    their ``scores``): window ranks ``range_min+1`` … ``len(ranked)``, minus ``exclude`` (known positives,
    the query's text) and anything scoring above ``positive_score − margin``."""
    chosen: list[int] = []
    limit = positive_score - margin
    for idx, score in zip(ranked[range_min:], scores[range_min:]):
        if idx in exclude:
            report.dropped_known_positive += 1
            continue
        if score > limit:
            report.dropped_margin += 1
            continue
        chosen.append(int(idx))
        if len(chosen) == num_negatives:
            break
    return chosen


def mine(model, pairs: str | Path, corpus: str | Path | list[str], output: str | Path | None = None, *,
         range_min: int = 10, range_max: int = 50, num_negatives: int = 1, margin: float = 0.05,
         batch_size: int = 64, device: str | None = None, show_progress: bool = False
         ) -> tuple[list[tuple[str, str, str]], MiningReport]:
    """Mine hard negatives for the (query, positive) pairs of ``pairs`` from ``corpus`` with ``model``.

    ``model``: an encoder (anything with ``encode(texts, batch_size=, normalize=, show_progress=)``) or a
    name/folder :func:`embtune.load` takes; ``pairs``: a ``sent0,sent1`` file;
    ``corpus``: a TXT/BEIR ``corpus.jsonl`` file or a list of texts. Returns the
    ``(sent0, sent1, hard_neg)`` rows and a :class:`MiningReport`; writes them to ``output``
    (``.csv`` with the header ``sent0,sent1,hard_neg``, or ``.jsonl``) when given.
    """
    from embtune.search import topk

    check_settings(range_min, range_max, num_negatives, margin)
    if output is not None:
        out_path = Path(output)
        name = out_path.name[:-3] if out_path.name.endswith(".gz") else out_path.name
        if Path(name).suffix.lower() not in OUTPUT_SUFFIXES or out_path.name.endswith(".gz"):
            raise EmbtuneError(f"--output {output}: expected a .csv or .jsonl file name (the triples file)")
    data = read_train_file(pairs)
    if data.columns != PAIR_COLUMNS:
        raise EmbtuneError(f"{data.path}: expected (query, positive) pairs with columns (sent0, sent1); the file has "
                           f"({', '.join(data.columns)})")
    texts = corpus if isinstance(corpus, list) else read_corpus(corpus)
    corpus_name = "the corpus" if isinstance(corpus, list) else str(corpus)
    if not texts:
        raise EmbtuneError(f"{corpus_name}: the corpus is empty")
    if range_min >= len(texts):
        raise EmbtuneError(f"--range-min {range_min}: {corpus_name} has {len(texts)} texts, so the window "
                           f"(ranks {range_min + 1} … {range_max}) is empty")
    index_of: dict[str, int] = {}
    for i, t in enumerate(texts):
        index_of.setdefault(t.strip(), i)
    same_text: dict[int, list[int]] = {}  # a text's every corpus position (a corpus may repeat a text)
    for i, t in enumerate(texts):
        same_text.setdefault(index_of[t.strip()], []).append(i)

    lines = _data_lines(data.path, len(data))
    missing = [k for k, (_, p) in enumerate(data.examples) if p not in index_of]
    if missing:
        k = missing[0]
        raise located(data.path, lines[k], f"the positive {data.examples[k][1][:80]!r} is not a text of {corpus_name} "
                                           f"({len(missing)} of {len(data)} positives are missing); the corpus must "
                                           "hold every positive (negatives are ranked, and held to the margin, "
                                           "against it)")

    queries = list(dict.fromkeys(q for q, _ in data.examples))
    known: dict[str, set[int]] = {q: set() for q in queries}
    for q, p in data.examples:
        known[q].update(same_text[index_of[p]])
    for q in queries:
        if q in index_of:
            known[q].update(same_text[index_of[q]])

    from embtune.encoders import load_encoder

    enc = load_encoder(str(model), device=device) if isinstance(model, (str, Path)) else model
    k = min(range_max, len(texts))
    if range_max > len(texts):
        logger.warning("--range-max %d is beyond the corpus of %d texts: the window ends at rank %d", range_max, len(texts), k)
    corpus_emb = enc.encode(texts, batch_size=batch_size, normalize=True, show_progress=show_progress)
    query_emb = enc.encode(queries, batch_size=batch_size, normalize=True, show_progress=show_progress)
    ranked, scores = topk(query_emb, corpus_emb, k)
    row_of = {q: r for r, q in enumerate(queries)}

    report = MiningReport(pairs=len(data), queries=len(queries), corpus=len(texts),
                          settings=dict(range_min=range_min, range_max=range_max, num_negatives=num_negatives,
                                        margin=margin))
    rows: list[tuple[str, str, str]] = []
    for q, p in data.examples:
        r = row_of[q]
        pos_score = float(query_emb[r] @ corpus_emb[index_of[p]])
        chosen = select_negatives(ranked[r], scores[r], pos_score, known[q], range_min, num_negatives, margin, report)
        # one row per distinct negative text (a corpus may hold a text twice)
        distinct = list(dict.fromkeys(texts[i].strip() for i in chosen))
        if not distinct:
            report.pairs_without_negative += 1
        elif len(distinct) < num_negatives:
            report.pairs_with_fewer += 1
        rows.extend((q, p, n) for n in distinct)
    report.triples = len(rows)
    if report.pairs_without_negative or report.pairs_with_fewer:
        logger.warning("%d pair(s) got no negative and %d fewer than %d (the window ranks %d…%d held too few "
                       "candidates below the margin)", report.pairs_without_negative, report.pairs_with_fewer,
                       num_negatives, range_min + 1, k)
    if not rows:
        raise EmbtuneError(f"no negatives mined: every candidate in ranks {range_min + 1}…{k} was a known positive or "
                           f"within --margin {margin} of the positive; widen the window (--range-max) or lower --margin")
    if output is not None:
        write_triples(rows, Path(output))
        report.output = str(output)
    logger.info("%s", report.summary())
    return rows, report


def neighbour_rows(model, corpus: str | Path | list[str], output: str | Path | None = None, *,
                   neighbours: int = 2, max_rows: int | None = None, batch_size: int = 64, device: str | None = None,
                   show_progress: bool = False) -> list[tuple[str, ...]]:
    """Rows ``(text, its nearest other text, the next, …)`` (``neighbours`` = 1 or 2, so a row is a pair or a
    three-text row that every reader takes) for the corpus's distinct texts, ranked by ``model``
    (cosine, the exact top-k engine). ``max_rows``: the first N texts in SHA-1 order of their text
    (deterministic, independent of the file's order); neighbours are searched in the whole corpus.
    Written as CSV (header ``sent0,sent1[,hard_neg]``) or JSONL when ``output`` is given."""
    import hashlib

    from embtune.search import topk

    if neighbours not in (1, 2):
        raise EmbtuneError(f"--neighbours {neighbours}: expected 1 or 2 (rows of 2 or 3 texts)")
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise EmbtuneError(f"--max-rows {max_rows!r}: expected a positive integer")
    raw = corpus if isinstance(corpus, list) else read_corpus(corpus)
    texts = list(dict.fromkeys(t.strip() for t in raw if t.strip()))
    name = "the corpus" if isinstance(corpus, list) else str(corpus)
    if len(raw) != len(texts):
        logger.info("%s: %d repeated or blank texts left out (%d distinct)", name, len(raw) - len(texts), len(texts))
    if len(texts) <= neighbours:
        raise EmbtuneError(f"{name}: {len(texts)} distinct texts; rows of {neighbours + 1} need more")
    order = sorted(range(len(texts)), key=lambda i: (hashlib.sha1(texts[i].encode("utf-8")).hexdigest(), texts[i]))
    anchors = order[:max_rows] if max_rows else order
    from embtune.encoders import load_encoder

    enc = load_encoder(str(model), device=device) if isinstance(model, (str, Path)) else model
    emb = enc.encode(texts, batch_size=batch_size, normalize=True, show_progress=show_progress)
    idx, _ = topk(emb[anchors], emb, neighbours + 1)
    rows = [(texts[a], *[texts[j] for j in row if j != a][:neighbours]) for a, row in zip(anchors, idx)]
    logger.info("%d rows of a text and its %d nearest neighbours (corpus of %d distinct texts)", len(rows),
                neighbours, len(texts))
    if output is not None:
        write_rows(rows, Path(output), ("sent0", "sent1", "hard_neg")[: neighbours + 1])
    return rows


def _data_lines(path: str, n: int) -> list[int]:
    """The 1-based file line of each example of a pairs file (for error messages)."""
    from embtune.data.readers import read_text_lines

    p = Path(path)
    lines = read_text_lines(p)
    name = p.name[:-3] if p.name.endswith(".gz") else p.name
    if Path(name).suffix.lower() == ".jsonl":
        nums = [i for i, ln in enumerate(lines, 1) if ln.strip()]
    else:
        delimiter = "\t" if Path(name).suffix.lower() == ".tsv" else ","
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter, quoting=quoting)
        nums = []
        for row in reader:
            if row and any(c.strip() for c in row):
                nums.append(reader.line_num)
        if len(nums) > n:  # a header row
            nums = nums[len(nums) - n:]
    return nums if len(nums) == n else [None] * n


def write_triples(rows: list[tuple[str, str, str]], path: Path) -> None:
    """Write ``(sent0, sent1, hard_neg)`` rows atomically: CSV with a header, or JSONL."""
    write_rows(rows, path, ("sent0", "sent1", "hard_neg"))


def write_rows(rows: list[tuple[str, ...]], path: Path, columns: tuple[str, ...]) -> None:
    """Write rows atomically: CSV with the header ``columns``, or JSONL with them as fields."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            if path.suffix.lower() == ".jsonl":
                for r in rows:
                    f.write(json.dumps(dict(zip(columns, r)), ensure_ascii=False) + "\n")
            else:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(columns)
                w.writerows(rows)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise EmbtuneError(f"--output {path}: cannot write the rows ({e})") from e
