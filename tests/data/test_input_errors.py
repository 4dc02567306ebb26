"""Inputs that are not files, cannot be read, or name no dataset: clear errors, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from embtune.data.readers import read_text_lines, read_train_file
from embtune.errors import EmbtuneError


def test_a_directory_as_training_file(tmp_path):
    (tmp_path / "d.txt").mkdir()
    with pytest.raises(EmbtuneError, match="is a directory; expected a training file") as e:
        read_train_file(tmp_path / "d.txt")
    assert str(tmp_path / "d.txt") in str(e.value)
    with pytest.raises(EmbtuneError, match="is a directory"):
        read_text_lines(tmp_path / "d.txt")  # the input of `embtune encode`


def test_an_unreadable_file(tmp_path, monkeypatch):
    f = tmp_path / "u.txt"
    f.write_text("a sentence\n")
    real = Path.read_bytes

    def denied(self):
        if self == f:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)  # root ignores chmod 000; this is what a user gets
    with pytest.raises(EmbtuneError, match="cannot be read .*Permission denied") as e:
        read_train_file(f)
    assert str(f) in str(e.value)


@pytest.mark.parametrize("name", ["wiki-sampel", "wiki1M", "snli_triples"])
def test_a_misspelled_dataset_name(name):
    with pytest.raises(EmbtuneError, match=f"no such dataset or file '{name}'.*; known names: .*wiki-sample") as e:
        read_train_file(name)
    assert "unsupported" not in str(e.value)


def test_a_missing_file_with_a_known_suffix(tmp_path):
    with pytest.raises(EmbtuneError, match="no such dataset or file"):
        read_train_file(tmp_path / "nope.csv")


def test_a_close_name_is_suggested():
    with pytest.raises(EmbtuneError, match="did you mean 'wiki-sample'"):
        read_train_file("wiki-sampel")
