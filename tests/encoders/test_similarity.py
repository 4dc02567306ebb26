from __future__ import annotations

import numpy as np
import pytest
import torch

from embtune.encoders import load_encoder
from tests.conftest import SENTENCES


def test_similarity_of_arrays_is_the_cosine_matrix_by_hand(tiny_st):
    enc = load_encoder(str(tiny_st))
    a = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    b = np.array([[0.0, 2.0], [-1.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    want = np.array([[0.8, -0.6, 7 / 5 / np.sqrt(2)], [0.0, -1.0, 1 / np.sqrt(2)]])
    got = enc.similarity(a, b)
    assert isinstance(got, np.ndarray) and got.shape == (2, 3)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(a @ b.T, want)  # negative control: a plain dot product is not the cosine
    t = enc.similarity(torch.from_numpy(a), b[0])
    assert isinstance(t, torch.Tensor) and t.shape == (2, 1)
    np.testing.assert_allclose(t.numpy()[:, 0], want[:, 0], atol=1e-6)


def test_similarity_of_texts_equals_cosine_of_their_embeddings(tiny_st):
    enc = load_encoder(str(tiny_st))
    a, b = SENTENCES[:3], SENTENCES[3:8]
    ea, eb = enc.encode(a), enc.encode(b)
    want = (ea / np.linalg.norm(ea, axis=1, keepdims=True)) @ (eb / np.linalg.norm(eb, axis=1, keepdims=True)).T
    np.testing.assert_allclose(enc.similarity(a, b), want, atol=1e-5)
    assert enc.similarity("a dog", ["a dog"])[0, 0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="dimensions differ"):
        enc.similarity(ea, np.ones((1, 3)))
