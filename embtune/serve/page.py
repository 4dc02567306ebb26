"""The one HTML page of ``embtune serve``: a search box and one result column per model.

All document text reaches the page through ``/api/search`` and is put into the DOM with
``textContent`` only (never ``innerHTML``), so a corpus cannot inject markup or scripts.
The page reads a query from ``?q=...`` or ``#q=...`` on load and runs it (bookmarkable searches,
and how the headless-browser test drives it).
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>embtune search</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #f6f7f9; color: #1d2330; }
  h1 { font-size: 1.3rem; margin: 0 0 1rem; }
  form { display: flex; gap: .5rem; margin-bottom: 1rem; }
  #q { flex: 1; font-size: 1rem; padding: .5rem .7rem; border: 1px solid #9aa3b2; border-radius: 6px; }
  button { font-size: 1rem; padding: .5rem 1rem; border: 0; border-radius: 6px; background: #2f5bd3; color: white; }
  #columns { display: flex; gap: 1rem; align-items: flex-start; }
  .column { flex: 1; background: white; border-radius: 8px; padding: .8rem 1rem; box-shadow: 0 1px 3px #0002; }
  .column h2 { font-size: 1rem; margin: 0 0 .6rem; color: #2f5bd3; word-break: break-all; }
  ol { margin: 0; padding-left: 1.4rem; }
  li { margin: .35rem 0; }
  .score { font-family: monospace; color: #666; margin-right: .5rem; }
  .docid { font-family: monospace; color: #999; margin-left: .4rem; font-size: .85em; }
  #status { color: #a33; min-height: 1.2em; }
</style>
</head>
<body>
<h1>embtune search <span id="corpus"></span></h1>
<form id="form">
  <input id="q" name="q" autocomplete="off" placeholder="type a query" autofocus>
  <button type="submit">Search</button>
</form>
<div id="status"></div>
<div id="columns"></div>
<script>
"use strict";
const K = __K__;
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
async function search(q) {
  const status = document.getElementById("status");
  const columns = document.getElementById("columns");
  status.textContent = "";
  if (!q.trim()) { columns.replaceChildren(); return; }
  let data;
  try {
    const r = await fetch("api/search?q=" + encodeURIComponent(q) + "&k=" + K);
    data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
  } catch (err) { status.textContent = "error: " + err.message; return; }
  const cols = data.models.map(m => {
    const col = el("section", "column");
    col.dataset.model = m.name;
    col.appendChild(el("h2", "", m.name));
    const ol = el("ol");
    for (const hit of m.results) {
      const li = el("li", "hit");
      li.appendChild(el("span", "score", hit.score.toFixed(4)));
      li.appendChild(el("span", "text", hit.text));
      li.appendChild(el("span", "docid", hit.id));
      ol.appendChild(li);
    }
    col.appendChild(ol);
    return col;
  });
  columns.replaceChildren(...cols);
  document.body.dataset.done = "1";
}
document.getElementById("form").addEventListener("submit", ev => {
  ev.preventDefault();
  const q = document.getElementById("q").value;
  history.replaceState(null, "", "#q=" + encodeURIComponent(q));
  search(q);
});
fetch("api/info").then(r => r.json()).then(info => {
  document.getElementById("corpus").textContent = "· " + info.documents + " documents";
});
const start = new URLSearchParams(location.search).get("q") ||
              new URLSearchParams(location.hash.slice(1)).get("q");
if (start) { document.getElementById("q").value = start; search(start); }
</script>
</body>
</html>
"""


def render(k: int) -> str:
    return PAGE.replace("__K__", str(int(k)))
