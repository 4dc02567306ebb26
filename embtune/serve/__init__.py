"""``embtune serve``: a local search page over a corpus, one result column per model.

Standard library only (``http.server.ThreadingHTTPServer``). Routes:

- ``GET /``                 the page (:mod:`embtune.serve.page`)
- ``GET /api/search?q=…&k=…`` ``{"query", "k", "models": [{"name", "results": [{"rank", "id", "score", "text"}]}]}``
- ``GET /api/info``         ``{"models": [...], "documents": n}``

Listens on 127.0.0.1 by default. JSON is sent as ``application/json`` with ``<``, ``>`` and ``&``
escaped as ``\\u003c`` etc., and the page inserts text with ``textContent`` only, so a document
holding ``<script>`` is shown as text.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from embtune.errors import EmbtuneError
from embtune.serve.page import render

logger = logging.getLogger(__name__)

MAX_K = 1000


def _json(obj) -> bytes:
    s = json.dumps(obj, ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode("utf-8")


class SearchApp:
    """The models' indexes over one corpus, searched under a lock (one search at a time)."""

    def __init__(self, indexes: list[tuple[str, object]], k: int = 10):
        if not indexes:
            raise EmbtuneError("serve needs at least one model")
        self.indexes = indexes
        self.k = k
        self.lock = threading.Lock()

    def search(self, q: str, k: int) -> dict:
        k = min(k, len(self.indexes[0][1]))  # k above the corpus: all documents (the reply's k says so)
        out = {"query": q, "k": k, "models": []}
        with self.lock:
            for name, index in self.indexes:
                ids, scores = index.search([q], k=k)
                out["models"].append({"name": name, "results": [
                    {"rank": r, "id": d, "score": float(s), "text": index.text(d)}
                    for r, (d, s) in enumerate(zip(ids[0], scores[0]), 1)]})
        return out

    def info(self) -> dict:
        return {"models": [n for n, _ in self.indexes], "documents": len(self.indexes[0][1])}


class Handler(BaseHTTPRequestHandler):
    server_version = "embtune"

    def log_message(self, fmt, *args):  # into logging, not stderr
        logger.debug("%s - " + fmt, self.address_string(), *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int, message: str) -> None:
        self._send(code, _json({"error": message}), "application/json; charset=utf-8")

    def do_GET(self):  # noqa: N802 (http.server's name)
        app: SearchApp = self.server.app
        url = urlsplit(self.path)
        params = parse_qs(url.query)
        if url.path in ("/", "/index.html"):
            self._send(200, render(app.k).encode("utf-8"), "text/html; charset=utf-8")
        elif url.path == "/api/info":
            self._send(200, _json(app.info()), "application/json; charset=utf-8")
        elif url.path == "/api/search":
            q = params.get("q", [""])[0]
            if not q.strip():
                return self._error(400, "missing query: /api/search?q=...")
            try:
                k = int(params.get("k", [str(app.k)])[0])
            except ValueError:
                return self._error(400, "k must be a positive integer")
            if not 1 <= k <= MAX_K:
                return self._error(400, f"k must be between 1 and {MAX_K}")
            self._send(200, _json(app.search(q, k)), "application/json; charset=utf-8")
        else:
            self._error(404, f"no such page: {url.path}")


def make_server(app: SearchApp | None, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """Bind the server (port 0: any free port; ``server.server_address`` says which). ``server.app``
    may be set after binding (``serve`` binds first, so a busy port fails before the models load)."""
    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise EmbtuneError(f"--port {port}: {host}:{port} is already in use; choose another --port "
                               f"(0 picks a free one)") from e
        raise EmbtuneError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from e
    server.daemon_threads = True
    server.app = app
    return server


def build_indexes(models: list[str], corpus: str | Path, batch_size: int = 64, device: str | None = None):
    """One index per model over ``corpus``: a corpus file, or an index folder (searched with the first
    model, which must be the one it was built with; later models re-embed its documents)."""
    from embtune.search import Index

    out = []
    for m in models:
        if out:
            first = out[0][1]
            index = Index.build(m, dict(zip(first.ids, first.texts)), batch_size=batch_size, device=device)
        elif Path(corpus).is_dir():
            index = Index.load(corpus, model=m, device=device)
        else:
            index = Index.build(m, corpus, batch_size=batch_size, device=device)
        out.append((m, index))
    return out


def serve(model: str, corpus: str | Path, compare: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          k: int = 10, batch_size: int = 64, device: str | None = None) -> None:
    models = [model] + ([compare] if compare else [])
    server = make_server(None, host, port)
    try:
        server.app = app = SearchApp(build_indexes(models, corpus, batch_size, device), k=k)
    except BaseException:
        server.server_close()
        raise
    h, p = server.server_address[:2]
    print(f"embtune serve: {len(app.indexes[0][1])} documents, models {', '.join(models)} on http://{h}:{p}/ "
          f"(Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
