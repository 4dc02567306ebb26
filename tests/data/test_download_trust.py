"""Named downloads: pinned revision and sha256, or trust on first use recorded beside the cached file;
a cached file is verified once and again whenever its size or time changes."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from functools import partial

import pytest

from embtune.data import registry
from embtune.errors import EmbtuneError

BODY = b"first sentence\nsecond sentence\n"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files and, like the Hugging Face hub, names the commit a revision resolved to."""

    def end_headers(self):
        self.send_header("X-Repo-Commit", "c0ffee" * 6 + "abcd")
        super().end_headers()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    (root / "main").mkdir(parents=True)
    (root / "main" / "w.txt").write_bytes(BODY)
    handler = partial(_Handler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _register(monkeypatch, base, **kw):
    ds = registry.NamedDataset("train/w.txt", "t", url=f"{base}/{{revision}}/w.txt", **kw)
    monkeypatch.setitem(registry.DATASETS, "w", ds)


def test_named_simcse_downloads_name_a_revision_in_the_url():
    for name in ("wiki1m", "nli-for-simcse"):
        ds = registry.DATASETS[name]
        assert "{revision}" in ds.url and ds.url.startswith("https://huggingface.co/")
        # either pinned here, or recorded on first use (see registry.SIMCSE_REVISION / *_SHA256)
        assert ds.sha256 is None or len(ds.sha256) == 64


def test_first_use_records_hash_and_revision(server, monkeypatch, caplog):
    root, base = server
    _register(monkeypatch, base)
    path = registry.resolve_dataset("w")
    record = json.loads(registry.record_path(path).read_text())
    assert record["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert record["trust"] == "first-use"
    assert record["revision"] == "c0ffee" * 6 + "abcd"  # the commit "main" resolved to
    assert "trust on first use" in caplog.text


def test_pinned_hash_is_checked(server, monkeypatch):
    root, base = server
    _register(monkeypatch, base, sha256="0" * 64)
    with pytest.raises(EmbtuneError, match="sha256"):
        registry.resolve_dataset("w")
    assert not (registry.cache_dir() / "data" / "train" / "w.txt").exists()  # nothing unverified kept
    _register(monkeypatch, base, sha256=hashlib.sha256(BODY).hexdigest())
    path = registry.resolve_dataset("w")
    assert json.loads(registry.record_path(path).read_text())["trust"] == "pinned"


def test_pinned_revision_goes_into_the_url(server, monkeypatch):
    root, base = server
    (root / "abc123").mkdir()
    (root / "abc123" / "w.txt").write_bytes(b"pinned one\npinned two\n")
    _register(monkeypatch, base, revision="abc123")
    assert registry.resolve_dataset("w").read_bytes() == b"pinned one\npinned two\n"


def test_a_cached_file_changed_after_verification_is_refused(server, monkeypatch):
    root, base = server
    _register(monkeypatch, base)
    path = registry.resolve_dataset("w")
    calls = []
    real = registry.file_sha256
    monkeypatch.setattr(registry, "file_sha256", lambda p: calls.append(p) or real(p))
    assert registry.resolve_dataset("w") == path
    assert calls == []  # unchanged size and time: not hashed again
    path.write_bytes(b"tampered sentence\nsecond sentence\n")
    with pytest.raises(EmbtuneError, match="changed since it was verified.*delete it"):
        registry.resolve_dataset("w")
    assert calls == [path]


def test_a_cached_file_touched_but_identical_is_accepted(server, monkeypatch):
    root, base = server
    _register(monkeypatch, base)
    path = registry.resolve_dataset("w")
    os.utime(path, ns=(1, 1))
    assert registry.resolve_dataset("w") == path  # re-hashed, same content: fine, record refreshed
    assert json.loads(registry.record_path(path).read_text())["mtime_ns"] == 1


def test_a_cached_file_without_record_is_checked_against_the_pin(monkeypatch, tmp_path):
    dest = registry.cache_dir() / "data" / "train" / "w.txt"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"placed by hand\n")
    monkeypatch.setitem(registry.DATASETS, "w", registry.NamedDataset("train/w.txt", "t", url="http://x/{revision}/w",
                                                                      sha256=hashlib.sha256(BODY).hexdigest()))
    with pytest.raises(EmbtuneError, match="sha256"):
        registry.resolve_dataset("w")
