"""Word vectors taken from a sentence encoder: the start of a fast student (``embtune word-vectors``).

A word-vector student (``mean`` or ``textcnn``) learns from a teacher faster and further when its
vectors already come from that teacher. Following Model2Vec (Tulkens & van Dongen 2024), each word of
a frequency-ordered vocabulary is encoded *on its own* by the teacher, the vectors are centred and
reduced with PCA (fitted on the most frequent words), and each is scaled by a Zipf weight that grows
with the word's rank: with p(w) ∝ 1/rank (Zipf's law), log(1 + rank) plays the part of SIF's
down-weighting of frequent words (Arora et al. 2017, "a/(a + p(w))") for a plain average.

Measured (docs/small-models.md): the average of all-MiniLM-L6-v2's vectors for GloVe's 100,000 most
frequent words, PCA 256, Zipf-weighted, scores 67.30 on the 7 STS tasks with no training (the average
of GloVe-50d: 45.51); without the weights, 63.58 vs 71.28 on the STS-B/SICK-R dev average.

The output is a GloVe text file (``word v1 v2 ...``), which every word-vector encoder reads:
``embtune train --model vectors.txt --encoder textcnn ...``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

WEIGHTINGS = ("zipf", "none")


def zipf_weights(n: int) -> np.ndarray:
    """log(1 + rank) for ranks 1..n (the vocabulary in frequency order)."""
    return np.log1p(np.arange(1, n + 1, dtype=np.float64))


def pca_project(vectors: np.ndarray, dim: int, fit_rows: int | None = None) -> np.ndarray:
    """Centre the rows and project them on their top ``dim`` principal components, fitted on the first
    ``fit_rows`` rows (all when None); the mean is that of the fitted rows."""
    x = np.asarray(vectors, dtype=np.float64)
    if not 1 <= dim <= x.shape[1]:
        raise EmbtuneError(f"--dim must be between 1 and the teacher's width {x.shape[1]}, got {dim}")
    fit = x[:fit_rows] if fit_rows else x
    if fit.shape[0] < dim:
        raise EmbtuneError(f"--dim {dim}: PCA needs at least {dim} words, got {fit.shape[0]}")
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    return (x - mean) @ vt[:dim].T


def teacher_word_vectors(encoder, words: Sequence[str], dim: int | None = 256, weighting: str = "zipf",
                         batch_size: int = 512, fit_rows: int = 50_000, precision: str = "fp32") -> np.ndarray:
    """One vector per word (``words`` in frequency order): the teacher's embedding of the word alone,
    PCA-reduced to ``dim`` (None: kept as is, centred) and Zipf-weighted (``weighting="zipf"``)."""
    if weighting not in WEIGHTINGS:
        raise EmbtuneError(f"--weighting: expected one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    emb = np.asarray(encoder.encode(list(words), batch_size=batch_size, precision=precision), dtype=np.float64)
    vec = pca_project(emb, dim if dim is not None else emb.shape[1], fit_rows)
    if weighting == "zipf":
        vec = vec * zipf_weights(len(words))[:, None]
    return vec.astype(np.float32)


def vocabulary(words: Sequence[str]) -> tuple[list[str], int]:
    """The words a GloVe text file can hold (no whitespace inside, not empty, first occurrence), in order,
    and how many were left out."""
    seen: set[str] = set()
    out = []
    for w in words:
        if w and not any(c.isspace() for c in w) and w not in seen:
            seen.add(w)
            out.append(w)
    return out, len(words) - len(out)


def write_glove_text(path: str | Path, words: Sequence[str], vectors: np.ndarray) -> None:
    """``word v1 v2 ...`` per line (GloVe's text format), 6 significant digits."""
    if len(words) != len(vectors):
        raise ValueError(f"{len(words)} words for {len(vectors)} vectors")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for w, v in zip(words, vectors):
            f.write(w + " " + " ".join(f"{x:.6g}" for x in v) + "\n")
