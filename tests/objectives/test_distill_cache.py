"""The teacher-embedding cache is keyed by the teacher's weights, not its path."""

from __future__ import annotations

import shutil

import numpy as np
import torch

from embtune.encoders import load_encoder
from embtune.objectives.distill import TeacherCache
from tests.conftest import SENTENCES


def test_a_teacher_retrained_in_place_is_recomputed(tiny_st, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_st, teacher)
    root = tmp_path / "cache"
    first = TeacherCache(str(teacher), root=root)
    old = first.embeddings(SENTENCES).numpy()
    assert first.forwards == len(SENTENCES)
    again = TeacherCache(str(teacher), root=root)
    assert np.array_equal(again.embeddings(SENTENCES).numpy(), old)
    assert again.forwards == 0  # same weights: served from the cache

    enc = load_encoder(str(teacher))  # "retrain" the teacher in place: same path, new weights
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.05 * torch.randn_like(p))
    enc.save(teacher)
    fresh = load_encoder(str(teacher)).encode(SENTENCES)
    assert np.abs(fresh - old).max() > 1e-3  # the change is visible in the embeddings

    after = TeacherCache(str(teacher), root=root)
    got = after.embeddings(SENTENCES).numpy()
    assert after.forwards == len(SENTENCES)  # recomputed, not the stale entry
    np.testing.assert_allclose(got, fresh, atol=1e-6)


def test_same_weights_at_another_path_share_the_cache(tiny_st, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_st, a)
    shutil.copytree(tiny_st, b)
    TeacherCache(str(a), root=tmp_path / "c").embeddings(SENTENCES)
    other = TeacherCache(str(b), root=tmp_path / "c")
    other.embeddings(SENTENCES)
    assert other.forwards == 0  # content, not the path, is the key
