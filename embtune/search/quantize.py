"""Embedding quantization for the index: int8 (per-dimension calibrated scale) and binary (sign bits).

- **int8**: for every dimension j, the range [min_j, max_j] seen at calibration is cut into 255
  steps, ``code = round((x - min_j) / step_j) - 128`` (clipped to int8), decoded as
  ``(code + 128) * step_j + min_j``. 4× smaller than float32.
- **binary**: one bit per dimension, ``x > 0``, packed 8 to a byte (``numpy.packbits``); 32× smaller.
  The inner product of the ±1 vectors equals ``dim - 2 · hamming``, so ranking by it ranks by
  Hamming distance.

Search over codes (:func:`blocked_topk`) decodes the corpus one block at a time and scores it with
a float matmul, so memory stays ``codes + block × dim`` floats. Candidates found this way are then
rescored with the float vectors (``Index``: the top ``k × rescore``), as in Yamada et al. 2021 (binary
passage retriever: Hamming candidates, then rescoring) and sentence-transformers' embedding
quantization guide.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from embtune.errors import EmbtuneError

QUANTIZATIONS = ("int8", "binary")


def int8_calibrate(emb: np.ndarray) -> np.ndarray:
    """``[2, dim]`` float32: row 0 the per-dimension minimum, row 1 the step (range / 255, never 0)."""
    lo, hi = emb.min(axis=0), emb.max(axis=0)
    step = np.maximum(hi - lo, 1e-12) / 255.0
    return np.stack([lo, step]).astype(np.float32)


def int8_encode(emb: np.ndarray, calib: np.ndarray) -> np.ndarray:
    codes = np.rint((emb - calib[0]) / calib[1]) - 128
    return np.clip(codes, -128, 127).astype(np.int8)


def int8_decode(codes: np.ndarray, calib: np.ndarray) -> np.ndarray:
    return ((codes.astype(np.float32) + 128.0) * calib[1] + calib[0]).astype(np.float32)


def binary_encode(emb: np.ndarray) -> np.ndarray:
    return np.packbits(emb > 0, axis=1)


def binary_decode(packed: np.ndarray, dim: int) -> np.ndarray:
    """±1 float32 vectors from packed sign bits."""
    bits = np.unpackbits(packed, axis=1, count=dim)
    return bits.astype(np.float32) * 2.0 - 1.0


def encode(emb: np.ndarray, kind: str, calib: np.ndarray | None = None) -> np.ndarray:
    if kind == "int8":
        return int8_encode(emb, calib)
    if kind == "binary":
        return binary_encode(emb)
    raise EmbtuneError(f"unknown quantization {kind!r}; expected one of: {', '.join(QUANTIZATIONS)}")


def decoder(codes: np.ndarray, kind: str, dim: int, calib: np.ndarray | None) -> Callable[[int, int], np.ndarray]:
    if kind == "int8":
        return lambda s, e: int8_decode(codes[s:e], calib)
    return lambda s, e: binary_decode(codes[s:e], dim)


def query_vectors(q: np.ndarray, kind: str) -> np.ndarray:
    """What a query is scored with against codes: the float query (int8, asymmetric) or its signs (binary)."""
    return binary_decode(binary_encode(q), q.shape[1]) if kind == "binary" else q


def blocked_topk(q: np.ndarray, n: int, decode: Callable[[int, int], np.ndarray], k: int,
                 block: int = 32768, query_chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` by inner product of ``q`` [m, d] against a corpus decoded block by block (candidate
    generation: ties are not ordered). Returns ``(indices int64 [m, k], scores float32 [m, k])``."""
    k = min(k, n)
    out_i = np.empty((q.shape[0], k), dtype=np.int64)
    out_v = np.empty((q.shape[0], k), dtype=np.float32)
    with torch.inference_mode():
        for qs in range(0, q.shape[0], query_chunk):
            qt = torch.from_numpy(np.ascontiguousarray(q[qs : qs + query_chunk], dtype=np.float32))
            best_v = torch.full((qt.shape[0], 0), -np.inf)
            best_i = torch.empty((qt.shape[0], 0), dtype=torch.int64)
            for s in range(0, n, block):
                dec = torch.from_numpy(decode(s, min(s + block, n)))
                sc = qt @ dec.T
                v, i = torch.topk(sc, min(k, sc.shape[1]), dim=1)
                best_v = torch.cat([best_v, v], 1)
                best_i = torch.cat([best_i, i + s], 1)
                if best_v.shape[1] > k:
                    best_v, j = torch.topk(best_v, k, dim=1)
                    best_i = torch.gather(best_i, 1, j)
            out_i[qs : qs + qt.shape[0]] = best_i.numpy()
            out_v[qs : qs + qt.shape[0]] = best_v.numpy()
    return out_i, out_v
