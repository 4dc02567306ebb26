"""Scale measurements: big batches with and without gradient caching, and 2 processes vs 1.

    python -m bench.scale [--big-batch 512] [--mini-batch 64] [--steps 2] [--ddp-steps 10]

Each configuration runs `embtune train` in its own process (unsup SimCSE on MiniLM, the bundled
Wikipedia sample, max length 32); peak RSS is the child's maximum resident set size. Writes
docs/scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import DOCS, machine, md_table


def run(args: list[str], env: dict | None = None, launcher: list[str] | None = None) -> dict:
    out = Path(tempfile.mkdtemp(prefix="embtune-scale-"))
    cmd = (launcher or [sys.executable, "-m", "embtune"]) + ["train", "--model", "minilm-l6", "--train-file", "wiki-sample",
                                                              "--output", str(out), "--no-progress", *args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    m = json.loads((out / "metrics.json").read_text())
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run configurations from small to large
    m["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    m["wall"] = wall
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big-batch", type=int, default=512)
    ap.add_argument("--mini-batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--ddp-steps", type=int, default=10)
    ap.add_argument("--write", default=str(DOCS / "scale.md"))
    args = ap.parse_args()

    rows = []
    # gradient caching first: its peak is the smaller one, and RUSAGE_CHILDREN keeps the maximum
    gc = run(["--batch-size", str(args.big_batch), "--mini-batch-size", str(args.mini_batch), "--max-steps", str(args.steps)])
    rows.append([f"batch {args.big_batch}, --mini-batch-size {args.mini_batch}", gc["peak_rss_mib"], gc["seconds_per_step"]])
    print(rows[-1], flush=True)
    full = run(["--batch-size", str(args.big_batch), "--max-steps", str(args.steps)])
    rows.append([f"batch {args.big_batch}, one graph", full["peak_rss_mib"], full["seconds_per_step"]])
    print(rows[-1], flush=True)
    mem_table = md_table(["configuration", "peak RSS (MiB)", "s/step"], rows)

    one = run(["--batch-size", "64", "--max-steps", str(args.ddp_steps)])
    two = run(["--batch-size", "32", "--max-steps", str(args.ddp_steps)], env={"OMP_NUM_THREADS": "1"},
              launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "embtune"])
    ddp_rows = [["1 process, batch 64", one["examples_per_second"], one["seconds_per_step"]],
                ["2 processes (gloo) x batch 32 = global 64", two["examples_per_second"], two["seconds_per_step"]]]
    ddp_table = md_table(["configuration", "examples/s", "s/step"], ddp_rows)
    text = (f"# Scale\n\nCommand: `python -m bench.scale --big-batch {args.big_batch} --mini-batch {args.mini_batch} "
            f"--steps {args.steps} --ddp-steps {args.ddp_steps}`\n\nMachine: {machine()}\n\n"
            f"## Big batches in small memory (unsup SimCSE, all-MiniLM-L6-v2, max length 32, {args.steps} steps)\n\n"
            f"{mem_table}\n\n## Processes (unsup SimCSE, MiniLM, {args.ddp_steps} steps, global batch 64)\n\n{ddp_table}\n\n"
            "With 2 CPU cores the two processes share the cores that one process uses with 2 threads, so this "
            "measures the overhead of the gather and the gradient all-reduce, not a speed-up.\n")
    print(text)
    Path(args.write).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
