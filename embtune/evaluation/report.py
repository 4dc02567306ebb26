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
    """A results.json (or the one in a folder), checked: an unreadable file is an error naming it."""
    p = Path(run_dir)
    if not p.exists():
        raise EmbtuneError(f"{p}: does not exist; expected an eval output folder or its results.json")
    p = p / "results.json" if p.is_dir() else p
    if not p.is_file():
        raise EmbtuneError(f"{p}: no results.json (run `embtune eval MODEL --output DIR` first)")
    try:
        results = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EmbtuneError(f"{p}: not valid JSON ({e}); expected the results.json written by `embtune eval`") from e
    except OSError as e:
        raise EmbtuneError(f"{p}: cannot be read ({e.strerror})") from e
    if not isinstance(results, dict) or not isinstance(results.get("tasks", {}), dict):
        raise EmbtuneError(f"{p}: expected an object with 'tasks' (task -> {{'spearman': number}}), "
                           "as written by `embtune eval`")
    results.setdefault("tasks", {})
    for task, r in results["tasks"].items():
        v = r.get("spearman") if isinstance(r, dict) else None
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise EmbtuneError(f"{p}: task {task!r} has no numeric 'spearman' (got {v!r})")
    return results


def delta_row(first: dict, last: dict) -> tuple[dict, str | None]:
    """``last`` minus ``first`` on the tasks both have; the average is taken over those tasks only
    (not the difference of two averages over different task sets). Returns the row and a note
    naming the tasks left out, when any."""
    common = [t for t in columns_of([first, last]) if t in first["tasks"] and t in last["tasks"]]
    if not common:
        raise EmbtuneError("--delta: the first and the last run have no task in common "
                           f"({', '.join(first['tasks']) or 'none'} vs {', '.join(last['tasks']) or 'none'})")
    diff = {t: last["tasks"][t]["spearman"] - first["tasks"][t]["spearman"] for t in common}
    row = {"tasks": {t: {"spearman": f"{v:+.2f}"} for t, v in diff.items()},
           "avg": f"{float(np.mean(list(diff.values()))):+.2f}"}
    only_first = [t for t in first["tasks"] if t not in last["tasks"]]
    only_last = [t for t in last["tasks"] if t not in first["tasks"]]
    if not only_first and not only_last:
        return row, None
    left = "; ".join(f"only in the {which} run: {', '.join(ts)}" for which, ts in
                     (("first", only_first), ("last", only_last)) if ts)
    return row, f"change: averaged over the {len(common)} tasks both runs have ({left})."


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
    note = None
    if delta and len(rows) >= 2:
        row, note = delta_row(rows[0][1], rows[-1][1])
        rows.append(("change", row))
    table = markdown_table(rows)
    return f"{table}\n\n{note}" if note else table
