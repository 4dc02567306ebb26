"""Ablation of the SimCSE family: every objective for the same number of steps from the same model.

    python -m bench.ablations --steps 60 [--model minilm-l6] [--only unsup,tsdae]

Unsupervised objectives train on the bundled Wikipedia sample, supervised SimCSE on the bundled
SNLI triples. For each: STS-B dev Spearman, the 7-task STS test average, alignment/uniformity on
STS-B dev, and seconds per training step. Writes docs/ablations.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import DOCS, machine, md_table
from embtune.config import make_config
from embtune.encoders import load_encoder
from embtune.evaluation.dev import evaluate_dev
from embtune.evaluation.sts import STS_TASKS, evaluate_sts
from embtune.training import train

# name -> TrainConfig overrides
VARIANTS: dict[str, dict] = {
    "unsup": {},
    "unsup 2N-1 (both-views)": {"negatives": "both-views"},
    "unsup + delete-one-word": {"augment": "delete-one-word"},
    "unsup + crop 10%": {"augment": "crop", "augment_ratio": 0.1},
    "unsup + word-repetition": {"augment": "word-repetition"},
    "multi-view K=3, m=0.1": {"objective": "multiview-am", "views": 3, "margin": 0.1},
    "tsdae": {"objective": "tsdae", "lr": 3e-5},
    "sup (SNLI triples)": {"objective": "sup-simcse", "train_file": "snli-triples"},
}


def evaluate(model) -> dict:
    enc = load_encoder(model)
    dev = evaluate_dev(enc)
    test = evaluate_sts(enc, STS_TASKS)
    return {"stsb_dev": dev["stsb_dev_spearman"], "avg7": test["avg"], "alignment": dev["alignment"],
            "uniformity": dev["uniformity"], "tasks": {t: r["spearman"] for t, r in test["tasks"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--only", default=None, help="comma-separated substrings of variant names")
    ap.add_argument("--out", default="runs/ablations")
    ap.add_argument("--write", default=str(DOCS / "ablations.md"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    # Finished variants are kept in OUT/results.jsonl, so an interrupted run continues where it stopped.
    done_file = Path(args.out) / "results.jsonl"
    done_file.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    if done_file.is_file():
        for line in done_file.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec.get("steps") == args.steps and rec.get("model") == args.model:
                results[rec["name"]] = rec

    def record(name: str, rec: dict) -> None:
        rec = {"name": name, "steps": args.steps, "model": args.model, **rec}
        results[name] = rec
        with open(done_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        print(rec, flush=True)

    base_name = f"{args.model} (no training)"
    if base_name not in results:
        record(base_name, {**evaluate(args.model), "seconds_per_step": None})
    for i, (name, over) in enumerate(VARIANTS.items()):
        if (args.only and not any(s in name for s in args.only.split(","))) or name in results:
            continue
        out = f"{args.out}/variant-{i}"
        settings = {"model": args.model, "train_file": "wiki-sample", "output": out, "max_steps": args.steps,
                    "batch_size": args.batch_size, **over}
        m = train(make_config(**settings), progress=False, overwrite=True)
        record(name, {**evaluate(out), "seconds_per_step": m["seconds_per_step"], "config": over})
    rows = [[n, r["stsb_dev"], r["avg7"], r["alignment"], r["uniformity"],
             r["seconds_per_step"] if r["seconds_per_step"] is not None else "–"]
            for n, r in results.items() if n == base_name or n in VARIANTS]
    table = md_table(["objective", "STS-B dev", "7-task avg (test)", "alignment", "uniformity", "s/step"], rows)
    cmd = f"python -m bench.ablations --steps {args.steps} --model {args.model} --batch-size {args.batch_size}"
    text = (f"# Ablations of the SimCSE family\n\nCommand: `{cmd}` (total {time.perf_counter() - t0:.0f} s)\n\n"
            f"Machine: {machine()}\n\nEvery objective trains {args.steps} steps at batch {args.batch_size}, lr 3e-5, "
            "max length 32, seed 42, from the same model; unsupervised objectives on the bundled Wikipedia sample "
            "(11,914 sentences), supervised SimCSE on the bundled SNLI dev+test triples. STS-B dev Spearman ×100, "
            "the 7-task STS test average (SimCSE's 'all' setting, SentEval text), alignment/uniformity on STS-B dev "
            "(lower is better), seconds per step on this machine.\n\n" + table + "\n")
    resumed = [n for n, r in results.items() if "from_log" in r]
    if resumed:
        text += (f"\nThe rows {', '.join(resumed)} were measured by an earlier run of the same command that stopped "
                 "before the last rows (a bug in this script, since fixed); this run resumed from its results.\n")
    print(text)
    if args.write:
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(text)
        with open(args.write.replace(".md", ".json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
