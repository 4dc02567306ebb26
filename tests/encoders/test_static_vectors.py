"""Word vectors from a sentence encoder: PCA, the Zipf weights, the file, and the command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embtune.cli import main
from embtune.encoders import load_encoder
from embtune.encoders.static_vectors import pca_project, teacher_word_vectors, vocabulary, zipf_weights
from embtune.encoders.wordvec import load_vectors
from embtune.errors import EmbtuneError


def test_zipf_weights_are_log_one_plus_rank():
    assert zipf_weights(3) == pytest.approx([np.log(2), np.log(3), np.log(4)])


def test_pca_projects_on_the_directions_of_largest_variance():
    # points spread along (1, 1, 0) with a little noise along (0, 0, 1): one component keeps the spread
    t = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    x = np.stack([t + 3, t + 3, 0.01 * np.array([1, -1, 1, -1, 0])], axis=1)
    p = pca_project(x, 1)
    assert p.shape == (5, 1)
    assert np.abs(p[:, 0]) == pytest.approx(np.abs(t) * np.sqrt(2), abs=1e-4)  # centred, projected on (1, 1, 0)/√2
    full = pca_project(x, 3)  # all components: a rotation of the centred points, distances kept
    d = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    assert d(full) == pytest.approx(d(x - x.mean(0)))
    # fitted on the first rows only: the mean is theirs
    assert pca_project(x, 2, fit_rows=3).mean(0) != pytest.approx(np.zeros(2))
    with pytest.raises(EmbtuneError, match="--dim must be between 1 and the teacher's width 3"):
        pca_project(x, 4)


class _FakeTeacher:
    """A sentence encoder whose embedding of a word is given by a table."""

    def __init__(self, table):
        self.table = table

    def encode(self, texts, batch_size=64, precision="fp32"):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def test_teacher_vectors_are_the_teacher_on_each_word_reduced_and_weighted():
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "mat", "on", "a"]
    table = {w: rng.normal(size=5) for w in words}
    teacher = _FakeTeacher(table)
    raw = np.stack([table[w] for w in words])
    plain = teacher_word_vectors(teacher, words, dim=None, weighting="none")
    # full width: the centred vectors, rotated (norms kept)
    assert np.linalg.norm(plain, axis=1) == pytest.approx(np.linalg.norm(raw - raw.mean(0), axis=1), rel=1e-5)
    zipf = teacher_word_vectors(teacher, words, dim=3, weighting="zipf")
    ref = pca_project(raw, 3) * np.log1p(np.arange(1, 7))[:, None]
    assert zipf == pytest.approx(ref, abs=1e-5)
    # negative control: without the weights the rare words are not scaled up
    assert not np.allclose(teacher_word_vectors(teacher, words, dim=3, weighting="none"), ref, atol=1e-3)
    with pytest.raises(EmbtuneError, match="--weighting"):
        teacher_word_vectors(teacher, words, weighting="idf")


def test_vocabulary_keeps_first_occurrences_of_single_words():
    assert vocabulary(["a", "b", "a", "", "two words", "c"]) == (["a", "b", "c"], 3)


def test_word_vectors_command_writes_a_file_a_word_vector_model_reads(tiny_bert, tmp_path, capsys):
    words = tmp_path / "words.txt"
    vocab = ["the", "a", "man", "horse", "runs", "plays", "guitar", "park", "ball", "red", "car", "the"]
    words.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    out = tmp_path / "vecs.txt"
    assert main(["word-vectors", str(tiny_bert), "--words", str(words), "--dim", "4", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "11 words x 4 dimensions" in printed and "1 words left out" in printed  # the repeated "the"
    got_words, vecs = load_vectors(str(out))
    assert got_words == vocab[:11] and vecs.shape == (11, 4)
    enc = load_encoder(str(tiny_bert))
    raw = np.asarray(enc.encode(vocab[:11]), dtype=np.float64)
    ref = pca_project(raw, 4) * zipf_weights(11)[:, None]
    assert vecs == pytest.approx(ref, rel=1e-4, abs=1e-5)
    mean = load_encoder(str(out), word_encoder="mean")  # the file is a word-vector model's input
    e = mean.encode(["the man runs", "a red car"])
    assert torch.allclose(torch.as_tensor(e[0]), torch.as_tensor((vecs[0] + vecs[2] + vecs[4]) / 3), atol=1e-5)


def test_word_vectors_command_names_a_bad_line(tiny_bert, tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("the\ntwo words\n", encoding="utf-8")
    assert main(["word-vectors", str(tiny_bert), "--words", str(words), "--output", str(tmp_path / "v.txt")]) == 2
    assert f"{words}:2: expected one word per line" in capsys.readouterr().err
    assert main(["word-vectors", str(tiny_bert), "--words", str(tmp_path / "none.txt"), "--output", "v.txt"]) == 2
    assert "not built-in word vectors (glove-50d) and no such file" in capsys.readouterr().err
