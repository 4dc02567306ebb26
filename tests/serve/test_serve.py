from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from embtune.errors import EmbtuneError
from embtune.serve import SearchApp, make_server
from embtune.serve.page import PAGE
from tests.conftest import SENTENCES
from tests.serve.conftest import EVIL


def get(srv, path):
    host, port = srv.server_address[:2]
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=30) as r:
        return r.status, r.headers, r.read().decode("utf-8")


def test_api_returns_each_models_top_k(server):
    srv, first, second = server
    status, headers, body = get(srv, "/api/search?q=" + urllib.request.quote(SENTENCES[3]) + "&k=4")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data = json.loads(body)
    assert [m["name"] for m in data["models"]] == ["tiny", "other"]
    for m, index in zip(data["models"], (first, second)):
        ids, scores = index.search([SENTENCES[3]], k=4)
        assert [h["id"] for h in m["results"]] == ids[0]
        assert [h["score"] for h in m["results"]] == pytest.approx(scores[0].tolist(), abs=1e-6)
        assert [h["rank"] for h in m["results"]] == [1, 2, 3, 4]
        assert all(h["text"] == index.text(h["id"]) for h in m["results"])
    assert data["models"][0]["results"][0]["id"] == "d3"


def test_markup_in_documents_never_reaches_the_page_as_markup(server):
    srv, _, _ = server
    _, _, body = get(srv, "/api/search?q=" + urllib.request.quote(EVIL) + "&k=13")
    assert "<script>" not in body and "<img" not in body  # escaped as \u003c in the JSON text
    data = json.loads(body)
    assert any(h["text"] == EVIL for h in data["models"][0]["results"])  # ...and decodes to the exact text
    _, headers, page = get(srv, "/")
    assert headers["Content-Type"].startswith("text/html") and headers["X-Content-Type-Options"] == "nosniff"
    assert "innerHTML" not in PAGE and "textContent" in page and "pwned" not in page


@pytest.mark.parametrize("path,code", [("/api/search?q=", 400), ("/api/search?q=x&k=0", 400),
                                       ("/api/search?q=x&k=abc", 400), ("/nope", 404)])
def test_bad_requests(server, path, code):
    srv, _, _ = server
    with pytest.raises(urllib.error.HTTPError) as e:
        get(srv, path)
    assert e.value.code == code and "error" in json.loads(e.value.read())


def test_port_in_use_is_a_clear_error(server):
    srv, first, _ = server
    port = srv.server_address[1]
    with pytest.raises(EmbtuneError, match=rf"--port {port}: 127\.0\.0\.1:{port} is already in use"):
        make_server(SearchApp([("tiny", first)]), "127.0.0.1", port)


def test_cli_serve_on_a_busy_port_fails_before_loading_models(server, tmp_path, capsys):
    from embtune.cli import main

    srv, _, _ = server
    port = srv.server_address[1]
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    assert main(["serve", "no-such-model-folder", "--corpus", str(corpus), "--port", str(port)]) == 2
    assert f"--port {port}: 127.0.0.1:{port} is already in use" in capsys.readouterr().err
