"""The user's inputs read and checked, and the selection task every stage of ``embtune adapt`` is chosen on.

Selection must predict the held-out result, so it is scored the way the user's task is:

- **(query, positive) pairs** (``--pairs``): a share of the queries (``--dev-fraction``, the first in SHA-1
  order of their text, :func:`embtune.data.dev_split.split_groups`) is held out of training; each ranks the
  **whole corpus** (every positive is a corpus text), relevant = its positives. The same retrieval over
  the same corpus that the user's held-out queries face, not the few hundred texts of the pairs file.
- **scored / 0-1 pairs** (``--scored``): held-out groups, Spearman or AP of the cosine.
- **class-labelled texts** (``--classes``): held-out texts, same-class MAP.
- **corpus and teacher only**: agreement with the teacher — a few hundred corpus texts (the first in SHA-1
  order) are held out of training as queries, relevant = the teacher's 10 nearest other corpus texts, the
  rest of the corpus ranked. It measures how much of the teacher's ranking the student reproduces on texts
  it never trained on; it is a proxy, as good as the teacher is on the user's task.
- **labels and a teacher**: the labels select, and the same agreement task **guards**: a checkpoint that
  loses more than ``--teacher-guard`` of it against the stage's start is not kept. On the bundled forum a
  guided-pairs checkpoint gained 2.1 nDCG@10 on 79 selection queries (bootstrap confidence ≥ 0.9) while it fell
  1.1 on the 409 held-out ones — and its top-10 agreement with the teacher on held-out titles fell from 57.9%
  to 53.6%: drift the small labelled split could not see.

Everything is written under ``OUTPUT/data/`` (the training files of each stage, the selection task as a BEIR
folder or a pairs file), so a stage is an ordinary ``embtune train`` run that can be rerun by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embtune.data.dev_split import group_folds, hold_out, write_held_out, write_rows
from embtune.data.readers import (BINARY_PAIR_COLUMNS, CLASS_COLUMNS, PAIR_COLUMNS, SCORED_PAIR_COLUMNS,
                                  TRIPLE_COLUMNS, TrainData, read_train_file)
from embtune.errors import EmbtuneError, located

logger = logging.getLogger(__name__)

#: teacher-agreement selection: held-out corpus texts (at most this many, and at most 5% of the corpus)
AGREEMENT_QUERIES = 300
AGREEMENT_DEPTH = 10


@dataclass
class Inputs:
    """What ``adapt`` trains and selects on, all files under ``OUTPUT/data``."""

    corpus: dict[str, str]  # id -> text, as given
    train_files: dict[str, Path] = field(default_factory=dict)  # stage data kind -> training file
    selection: str = ""  # an --eval-task spec (named "select")
    selection_kind: str = ""  # pairs, scored, classes or teacher-agreement
    #: with a teacher and labelled selection: the teacher-agreement task (named "agree") that guards it
    guard: str = ""
    counts: dict = field(default_factory=dict)
    #: cross-fitted selection (``--cross-fit K``): the labelled input it applies to, and per fold (the rows
    #: outside the fold to train on, the fold's rows as the selection task); the selection task is then every row
    cross_fit_data: str = ""
    folds: list[tuple[Path, str]] = field(default_factory=list)

    def rows(self, kind: str) -> int:
        """Training rows of a stage's data (``corpus``: texts)."""
        with open(self.train_files[kind], encoding="utf-8") as f:
            n = sum(1 for ln in f if ln.strip())
        return n if kind == "corpus" else n - 1  # the labelled files have a header row

    @property
    def metric(self) -> str:
        return {"pairs": "select/ndcg@10", "teacher-agreement": "select/ndcg@10", "scored": "select/spearman",
                "binary": "select/ap", "classes": "select/map"}[self.selection_kind]


def read_corpus(path: Path) -> dict[str, str]:
    from embtune.search.corpus import read_id_texts

    corpus = read_id_texts(path, "document")
    empty = [i for i, t in corpus.items() if not t.strip()]
    if empty:
        raise EmbtuneError(f"--corpus {path}: document {empty[0]!r} has an empty text ({len(empty)} such)")
    return corpus


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _labelled(flag: str, path: str, layouts: tuple[tuple[str, ...], ...], what: str) -> TrainData:
    data = read_train_file(path)
    if data.columns not in layouts:
        raise EmbtuneError(f"--{flag} {path}: expected {what}; the file has columns ({', '.join(data.columns)})"
                           + ("" if flag == "pairs" else " — a header row names the columns"))
    return data


def _write_beir(folder: Path, corpus: dict[str, str], queries: dict[str, str], qrels: list[tuple[str, str]]) -> None:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, t in corpus.items():
            f.write(json.dumps({"_id": i, "text": t}, ensure_ascii=False) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for i, t in queries.items():
            f.write(json.dumps({"_id": i, "text": t}, ensure_ascii=False) + "\n")
    with open(folder / "qrels" / "dev.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d in qrels:
            f.write(f"{q}\t{d}\t1\n")


def _write_corpus_txt(path: Path, texts: list[str]) -> None:
    path.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")


def distinct_texts(corpus: dict[str, str]) -> list[str]:
    texts = list(dict.fromkeys(t.strip().replace("\n", " ") for t in corpus.values()))
    if len(texts) < len(corpus):
        logger.info("--corpus: %d repeated texts counted once (%d distinct of %d)", len(corpus) - len(texts),
                    len(texts), len(corpus))
    return texts


@dataclass
class ReadInputs:
    """Every input read and checked, nothing written yet (a bad file fails before any earlier run is cleared)."""

    corpus_path: Path
    corpus: dict[str, str]
    texts: list[str]  # distinct corpus texts
    pairs: TrainData | None = None
    scored: TrainData | None = None
    classes: TrainData | None = None
    ids_of: dict[str, list[str]] = field(default_factory=dict)  # corpus text -> its ids


def read_inputs(cfg, corpus_path: Path) -> ReadInputs:
    corpus = read_corpus(corpus_path)
    texts = distinct_texts(corpus)
    if len(texts) < 3:
        raise EmbtuneError(f"--corpus {corpus_path}: {len(texts)} distinct text(s); adapt needs at least 3")
    r = ReadInputs(corpus_path, corpus, texts)
    for i, t in corpus.items():
        r.ids_of.setdefault(t.strip(), []).append(i)
    if cfg.pairs:
        r.pairs = _labelled("pairs", cfg.pairs, (PAIR_COLUMNS, TRIPLE_COLUMNS), "(query, positive) pairs: "
                            "sent0,sent1 or sent0,sent1,hard_neg")
        from embtune.training.mining import _data_lines

        missing = [k for k, ex in enumerate(r.pairs.examples) if ex[1].strip() not in r.ids_of]
        if missing:
            k, lines = missing[0], _data_lines(r.pairs.path, len(r.pairs))
            raise located(r.pairs.path, lines[k], f"--pairs: the positive {r.pairs.examples[k][1][:80]!r} is not a "
                                                  f"text of --corpus {corpus_path} ({len(missing)} of {len(r.pairs)} "
                                                  "positives are missing); the selection ranks the corpus, so it "
                                                  "must hold every positive")
    if cfg.scored:
        r.scored = _labelled("scored", cfg.scored, (SCORED_PAIR_COLUMNS, BINARY_PAIR_COLUMNS),
                             "scored or 0/1 pairs: sent0,sent1,score or sent0,sent1,label")
    if cfg.classes:
        r.classes = _labelled("classes", cfg.classes, (CLASS_COLUMNS,), "class-labelled texts: text,label")
    return r


def prepare_inputs(cfg, read: ReadInputs, data_dir: Path, teacher_encoder=None, folded: str = "") -> Inputs:
    """Write the stages' training files and the selection task (and the teacher guard) into ``data_dir``.

    ``teacher_encoder``: ``(texts) -> normalized embeddings``, for teacher-agreement selection or guard;
    ``folded``: the labelled input selected by cross-fitting (:func:`cross_fitted`), or ""."""
    data_dir.mkdir(parents=True, exist_ok=True)
    corpus, texts = read.corpus, read.texts
    inputs = Inputs(corpus)
    inputs.counts.update(corpus_documents=len(corpus), corpus_distinct_texts=len(texts))
    held_texts: set[str] = set()
    if read.pairs is not None:
        data = read.pairs
        train_path = data_dir / "pairs-train.tsv"
        if folded == "pairs":  # every query selects, each scored by the fold model that did not train on it
            write_rows(data, train_path)
            held = data
            for j, split in enumerate(group_folds(data, cfg.cross_fit), 1):
                write_rows(split.train, data_dir / f"pairs-fold{j}-train.tsv")
                _write_pair_selection(data_dir / f"selection-fold{j}", corpus, split.held_out, read.ids_of)
                inputs.folds.append((data_dir / f"pairs-fold{j}-train.tsv", f"select=beir:{data_dir / f'selection-fold{j}'}"))
            inputs.cross_fit_data = "pairs"
        else:
            split = hold_out(data, cfg.dev_fraction)
            write_rows(split.train, train_path)
            held = split.held_out
        inputs.train_files["pairs"] = train_path
        queries = _write_pair_selection(data_dir / "selection", corpus, held, read.ids_of)
        inputs.selection, inputs.selection_kind = f"select=beir:{data_dir / 'selection'}", "pairs"
        inputs.counts.update(pairs=len(data), pairs_train=len(data) if folded else len(split.train),
                             selection_queries=queries, selection_corpus=len(corpus),
                             **({"cross_fit_folds": cfg.cross_fit} if folded else {}))
    if read.scored is not None:
        data = read.scored
        inputs.train_files["scored"] = _split_labelled(inputs, data, cfg, data_dir, "scored",
                                                       "scored" if data.columns == SCORED_PAIR_COLUMNS else "binary",
                                                       folded == "scored")
    if read.classes is not None:
        inputs.train_files["classes"] = _split_labelled(inputs, read.classes, cfg, data_dir, "classes", "classes")
    if cfg.teacher and teacher_encoder is not None:  # the selection task, or the guard beside labelled selection
        held_texts = _teacher_agreement(inputs, texts, data_dir, teacher_encoder)
    corpus_train = [t for t in texts if t not in held_texts]
    _write_corpus_txt(data_dir / "corpus.txt", corpus_train)
    inputs.train_files["corpus"] = data_dir / "corpus.txt"
    inputs.counts["corpus_train_texts"] = len(corpus_train)
    return inputs


def cross_fitted(cfg, read: ReadInputs, stages: list) -> str:
    """The labelled input whose stage is selected by cross-fitting (``--cross-fit K``, K ≥ 2), or "" (logged).

    It applies when the labels are one file of pairs or of scored/0-1 pairs, trained on by one stage of the plan,
    the last: a later stage would be selected (or guarded) on rows the refit trained on — which also rules out two
    labelled inputs — and class files keep no per-item scores (the paired test needs them). It needs at least 2K
    groups (queries, first texts). Otherwise the run holds out ``--dev-fraction`` as before."""
    if cfg.cross_fit < 2:
        return ""
    given = [k for k in ("pairs", "scored", "classes") if getattr(read, k) is not None]
    if not given:
        return ""
    why = ""
    labelled = [s for s in stages if s.data != "corpus"]
    if given not in (["pairs"], ["scored"]):
        why = f"it applies to one file of pairs or scored pairs (given: {', '.join(given)})"
    elif len(labelled) != 1 or stages[-1] is not labelled[0]:
        why = (f"it applies when one stage trains on the labels and is the last (the plan: "
               f"{', '.join(s.name for s in stages)})")
    else:
        data = getattr(read, given[0])
        groups = len({ex[0] for ex in data.examples})
        if groups < 2 * cfg.cross_fit:
            why = f"--{given[0]} {data.path} has {groups} distinct group(s) (first texts), fewer than {2 * cfg.cross_fit}"
    if why:
        logger.warning("--cross-fit %d: not used — %s; selecting on a held-out --dev-fraction %s instead",
                       cfg.cross_fit, why, cfg.dev_fraction)
        return ""
    logger.info("--cross-fit %d: the %s stage is selected on every labelled group, %d folds (--dev-fraction is not "
                "used)", cfg.cross_fit, labelled[0].name, cfg.cross_fit)
    return given[0]


def _write_pair_selection(folder: Path, corpus: dict[str, str], held: TrainData, ids_of: dict[str, list[str]]) -> int:
    """The held-out (query, positive) rows as a BEIR folder: each query ranks the whole corpus; returns the
    number of queries."""
    queries, qrels = {}, []
    for q, p, *_ in held.examples:
        qid = queries.setdefault(q, f"q{len(queries)}")
        qrels.extend((qid, d) for d in ids_of[p.strip()])
    _write_beir(folder, corpus, {v: k for k, v in queries.items()}, sorted(set(qrels)))
    return len(queries)


def _split_labelled(inputs: Inputs, data: TrainData, cfg, data_dir: Path, name: str, kind: str,
                    folded: bool = False) -> Path:
    """Hold out groups of a labelled file; the held-out rows are the selection task when no earlier input
    gave one (pairs come first), else they are trained on too. ``folded``: cross-fitted selection — every row
    is trained on (the refit) and selects (the fold files)."""
    train_path = data_dir / f"{name}-train.tsv"
    if inputs.selection:  # selection is already on the pairs: train on all of it
        write_rows(data, train_path)
        return train_path
    if folded:
        write_rows(data, train_path)
        for j, split in enumerate(group_folds(data, cfg.cross_fit), 1):
            write_rows(split.train, data_dir / f"{name}-fold{j}-train.tsv")
            write_held_out(split, data_dir / f"{name}-selection-fold{j}.tsv")
            inputs.folds.append((data_dir / f"{name}-fold{j}-train.tsv",
                                 f"select={kind}:{data_dir / f'{name}-selection-fold{j}.tsv'}"))
        write_rows(data, data_dir / f"{name}-selection.tsv")
        inputs.cross_fit_data = name
        inputs.selection, inputs.selection_kind = f"select={kind}:{data_dir / f'{name}-selection.tsv'}", kind
        inputs.counts.update({f"{name}": len(data), f"{name}_train": len(data), "selection_rows": len(data),
                              "cross_fit_folds": cfg.cross_fit})
        return train_path
    split = hold_out(data, cfg.dev_fraction)
    write_rows(split.train, train_path)
    write_held_out(split, data_dir / f"{name}-selection.tsv")
    inputs.selection, inputs.selection_kind = f"select={kind}:{data_dir / f'{name}-selection.tsv'}", kind
    inputs.counts.update({f"{name}": len(data), f"{name}_train": len(split.train),
                          "selection_rows": len(split.held_out)})
    return train_path


def _teacher_agreement(inputs: Inputs, texts: list[str], data_dir: Path, teacher_encoder) -> set[str]:
    """Hold out corpus texts as queries whose relevant documents are the teacher's nearest other texts."""
    from embtune.search import topk

    n = min(AGREEMENT_QUERIES, max(1, len(texts) // 20))
    if len(texts) - n <= AGREEMENT_DEPTH:
        raise EmbtuneError(f"--corpus: {len(texts)} distinct texts are too few to select on agreement with the "
                           f"teacher (queries + {AGREEMENT_DEPTH} neighbours each); give labels or more text")
    order = sorted(texts, key=lambda t: (_sha(t), t))
    held = order[:n]
    held_set = set(held)
    rest = [t for t in texts if t not in held_set]
    emb = teacher_encoder(held + rest)
    idx, _ = topk(emb[:n], emb[n:], AGREEMENT_DEPTH)
    docs = {f"d{i}": t for i, t in enumerate(rest)}
    queries = {f"q{i}": t for i, t in enumerate(held)}
    qrels = [(f"q{i}", f"d{j}") for i, row in enumerate(idx) for j in row]
    if inputs.selection:  # labels select; agreement guards (a checkpoint may not drift far from the teacher)
        _write_beir(data_dir / "agreement", docs, queries, qrels)
        inputs.guard = f"agree=beir:{data_dir / 'agreement'}"
        inputs.counts.update(guard_queries=n)
        logger.info("guard: agreement with the teacher's %d nearest texts for %d held-out corpus texts", AGREEMENT_DEPTH, n)
    else:
        _write_beir(data_dir / "selection", docs, queries, qrels)
        inputs.selection, inputs.selection_kind = f"select=beir:{data_dir / 'selection'}", "teacher-agreement"
        inputs.counts.update(selection_queries=n, selection_corpus=len(docs))
        logger.info("selection: agreement with the teacher's %d nearest texts for %d held-out corpus texts",
                    AGREEMENT_DEPTH, n)
    return held_set

