"""Result files (results.json, results.md) and tables in the paper's column order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embtune.errors import EmbtuneError
from embtune.evaluation.sts import STS_TASKS, TASK_LABELS
from embtune.utils import write_json


def columns_of(results: list[dict]) -> list[str]:
    present = {t for r in results for t in r.get("tasks", {})}
    return [t for t in STS_TASKS if t in present] + sorted(present - set(STS_TASKS))


def markdown_table(rows: list[tuple[str, dict]]) -> str:
    """One row per (name, results.json dict): Spearman ×100 per task and the average."""
    cols = columns_of([r for _, r in rows])
    head = "| model | " + " | ".join(TASK_LABELS.get(c, c) for c in cols) + " | Avg. |"
    sep = "|---|" + "---:|" * (len(cols) + 1)
    lines = [head, sep]
    for name, r in rows:
        cells = []
        for c in cols:
            v = r["tasks"].get(c, {}).get("spearman")
            cells.append(f"{v:.2f}" if isinstance(v, (int, float)) else str(v) if v is not None else "–")
        avg = r.get("avg")
        avg_s = f"{avg:.2f}" if isinstance(avg, float) else str(avg)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {avg_s} |")
    return "\n".join(lines)


def format_results(name: str, results: dict) -> str:
    """The Markdown for one evaluation: the correlation table, alignment/uniformity, retrieval."""
    parts = []
    if results.get("tasks"):
        parts.append(markdown_table([(name, results)]))
        parts.append(f"Spearman ×100 ({results.get('mode', 'all')} setting, {results.get('text', 'senteval')} text, "
                     f"{results.get('split', 'test')} split); {results.get('distinct_sentences', '?')} distinct STS "
                     f"sentences, {results.get('seconds', 0):.1f}s in all.")
    au = results.get("align_uniform")
    if au:
        parts.append("| alignment | uniformity |\n|---:|---:|\n" f"| {au['alignment']:.4f} | {au['uniformity']:.4f} |")
    for task, r in results.get("retrieval", {}).items():
        m = r["metrics"]
        head = "| task | " + " | ".join(m) + " | queries |"
        parts.append(head + "\n|---|" + "---:|" * (len(m) + 1) + f"\n| {task} | "
                     + " | ".join(f"{v:.2f}" for v in m.values()) + f" | {r['queries']} |")
    return "\n\n".join(parts)


def write_results(out_dir: str | Path, results: dict, name: str) -> None:
    out = Path(out_dir)
    write_json(out / "results.json", results)
    (out / "results.md").write_text(format_results(name, results) + "\n", encoding="utf-8")


def read_results(run_dir: str | Path) -> dict:
    p = Path(run_dir)
    p = p / "results.json" if p.is_dir() else p
    if not p.is_file():
        raise EmbtuneError(f"{p}: no results.json (run `embtune eval MODEL --output DIR` first)")
    return json.loads(p.read_text(encoding="utf-8"))


def mean_std_row(rows: list[dict]) -> dict:
    """Mean ± sample std per task over runs (e.g. seeds), for tasks present in every run."""
    tasks = [t for t in columns_of(rows) if all(t in r["tasks"] for r in rows)]

    def fmt(vals: list[float]) -> str:
        arr = np.asarray(vals, dtype=np.float64)
        return f"{arr.mean():.2f} ± {arr.std(ddof=1) if len(arr) > 1 else 0.0:.2f}"

    return {"tasks": {t: {"spearman": fmt([r["tasks"][t]["spearman"] for r in rows])} for t in tasks},
            "avg": fmt([float(np.mean([r["tasks"][t]["spearman"] for t in tasks])) for r in rows])}


def report_table(run_dirs: list[str], delta: bool = False) -> str:
    rows = [(str(d), read_results(d)) for d in run_dirs]
    if len(rows) >= 2 and not delta:
        rows.append((f"mean ± std ({len(rows)} runs)", mean_std_row([r for _, r in rows])))
    if delta and len(rows) >= 2:
        first, last = rows[0][1], rows[-1][1]
        d = {"tasks": {t: {"spearman": last["tasks"][t]["spearman"] - first["tasks"][t]["spearman"]}
                       for t in last["tasks"] if t in first["tasks"]},
             "avg": last["avg"] - first["avg"]}
        for t in d["tasks"]:
            d["tasks"][t]["spearman"] = f"{d['tasks'][t]['spearman']:+.2f}"
        d["avg"] = f"{d['avg']:+.2f}"
        rows.append(("change", d))
    return markdown_table(rows)

