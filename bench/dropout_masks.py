"""Do embtune's 15-bit dropout masks train as well as torch's? Unsup SimCSE, both ways, several seeds.

    python -m bench.dropout_masks [--steps 150] [--seeds 42,1,2] [--precision auto]

all-minilm-l6-v2, the bundled Wikipedia sample, batch 64, max length 32, lr 3e-5, ``--steps`` steps; the
same seeds (data order, initial state) with the trainer's masks (``embtune/encoders/dropout.py``) and with
torch's ``nn.Dropout``/SDPA masks (``bernoulli_``). Reported: STS-B dev Spearman ×100 after the last step
(the trainer's evaluation at that step, not the selected model), per seed, with mean and sd. The two mask
streams differ, so single runs differ by seed noise; the question is whether the means differ.
Writes docs/dropout-masks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench.common import DOCS, machine, md_table

METRIC = "stsb-dev/spearman"


def run(seed: int, masks: str, steps: int, precision: str, out: Path) -> dict:
    import embtune.training.trainer as trainer_mod
    from embtune.config import make_config
    from embtune.training import train

    fast = trainer_mod.use_fast_dropout
    if masks == "torch":  # the trainer as it was: nn.Dropout and SDPA's own attention dropout
        trainer_mod.use_fast_dropout = lambda model: 0
    try:
        m = train(make_config(model="minilm-l6", train_file="wiki-sample", output=str(out), max_steps=steps,
                              eval_steps=steps, seed=seed, precision=precision), progress=False, overwrite=True)
    finally:
        trainer_mod.use_fast_dropout = fast
    last = m["evaluations"][-1]
    assert last["step"] == steps, m["evaluations"]
    return {"seed": seed, "masks": masks, "start": m["evaluations"][0][METRIC], "last": last[METRIC],
            "seconds_per_step": m["seconds_per_step"],
            "precision": json.loads((out / "train_config.json").read_text(encoding="utf-8"))["precision"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", default="42,1,2")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--out", default="/tmp/embtune-bench-dropout-masks")
    ap.add_argument("--write", default=str(DOCS / "dropout-masks.md"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        for masks in ("embtune", "torch"):
            rows.append(run(seed, masks, args.steps, args.precision, Path(args.out) / f"{masks}-{seed}"))
            print(json.dumps(rows[-1]), flush=True)
    by = {k: [r["last"] for r in rows if r["masks"] == k] for k in ("embtune", "torch")}
    table = md_table(["seed", "start", "embtune masks", "torch masks (bernoulli_)"],
                     [[s, next(r["start"] for r in rows if r["seed"] == s), by["embtune"][i], by["torch"][i]]
                      for i, s in enumerate(seeds)]
                     + [["mean ± sd", "", f"{statistics.mean(by['embtune']):.2f} ± {statistics.stdev(by['embtune']):.2f}"
                         if len(seeds) > 1 else by["embtune"][0],
                         f"{statistics.mean(by['torch']):.2f} ± {statistics.stdev(by['torch']):.2f}"
                         if len(seeds) > 1 else by["torch"][0]]])
    cmd = f"python -m bench.dropout_masks --steps {args.steps} --seeds {args.seeds} --precision {args.precision}"
    text = (f"# Dropout masks: embtune's 15-bit masks vs torch's\n\nCommand: `{cmd}` (total "
            f"{time.perf_counter() - t0:.0f} s)\n\nMachine: {machine()}\n\nUnsup SimCSE, all-MiniLM-L6-v2, the bundled "
            f"Wikipedia sample, batch 64, max length 32, lr 3e-5, {args.steps} steps, precision {rows[0]['precision']}. "
            "STS-B dev Spearman ×100 after the last step (before the trainer's selection), per seed; 'start' is the "
            "model before training.\n\n" + table + "\n")
    print(text)
    Path(args.write).write_text(text, encoding="utf-8")
    Path(args.write).with_suffix(".json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
