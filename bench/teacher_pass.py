"""The teacher pass of ``embtune adapt``: how fast the teacher embeds a corpus in each precision, and whether the
scores survive (a benchmark, not a test).

    python -m bench.teacher_pass [--teacher mpnet-base] [--texts 4000] [--doc docs/teacher-pass.md]

For each precision the teacher runs in (fp32, bf16 where native, ONNX Runtime int8 with ``--onnx``): the seconds
to embed the first ``--texts`` titles of the bundled Mathematica forum (what adapt's teacher pass does, with
embtune's encode: length-sorted batches, the packed CPU inference copy) and the 7-task STS average (Spearman
×100, SentEval text), beside fp32. adapt runs the teacher in ``--precision`` (auto: bf16 where native); the
issue's bar is ≥ 2× fp32 with STS within 0.3.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import subprocess
import time
from pathlib import Path


def titles(n: int) -> list[str]:
    from embtune.demo import FORUM

    with gzip.open(FORUM / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(x)["text"] for x in f.read().splitlines()[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default="mpnet-base")
    ap.add_argument("--texts", type=int, default=4000)
    ap.add_argument("--onnx", action="store_true", help="also ONNX Runtime int8 (backend onnx-int8)")
    ap.add_argument("--no-sts", action="store_true")
    ap.add_argument("--doc", default="docs/teacher-pass.md")
    args = ap.parse_args()
    from embtune.encoders import load_encoder
    from embtune.evaluation.sts import STS_TASKS
    from embtune.evaluation.suite import run_evaluation
    from embtune.precision import detect_support

    texts = titles(args.texts)
    runs = [("torch", "fp32")]
    if detect_support("cpu").bf16:
        runs.append(("torch", "bf16"))
    if args.onnx:
        runs.append(("onnx-int8", "fp32"))
    rows = []
    for backend, precision in runs:
        enc = load_encoder(args.teacher, backend=backend) if backend != "torch" else load_encoder(args.teacher)
        enc.encode(texts[:64], batch_size=128, precision=precision)  # warm-up (packing, graph)
        t0 = time.perf_counter()
        enc.encode(texts, batch_size=128, precision=precision)
        sec = time.perf_counter() - t0
        sts = None if args.no_sts else run_evaluation(enc, list(STS_TASKS), precision=precision)["avg"]
        rows.append({"backend": backend, "precision": precision, "seconds": round(sec, 2),
                     "texts_per_s": round(len(texts) / sec, 1), "sts_avg": sts})
        print(rows[-1], flush=True)
    cpu = subprocess.run("lscpu | grep -o 'avx512_bf16' | head -1", shell=True, capture_output=True, text=True).stdout.strip()
    base = rows[0]
    lines = ["# The teacher pass: precision against speed and scores", "",
             f"`python -m bench.teacher_pass --teacher {args.teacher} --texts {args.texts}{' --onnx' if args.onnx else ''}`; "
             f"{platform.machine()}, {__import__('os').cpu_count()} cores, flags: {cpu or 'no avx512_bf16'}, "
             f"torch {__import__('torch').__version__}; {len(texts)} Mathematica titles.", "",
             "| teacher run | texts/s | × fp32 | STS avg (7 tasks) | Δ STS vs fp32 |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        sts = f"{r['sts_avg']:.2f}" if r["sts_avg"] is not None else "–"
        d = f"{r['sts_avg'] - base['sts_avg']:+.2f}" if r["sts_avg"] is not None and base["sts_avg"] is not None else "–"
        lines.append(f"| {r['backend']} {r['precision']} | {r['texts_per_s']:.1f} | "
                     f"{base['seconds'] / r['seconds']:.2f}× | {sts} | {d} |")
    Path(args.doc).write_text("\n".join(lines) + "\n", encoding="utf-8")
    Path(args.doc).with_suffix(".json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
