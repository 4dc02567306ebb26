from __future__ import annotations

import gzip
import http.server
import threading
from functools import partial

import pytest

from embtune.data import registry
from embtune.data.readers import read_train_file
from embtune.errors import EmbtuneError


def test_embtune_data_takes_precedence(tmp_path, monkeypatch):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "wiki1m_head.txt").write_text("only\ntwo\n", encoding="utf-8")
    monkeypatch.setenv("EMBTUNE_DATA", str(tmp_path))
    assert len(read_train_file("wiki-sample")) == 2


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_from_public_source(http_dir, monkeypatch, tmp_path):
    root, base = http_dir
    (root / "wiki.txt").write_text("downloaded one\ndownloaded two\ndownloaded three\n", encoding="utf-8")
    monkeypatch.setitem(registry.DATASETS, "wiki1m", registry.NamedDataset("train/wiki_dl.txt", "test", url=f"{base}/wiki.txt"))
    data = read_train_file("wiki1m")
    assert [e[0] for e in data.examples] == ["downloaded one", "downloaded two", "downloaded three"]
    # the second resolution comes from the cache, not the server
    (root / "wiki.txt").unlink()
    assert len(read_train_file("wiki1m")) == 3


def test_download_checksum_and_failure(http_dir, monkeypatch):
    root, base = http_dir
    (root / "x.txt").write_bytes(gzip.compress(b"x"))
    monkeypatch.setitem(registry.DATASETS, "bad", registry.NamedDataset("train/x.txt", "t", url=f"{base}/x.txt", sha256="0" * 64))
    with pytest.raises(EmbtuneError, match="sha256"):
        registry.resolve_dataset("bad")
    monkeypatch.setitem(registry.DATASETS, "gone", registry.NamedDataset("train/y.txt", "t", url=f"{base}/missing.txt"))
    with pytest.raises(EmbtuneError, match="could not download"):
        registry.resolve_dataset("gone")


def test_unknown_dataset():
    with pytest.raises(EmbtuneError, match="no such dataset or file"):
        registry.resolve_dataset("nope")
