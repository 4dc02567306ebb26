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

``python -m embtune.demo summary BEFORE AFTER MODEL`` prints the before/after story.
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


def summary(before: str | Path, after: str | Path, model: str | Path) -> str:
    def load(p: str | Path) -> dict:
        f = Path(p) / "results.json"
        if not f.is_file():
            raise EmbtuneError(f"{f}: not found (run `embtune eval ... --output {p}` first)")
        return json.loads(f.read_text(encoding="utf-8"))

    b, a = load(before), load(after)
    m = json.loads((Path(model) / "metrics.json").read_text(encoding="utf-8"))
    task = next(iter(b.get("retrieval", {})), None)
    rows = [("Mathematica duplicates, held-out half: nDCG@10", "ndcg@10"),
            ("Mathematica duplicates, held-out half: MAP@100", "map@100"),
            ("Mathematica duplicates, held-out half: Recall@10", "recall@10")]
    lines = ["", "| | all-MiniLM-L6-v2 | tuned | change |", "|---|---:|---:|---:|"]
    for label, key in rows:
        if task is None or key not in b["retrieval"][task]["metrics"]:
            continue
        x, y = b["retrieval"][task]["metrics"][key], a["retrieval"][task]["metrics"][key]
        lines.append(f"| {label} | {x:.2f} | {y:.2f} | {y - x:+.2f} |")
    if b.get("avg") is not None and a.get("avg") is not None:
        lines.append(f"| general quality: STS avg. (7 tasks, Spearman) | {b['avg']:.2f} | {a['avg']:.2f} | "
                     f"{a['avg'] - b['avg']:+.2f} |")
    sel = m.get("selected_step")
    lines.append("")
    lines.append(f"selected checkpoint: step {sel} of {m['steps']} on {m.get('best_metric')} "
                 f"({m.get('start_value', float('nan')):.2f} at step 0 -> {m.get('best_value', float('nan')):.2f})"
                 + (" — training did not beat the starting model, so the starting model was kept" if sel == 0 else ""))
    lines.append("Your own data: embtune train --model minilm-l6 --objective sup-simcse --train-file YOUR_PAIRS.tsv "
                 "--dev-fraction 0.2 --eval-steps 25 --output runs/mine   (then: embtune eval runs/mine --tasks "
                 "beir:YOUR_FOLDER)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) == 2 and args[0] == "prepare":
            prepare(args[1])
        elif len(args) == 4 and args[0] == "summary":
            print(summary(*args[1:]))
        else:
            print("usage: python -m embtune.demo prepare DIR | summary BEFORE AFTER MODEL", file=sys.stderr)
            return 2
    except EmbtuneError as e:
        print(f"embtune.demo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
