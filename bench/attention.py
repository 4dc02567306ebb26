"""Attention on a CPU: PyTorch's scaled-dot-product attention vs transformers' eager attention, by sequence length.

    python -m bench.attention [--threads 2] [--heads 12] [--head-dim 32] [--tokens 2048] [--repeats 5]

The input of one attention call of an encoder layer: ``--tokens`` tokens per batch split into sequences of length L
(so a batch of tokens/L sequences), ``--heads`` heads of ``--head-dim``, a padding mask hiding the last two
positions of every sequence (SDPA: boolean; eager: additive, as transformers builds them). Eager = the formula
transformers' ``eager_attention_forward`` computes (matmul, scale, add the mask, softmax, matmul). Both run in fp32
and bf16, alternating, ``--repeats`` rounds; the best time of each. Writes docs/attention-cpu.md.

What it showed, and why embtune still runs SDPA (docs/performance.md, "Attention on a CPU"): eager is faster per
call at short lengths here, but an inference copy switched to eager for short batches encoded no faster end to
end (all-MiniLM-L6-v2, 4,000 STS sentences, 5 alternating rounds: 0.99x fp32, 1.00x bf16), so the switch was not
kept; this benchmark stays to re-check the crossover on other CPUs and torch versions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.common import DOCS, machine, md_table

LENGTHS = (8, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256, 512)


def eager(q, k, v, additive_mask):
    scores = torch.matmul(q, k.transpose(2, 3)) * q.shape[-1] ** -0.5 + additive_mask
    return torch.matmul(scores.softmax(-1), v)


def timed(fn, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def measure(length: int, dtype: torch.dtype, args) -> dict[str, float]:
    g = torch.Generator().manual_seed(length)
    batch = max(1, args.tokens // length)
    q, k, v = (torch.randn(batch, args.heads, length, args.head_dim, generator=g).to(dtype) for _ in range(3))
    keep = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    keep[..., -2:] = False
    additive = torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)
    calls = max(3, 4096 // length)
    runs = {"sdpa": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
            "eager": lambda: eager(q, k, v, additive)}
    with torch.inference_mode():
        for fn in runs.values():  # a discarded warm-up round
            timed(fn, calls)
        best = {name: float("inf") for name in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                best[name] = min(best[name], timed(fn, calls))
    return {"batch": batch, **best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--head-dim", type=int, default=32, help="32: all-MiniLM-L6-v2; 64: BERT-base")
    ap.add_argument("--tokens", type=int, default=2048, help="tokens per batch (a batch of 64 sentences of ~32)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write", default=str(DOCS / "attention-cpu.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows, res = [], {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        for length in LENGTHS:
            m = measure(length, dtype, args)
            res[f"{name}-{length}"] = m
            rows.append([name, length, m["batch"], 1e3 * m["sdpa"], 1e3 * m["eager"], f"{m['sdpa'] / m['eager']:.2f}x"])
            print(rows[-1], flush=True)
    table = md_table(["dtype", "length L", "batch", "SDPA ms/call", "eager ms/call", "eager speed vs SDPA"], rows)
    text = (f"# Attention on a CPU: SDPA vs eager, by length\n\nCommand: `python -m bench.attention --threads {args.threads} "
            f"--heads {args.heads} --head-dim {args.head_dim} --tokens {args.tokens} --repeats {args.repeats}` "
            f"(total {time.perf_counter() - t0:.0f} s)\n\nMachine: {machine()}\n\n"
            f"One attention call: {args.tokens} tokens per batch (batch = tokens / L sequences), {args.heads} heads × "
            f"{args.head_dim}, the last two positions of every sequence masked; best of {args.repeats} alternating rounds.\n\n"
            + table + "\n")
    Path(args.write).write_text(text, encoding="utf-8")
    Path(args.write).with_suffix(".json").write_text(json.dumps(res, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
