"""Discrete augmentations on words (SimCSE Table 1; ESimCSE's word repetition).

Words are whitespace-separated tokens. Every function takes the word list and a seeded
``random.Random`` and returns a new list; an empty sentence stays empty, and no function deletes
the last remaining word (a one-word sentence comes back unchanged from the deleting ones).

- ``delete-one-word``: remove one word chosen uniformly.
- ``word-deletion``: remove each word independently with probability p (default 0.1); if all would go, one random word stays.
- ``crop``: keep a random contiguous span of ceil((1 - p) * n) words (default p 0.1).
- ``swap``: exchange two distinct positions chosen uniformly (word reordering).
- ``word-repetition``: ESimCSE (Wu et al. 2022): dup_len ~ U{0..max(2, int(p * n))} (default p 0.32), that many
  distinct positions are chosen and their words doubled in place.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from embtune.errors import EmbtuneError

Words = list[str]


def delete_one_word(words: Words, rng: random.Random, p: float | None = None) -> Words:
    if len(words) <= 1:
        return list(words)
    i = rng.randrange(len(words))
    return words[:i] + words[i + 1:]


def word_deletion(words: Words, rng: random.Random, p: float | None = None) -> Words:
    p = 0.1 if p is None else p
    if not words:
        return []
    kept = [w for w in words if rng.random() >= p]
    return kept if kept else [words[rng.randrange(len(words))]]


def crop(words: Words, rng: random.Random, p: float | None = None) -> Words:
    p = 0.1 if p is None else p
    if not words:
        return []
    keep = max(1, math.ceil((1 - p) * len(words)))
    start = rng.randrange(len(words) - keep + 1)
    return words[start:start + keep]


def swap(words: Words, rng: random.Random, p: float | None = None) -> Words:
    out = list(words)
    if len(out) >= 2:
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def word_repetition(words: Words, rng: random.Random, p: float | None = None) -> Words:
    p = 0.32 if p is None else p
    n = len(words)
    if n == 0:
        return []
    dup_len = rng.randint(0, max(2, int(p * n)))
    dup = set(rng.sample(range(n), min(dup_len, n)))
    out: Words = []
    for i, w in enumerate(words):
        out.append(w)
        if i in dup:
            out.append(w)
    return out


AUGMENTATIONS: dict[str, Callable[[Words, random.Random, float | None], Words]] = {
    "delete-one-word": delete_one_word,
    "word-deletion": word_deletion,
    "crop": crop,
    "swap": swap,
    "word-repetition": word_repetition,
}


def check_ratio(p: float | None) -> float | None:
    if p is not None and not 0 <= p < 1:
        raise EmbtuneError(f"augmentation ratio must be in [0, 1), got {p}")
    return p


def parse_augment(spec: str | None) -> list[str]:
    names = [s.strip() for s in (spec or "").split(",") if s.strip()]
    for n in names:
        if n not in AUGMENTATIONS:
            raise EmbtuneError(f"unknown augmentation {n!r}; expected any of: {', '.join(AUGMENTATIONS)}")
    return names


def augment(text: str, names: list[str], rng: random.Random, p: float | None = None) -> str:
    """Apply the named augmentations in order."""
    words = text.split()
    for n in names:
        words = AUGMENTATIONS[n](words, rng, p)
    return " ".join(words)
