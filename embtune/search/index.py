"""A searchable index of documents embedded by one model.

>>> index = embtune.Index.build("minilm-l6", ["A man plays guitar.", "A dog runs."], ids=["a", "b"])
>>> ids, scores = index.search(["someone playing music"], k=1)      # ([['a']], array([[0.6…]]))
>>> index.add(["A cat sleeps."], ids=["c"]); index.save("my-index")
>>> index = embtune.Index.load("my-index")                          # loads the model it was built with

Scores are cosine similarities (embeddings normalised) or inner products (``normalize=False``).
Exact search uses the top-k engine (:func:`embtune.search.topk`: ties by id descending, as trec_eval).
With ``quantize="int8"`` or ``"binary"`` the search runs over quantized codes and the top
``k × rescore`` candidates are rescored with the float vectors (kept on disk, memory-mapped, after
``load``); see :mod:`embtune.search.quantize`. With ``ann="hnsw"`` / ``"ivf"`` / ``"flat"`` (faiss, an
extra) the search runs on a faiss index built over the float vectors — approximate for hnsw/ivf, its
recall against exact search measured in ``docs/search.md`` — and the candidates it returns are put in
the engine's order (score, then id as trec_eval breaks ties).

Folder layout (``save``): ``index.json`` (format, model name/path and a SHA-256 of its weights,
dimension, normalize, quantization, count, SHA-256 of each file), ``docs.jsonl`` (``{"id", "text"}``
per document, in index order), ``embeddings.npy`` (float32 [n, dim]) and, when quantized,
``codes.npy`` (+ ``calibration.npy`` for int8), with ``ann`` the faiss index ``ann.faiss``. ``load`` checks every file's checksum and shape: a
changed or truncated file is an error naming it, and so is a model with another dimension or other
weights than the index was built with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from embtune.errors import EmbtuneError
from embtune.search import quantize as qz
from embtune.search.corpus import read_id_texts
from embtune.search.faiss_backend import KINDS as ANN_KINDS
from embtune.search.faiss_backend import FaissSearcher
from embtune.search.topk import as_matrix, tie_keys, topk
from embtune.utils import weights_digest

logger = logging.getLogger(__name__)

FORMAT = "embtune-index/1"
META = "index.json"


def weights_sha256(encoder) -> str:
    """The encoder's weights digest (:func:`embtune.utils.weights_digest`, the caches' key); the ONNX
    backend is keyed by the torch encoder it wraps."""
    return weights_digest(getattr(encoder, "torch_encoder", encoder))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_model(model, device: str | None = None):
    if isinstance(model, (str, Path)):
        from embtune.encoders import load_encoder

        return str(model), load_encoder(str(model), device=device)
    name = str(getattr(model, "source_path", "") or type(model).__name__)
    return name, model


class Index:
    """Documents (ids, texts) and their embeddings under one model; see the module docstring."""

    def __init__(self, model, normalize: bool = True, quantize: str | None = None, rescore: int = 4,
                 batch_size: int = 64, model_name: str | None = None, device: str | None = None,
                 ann: str | None = None, ann_options: Mapping | None = None):
        if quantize is not None and quantize not in qz.QUANTIZATIONS:
            raise EmbtuneError(f"unknown quantization {quantize!r}; expected one of: {', '.join(qz.QUANTIZATIONS)}")
        if ann is not None and ann not in ANN_KINDS:
            raise EmbtuneError(f"unknown ann index {ann!r}; expected one of: {', '.join(ANN_KINDS)} (faiss)")
        if ann is not None and quantize is not None:
            raise EmbtuneError("--ann and --quantize cannot be combined: a faiss index searches the float vectors, "
                               "quantized codes are searched by the exact engine")
        if isinstance(rescore, bool) or not isinstance(rescore, int) or rescore < 1:
            raise EmbtuneError(f"rescore must be an integer >= 1 (candidates = k × rescore), got {rescore!r}")
        name, self.encoder = _load_model(model, device)
        self.model_name = model_name or name
        self.normalize = normalize
        self.quantize = quantize
        self.rescore = rescore
        self.batch_size = batch_size
        self.dim = int(self.encoder.embedding_dim)
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.embeddings = np.zeros((0, self.dim), dtype=np.float32)
        self.codes: np.ndarray | None = None
        self.calibration: np.ndarray | None = None
        self.ann, self.ann_options = ann, dict(ann_options or {})
        self._searcher: FaissSearcher | None = None  # built on the first search, dropped when documents are added
        self._pos: dict[str, int] = {}
        self._keys: np.ndarray | None = None

    # ---- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, model, corpus: str | Path | Sequence[str] | Mapping[str, str], ids: Sequence[str] | None = None,
              **options) -> "Index":
        """An index over ``corpus``: a list of texts (with ``ids``, default ``"0", "1", …``), a
        ``{id: text}`` mapping, or a file (BEIR ``corpus.jsonl`` / JSONL with ``_id``/``id`` / TSV
        ``id<TAB>text`` / TXT with the line number as id)."""
        index = cls(model, **options)
        texts, ids = _corpus_texts(corpus, ids)
        if not texts:
            raise EmbtuneError("the corpus is empty: nothing to index")
        index.add(texts, ids)
        return index

    def __len__(self) -> int:
        return len(self.ids)

    def text(self, doc_id: str) -> str:
        """The text of the document with id ``doc_id``."""
        if doc_id not in self._pos:
            raise EmbtuneError(f"no document with id {doc_id!r} in the index")
        return self.texts[self._pos[doc_id]]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(list(texts), batch_size=self.batch_size, normalize=self.normalize)

    def add(self, texts: Sequence[str], ids: Sequence[str] | None = None) -> None:
        """Embed and append documents; ``ids`` default to their positions in the index. An id already
        in the index (or twice in ``ids``) is an error."""
        if isinstance(texts, str):
            raise EmbtuneError("add() takes a list of texts, not a single string")
        texts = list(texts)
        ids = [str(len(self.ids) + i) for i in range(len(texts))] if ids is None else [str(i) for i in ids]
        if len(ids) != len(texts):
            raise EmbtuneError(f"{len(ids)} ids for {len(texts)} texts")
        seen: set[str] = set()
        for i in ids:
            if i in self._pos or i in seen:
                raise EmbtuneError(f"duplicate document id {i!r}: ids must be unique in an index")
            seen.add(i)
        if not texts:
            return
        self.add_embeddings(self.encode(texts), texts, ids)

    def add_embeddings(self, emb, texts: Sequence[str], ids: Sequence[str]) -> None:
        """Append documents whose embeddings (by this index's model and normalisation) are already computed."""
        emb = as_matrix(emb, "embeddings").astype(np.float32, copy=False)
        ids, texts = [str(i) for i in ids], list(texts)
        if emb.shape != (len(ids), self.dim) or len(texts) != len(ids):
            raise EmbtuneError(f"{len(ids)} ids, {len(texts)} texts and embeddings of shape {emb.shape}: "
                               f"expected one {self.dim}-dimensional row per id")
        seen: set[str] = set()
        dup = None
        for i in ids:
            if i in self._pos or i in seen:
                dup = i
                break
            seen.add(i)
        if dup is not None:
            raise EmbtuneError(f"duplicate document id {dup!r}: ids must be unique in an index")
        start = len(self.ids)
        self.ids += ids
        self.texts += texts
        self._pos.update({d: start + i for i, d in enumerate(ids)})
        self.embeddings = np.concatenate([np.asarray(self.embeddings), emb.astype(np.float32)])
        self._keys = None
        self._searcher = None
        if self.quantize == "int8" and self.calibration is None:
            self.calibration = qz.int8_calibrate(self.embeddings)  # calibrated on the first batch of documents
        if self.quantize:
            new = qz.encode(emb, self.quantize, self.calibration)
            self.codes = new if self.codes is None else np.concatenate([self.codes, new])

    # ---- searching ------------------------------------------------------------------------
    def search(self, queries: str | Sequence[str], k: int = 10) -> tuple[list[list[str]], np.ndarray]:
        """Top ``k`` documents per query: ``(ids [q][k], scores float32 [q, k])``, best first."""
        if isinstance(queries, str):
            queries = [queries]
        k = self._check_k(k)
        q = self.encode(list(queries)) if queries else np.zeros((0, self.dim), np.float32)
        idx, scores = self.search_embeddings(q, k)
        return [[self.ids[j] for j in row] for row in idx], scores

    def _check_k(self, k: int, flag: str = "k") -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise EmbtuneError(f"{flag} must be a positive integer, got {k!r}")
        if not self.ids:
            raise EmbtuneError("the index is empty")
        if k > len(self.ids):
            logger.warning("%s=%d is larger than the index (%d documents): returning all %d", flag, k,
                           len(self.ids), len(self.ids))
            return len(self.ids)
        return int(k)

    def search_embeddings(self, query_emb, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices [q, k], scores [q, k])`` for query embeddings (normalise them as the index does)."""
        k = self._check_k(k)
        q = as_matrix(query_emb, "queries").astype(np.float32, copy=False)
        if q.shape[1] != self.dim:
            raise EmbtuneError(f"query dimension {q.shape[1]} != index dimension {self.dim}")
        if self._keys is None:
            self._keys = tie_keys(self.ids, len(self.ids))
        if self.ann:
            return self._ann_search(q, k)
        if not self.quantize:
            return topk(q, self.embeddings, k, doc_ids=self.ids)
        n = len(self.ids)
        cand, _ = qz.blocked_topk(qz.query_vectors(q, self.quantize), n,
                                  qz.decoder(self.codes, self.quantize, self.dim, self.calibration),
                                  min(n, k * self.rescore))
        # rescoring: float query · float document, for the candidates only
        flat = np.unique(cand)
        vecs = np.asarray(self.embeddings[flat], dtype=np.float32)
        where = np.searchsorted(flat, cand)
        sc = np.einsum("qd,qcd->qc", q, vecs[where])
        order = np.lexsort((-self._keys[cand], -sc), axis=-1)[:, :k]
        return np.take_along_axis(cand, order, 1), np.take_along_axis(sc, order, 1).astype(np.float32)

    def _ann_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._searcher is None:
            self._searcher = FaissSearcher(self.ann, **self.ann_options).build(np.asarray(self.embeddings))
        idx, sc = self._searcher.search(q, k)
        # faiss pads with -1 when it finds fewer than k (an IVF probing too few cells): kept out, said once
        found = idx >= 0
        if not found.all():
            logger.warning("the %s index returned fewer than k=%d results for %d of %d queries (searched too few "
                           "cells/neighbours)", self.ann, k, int((~found.all(1)).sum()), len(q))
        sc = np.where(found, sc, -np.inf)
        keys = np.where(found, self._keys[np.where(found, idx, 0)], -1)
        order = np.lexsort((-keys, -sc), axis=-1)
        return np.take_along_axis(idx, order, 1), np.take_along_axis(sc, order, 1).astype(np.float32)

    # ---- persistence ----------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = ["docs.jsonl", "embeddings.npy"]
        # each file is written beside its final name and renamed into place (a loaded index keeps its
        # memory-mapped vectors valid while being saved over)
        tmp = folder / "docs.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for d, t in zip(self.ids, self.texts):
                f.write(json.dumps({"id": d, "text": t}, ensure_ascii=False) + "\n")
        os.replace(tmp, folder / "docs.jsonl")
        _save_npy(folder / "embeddings.npy", np.asarray(self.embeddings, dtype=np.float32))
        if self.quantize:
            _save_npy(folder / "codes.npy", self.codes)
            files.append("codes.npy")
            if self.calibration is not None:
                _save_npy(folder / "calibration.npy", self.calibration)
                files.append("calibration.npy")
        if self.ann:
            if self._searcher is None:
                self._searcher = FaissSearcher(self.ann, **self.ann_options).build(np.asarray(self.embeddings))
            self._searcher.save(folder / "ann.faiss")
            files.append("ann.faiss")
        meta = {
            "format": FORMAT,
            "model": {"name": self.model_name, "path": str(getattr(self.encoder, "source_path", "") or ""),
                      "weights_sha256": weights_sha256(self.encoder)},
            "dimension": self.dim, "normalize": self.normalize, "quantize": self.quantize,
            "rescore": self.rescore, "count": len(self.ids), "ann": self.ann, "ann_options": self.ann_options,
            "files": {name: _file_sha256(folder / name) for name in files},
        }
        (folder / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, model=None, device: str | None = None) -> "Index":
        """Read an index saved by :meth:`save`. ``model`` (an encoder or a name/path) defaults to the
        one recorded in ``index.json``; another model (dimension or weights) is an error."""
        folder = Path(folder)
        meta_path = folder / META
        if not meta_path.is_file():
            raise EmbtuneError(f"{folder}: not an embtune index ({META} not found); build one with `embtune index`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                raise EmbtuneError(f"{meta_path}: unknown index format {meta.get('format')!r}; expected {FORMAT!r}")
            m, dim, count, files = meta["model"], int(meta["dimension"]), int(meta["count"]), dict(meta["files"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise EmbtuneError(f"{meta_path}: corrupt index metadata ({type(e).__name__}: {e})") from e
        for name, digest in files.items():
            p = folder / name
            if not p.is_file():
                raise EmbtuneError(f"{p}: missing index file")
            if _file_sha256(p) != digest:
                raise EmbtuneError(f"{p}: corrupt index file (its SHA-256 differs from the one in {META}); rebuild the index")
        if model is None:
            model = m.get("path") or m["name"]
            if not Path(model).exists():
                model = m["name"]
        index = cls(model, normalize=meta["normalize"], quantize=meta["quantize"], rescore=int(meta["rescore"]),
                    model_name=m["name"], device=device, ann=meta.get("ann"), ann_options=meta.get("ann_options"))
        if index.dim != dim:
            raise EmbtuneError(f"{folder}: the index was built with model {m['name']!r} ({dim} dimensions); the model "
                               f"given ({index.model_name}) has {index.dim} dimensions")
        have = weights_sha256(index.encoder)
        if have != m["weights_sha256"]:
            raise EmbtuneError(f"{folder}: the index was built with model {m['name']!r} (weights sha256 "
                               f"{m['weights_sha256'][:12]}…); the model given ({index.model_name}) has other weights "
                               f"({have[:12]}…): its embeddings would not match. Load with that model or rebuild the index")
        ids, texts = [], []
        from embtune.data.readers import read_text_lines

        for i, ln in enumerate(read_text_lines(folder / "docs.jsonl"), 1):
            try:
                obj = json.loads(ln)
                ids.append(str(obj["id"]))
                texts.append(obj["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise EmbtuneError(f"{folder / 'docs.jsonl'}:{i}: corrupt index file (expected {{\"id\", \"text\"}})") from e
        emb = _load_npy(folder / "embeddings.npy", mmap=bool(meta["quantize"]))
        if len(ids) != count or emb.shape != (count, dim) or len(set(ids)) != count:
            raise EmbtuneError(f"{folder}: corrupt index ({len(ids)} documents, embeddings {emb.shape}, "
                               f"expected {count} × {dim} with unique ids)")
        index.ids, index.texts, index.embeddings = ids, texts, emb
        index._pos = {d: i for i, d in enumerate(ids)}
        if index.quantize:
            index.codes = _load_npy(folder / "codes.npy")
            if index.quantize == "int8":
                index.calibration = _load_npy(folder / "calibration.npy")
        if index.ann:
            index._searcher = FaissSearcher.load(folder / "ann.faiss", index.ann, count, dim, **index.ann_options)
        return index


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise EmbtuneError(f"{path}: corrupt index file ({e})") from e


def _corpus_texts(corpus, ids) -> tuple[list[str], list[str] | None]:
    if isinstance(corpus, (str, Path)):
        if ids is not None:
            raise EmbtuneError("ids come from the corpus file; do not pass ids with a file")
        data = read_id_texts(corpus, "document")
        return list(data.values()), list(data)
    if isinstance(corpus, Mapping):
        return [str(t) for t in corpus.values()], [str(i) for i in corpus]
    return list(corpus), None if ids is None else [str(i) for i in ids]
