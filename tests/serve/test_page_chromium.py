"""The page itself in headless Chromium: it runs a query, shows both models' results as text, and
renders something (a non-blank screenshot). Skipped when Chromium is not installed."""

from __future__ import annotations

import html.parser
import shutil
import subprocess
import urllib.parse

import pytest

from tests.serve.conftest import EVIL

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--virtual-time-budget=15000", "--window-size=1200,800"]


class Hits(html.parser.HTMLParser):
    """Text of each result column (section.column), per <li class="hit">, and every <script> tag."""

    def __init__(self):
        super().__init__()
        self.columns: list[list[str]] = []
        self.scripts = 0
        self._in_hit = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "section" and a.get("class") == "column":
            self.columns.append([])
        if tag == "li" and a.get("class") == "hit":
            self._in_hit = True
            self.columns[-1].append("")

    def handle_endtag(self, tag):
        if tag == "li":
            self._in_hit = False

    def handle_data(self, data):
        if self._in_hit:
            self.columns[-1][-1] += data


def url(srv, query: str) -> str:
    host, port = srv.server_address[:2]
    return f"http://{host}:{port}/?q=" + urllib.parse.quote(query)


def chromium(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_page_shows_both_models_results_as_text(server, tmp_path):
    srv, first, second = server
    r = chromium("--dump-dom", url(srv, EVIL), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    p = Hits()
    p.feed(r.stdout)
    assert len(p.columns) == 2 and all(len(c) == 5 for c in p.columns)  # k=5 per model
    for col, index in zip(p.columns, (first, second)):
        ids, scores = index.search([EVIL], k=5)
        for hit, d, s in zip(col, ids[0], scores[0]):
            assert hit.startswith(f"{s:.4f}") and hit.endswith(d) and index.text(d) in hit
    assert any(EVIL in hit for hit in p.columns[0])  # the markup is shown as text...
    assert p.scripts == 1 and "pwned" not in r.stdout.split("<title>")[1].split("</title>")[0]  # ...never run


def test_screenshot_is_not_blank(server, tmp_path):
    srv, _, _ = server
    shot = tmp_path / "page.png"
    r = chromium(f"--screenshot={shot}", url(srv, "a dog is running"), cwd=tmp_path)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20)
    assert img.size == (1200, 800) and colours is not None and len(colours) > 50
