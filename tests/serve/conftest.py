from __future__ import annotations

import threading

import pytest

import embtune
from embtune.search import Index
from embtune.serve import SearchApp, make_server
from tests.conftest import SENTENCES, build_tiny_bert

EVIL = '<script>document.title="pwned"</script><img src=x onerror=alert(1)> a dog'


@pytest.fixture(scope="package")
def server(tiny_st, tmp_path_factory):
    """`embtune serve` with two tiny models on port 0, in a thread."""
    docs = {f"d{i}": s for i, s in enumerate(SENTENCES)}
    docs["evil"] = EVIL
    first = Index.build(embtune.load(str(tiny_st)), docs)
    second = Index.build(embtune.load(str(build_tiny_bert(tmp_path_factory.mktemp("second"), seed=5))), docs)
    srv = make_server(SearchApp([("tiny", first), ("other", second)], k=5), "127.0.0.1", 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv, first, second
    srv.shutdown()
    srv.server_close()
