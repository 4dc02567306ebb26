"""The one report of ``embtune adapt``: ``OUTPUT/report.json`` (everything) and ``OUTPUT/report.md`` (to read)."""

from __future__ import annotations

import platform
from pathlib import Path

from embtune.utils import write_json

#: metrics shown per held-out task kind (all are in report.json)
SHOWN = ("ndcg@10", "map@100", "recall@10", "spearman", "ap", "f1", "map", "knn_accuracy")


def machine() -> str:
    import os

    import torch

    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = ", ".join(f for f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if f" {f}" in text)
    except OSError:
        pass
    gpu = f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{platform.machine()} {os.cpu_count()} cores ({flags or 'flags unknown'}), torch {torch.__version__}{gpu}"


def _kept(stages: list[dict]) -> str:
    trained = [s for s in stages if s.get("status") == "done" and "selected_step" in s]
    if not trained:
        return "no stage finished"
    improved = [s for s in trained if s["selected_step"]]
    if not improved:
        return "the starting model (no stage beat it on the selection task)"
    last = improved[-1]
    what = f"stage {last['stage']}, step {last['selected_step']} of {last['steps']}"
    if last.get("cross_fit"):
        what += (f" on each of {last['cross_fit']['folds']} folds, refit on every row for "
                 f"{last['refit']['steps']} steps")
    return what + (" (later stages kept it)" if last is not trained[-1] else "")


def watched(stages: list[dict]) -> list[str]:
    """``--watch``: each evaluation's held-out values beside the selection value, the kept step marked."""
    rows = [(s, e) for s in stages if s.get("status") == "done" for e in s.get("evaluations", []) if "held_out" in e]
    if not rows:
        return []
    names = list(dict.fromkeys(k for _, e in rows for k in e["held_out"]))
    out = ["", "## Held-out at every evaluation (`--watch`: for the record, never selected on)", "",
           "| stage | step | selection | confidence | guard | " + " | ".join(names) + " |",
           "|---|---:|---:|---:|---:|" + "---:|" * len(names)]
    for s, e in rows:
        mark = " (kept)" if e["step"] == s["selected_step"] else ""
        conf = f"{e['confidence']:.2f}" if "confidence" in e else "–"
        guard = (f"{e['guard']:.2f}" + (" (waived)" if e.get("guard_waived") else "")) if "guard" in e else "–"
        vals = " | ".join(f"{e['held_out'][k]:.2f}" if k in e["held_out"] else "–" for k in names)
        out.append(f"| {s['stage']} | {e['step']}{mark} | {e['value']:.2f} | {conf} | {guard} | {vals} |")
    return out


def render(report: dict) -> str:
    cfg = report["config"]
    lines = [f"# embtune adapt: {cfg['model']} on {cfg['corpus']}", "",
             f"Status: **{report['status']}**" + (f" — {report['error']}" if report.get("error") else "")
             + f"; {report.get('seconds', 0):.0f} s in all on {machine()}; precision {report.get('precision')}.", "",
             "Inputs: " + ", ".join(f"{k} {cfg[k]}" for k in ("corpus", "pairs", "scored", "classes", "teacher") if cfg.get(k))
             + ("; " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in report.get("inputs", {}).items()) if report.get("inputs") else ""),
             ""]
    sel = report.get("selection")
    if sel:
        cfg_conf = cfg.get("select_confidence", 0)
        lines += [f"Selection task ({sel['kind']}): `{sel['task']}`, metric `{sel['metric']}`; every stage is evaluated on "
                  "it at step 0 and evenly spaced steps; a checkpoint replaces the stage's start only when a paired "
                  f"bootstrap finds it better with confidence ≥ {cfg_conf}"
                  + (f" and it does not lose more than the guard's tolerance on the other task. Guard: agreement "
                     f"with the teacher (`{sel['guard']}`); labelled stages are selected on the labels (guard "
                     f"tolerance {cfg.get('teacher_guard')}, waived where the labelled gain's confidence is ≥ "
                     f"{cfg.get('guard_waiver', 0)}), the corpus stage on agreement (the labels guard it, "
                     f"tolerance {cfg.get('label_guard')})" if sel.get("guard") else "") + "."
                  + (f" The labelled stage is cross-fitted over {report['inputs']['cross_fit_folds']} folds: each fold "
                     "run trains on the other folds and is scored on its own, the folds are pooled (every labelled "
                     "query selects), and the chosen length is refit on every row (adaptation/crossfit.py)."
                     if report.get("inputs", {}).get("cross_fit_folds") else ""), ""]
    lines += [f"Kept: {_kept(report.get('stages', []))}.", ""]
    before, after = report.get("before", {}), report.get("after", {})
    if before.get("tasks"):
        lines += ["## Your held-out task(s)", "", "| metric | before | after | change |", "|---|---:|---:|---:|"]
        for k, v in before["tasks"].items():
            if k.split("/", 1)[-1] in SHOWN:
                a = after.get("tasks", {}).get(k)
                lines.append(f"| {k} | {v:.2f} | " + (f"{a:.2f} | {a - v:+.2f} |" if a is not None else "– | – |"))
        lines.append("")
    if before.get("sts"):
        lines += ["## General quality: STS (Spearman ×100)", "", "| task | before | after | change |", "|---|---:|---:|---:|"]
        rows = [*before["sts"].items(), ("avg", before["sts_avg"])]
        for k, v in rows:
            a = after.get("sts", {}).get(k) if k != "avg" else after.get("sts_avg")
            lines.append(f"| {k} | {v:.2f} | " + (f"{a:.2f} | {a - v:+.2f} |" if a is not None else "– | – |"))
        lines.append("")
    lines += ["## Stages", "", "| stage | what | selected on | selection: start → kept | kept step | wall s |",
              "|---|---|---|---:|---:|---:|"]
    for s in report.get("stages", []):
        if "objective" in s:
            sel_txt = (f"{s['start_value']:.2f} → {s['best_value']:.2f}" if s.get("status") == "done"
                       else f"failed: {s.get('error', '')[:120]}")
            step = f"{s['selected_step']} / {s['steps']} (every {s['eval_steps']})" if s.get("status") == "done" else "–"
            if s.get("cross_fit") and s.get("status") == "done":
                step += f", {s['cross_fit']['folds']} folds pooled" + (
                    f"; refit {s['refit']['steps']} steps on every row" if s.get("refit") else "") + (
                    " (refused by the guard)" if s.get("refit", {}).get("guard_ok") is False else "")
            on = f"`{s['metric']}`" + (f", guard `{s['guard']}`" if s.get("guard") else "") if s.get("metric") else "–"
            lines.append(f"| {s['stage']} ({s['objective']}) | {s['what']} | {on} | {sel_txt} | {step} | "
                         f"{s.get('seconds', 0):.0f} |")
        else:
            extra = (f" ({s['texts_encoded']:,} texts encoded, {s.get('backend', 'torch')} {s['precision']})"
                     if "texts_encoded" in s else "")
            lines.append(f"| {s['stage']} | {extra.strip(' ()')} | | | | {s.get('seconds', 0):.0f} |")
    lines += watched(report.get("stages", []))
    lines += ["", f"The adapted model: `{cfg['output']}/model` (a sentence-transformers folder); each stage's run: "
              f"`{cfg['output']}/stages/`.", ""]
    return "\n".join(lines)


def write_report(out: Path, report: dict) -> None:
    write_json(out / "report.json", report)
    (out / "report.md").write_text(render(report), encoding="utf-8")
