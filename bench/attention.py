"""Attention on a CPU by sequence length: PyTorch's scaled-dot-product attention, transformers' eager attention, and
embtune's matmul–softmax(fp32)–matmul for short batches (``embtune/encoders/cpu_attention.py``).

    python -m bench.attention [--threads 2] [--heads 12] [--head-dim 32] [--tokens 2048] [--repeats 5]

The input of one attention call of an encoder layer: ``--tokens`` tokens per batch split into sequences of length L
(so a batch of tokens/L sequences), ``--heads`` heads of ``--head-dim``, a padding mask hiding the last two
positions of every sequence (SDPA and embtune: boolean; eager: additive, as transformers builds them). Query, key
and value are strided views of one [batch, L, heads, head-dim] projection each, as a BERT layer hands them over
(``view`` then ``transpose``), and every variant returns [batch, L, heads, head-dim] contiguous, as the output
projection takes it. Eager = the formula transformers' ``eager_attention_forward`` computes (matmul, scale, add the
mask, softmax in the inputs' dtype, matmul). All run in fp32 and bf16, alternating, ``--repeats`` rounds; the best
time of each. Writes docs/attention-cpu.md.

What it is for: the lengths up to which ``cpu_attention.MAX_LENGTH`` sends a CPU inference copy's attention to
embtune's path instead of SDPA (docs/performance.md, "Attention on a CPU"); rerun it to re-check the crossover on
other CPUs and torch versions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.common import DOCS, machine, md_table
from embtune.encoders.cpu_attention import matmul_softmax_attention

LENGTHS = (8, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256, 512)


def eager(q, k, v, additive_mask):
    scores = torch.matmul(q, k.transpose(2, 3)) * q.shape[-1] ** -0.5 + additive_mask
    return torch.matmul(scores.softmax(-1), v).transpose(1, 2).contiguous()


def timed(fn, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def measure(length: int, dtype: torch.dtype, args) -> dict[str, float]:
    g = torch.Generator().manual_seed(length)
    batch = max(1, args.tokens // length)
    q, k, v = (torch.randn(batch, length, args.heads, args.head_dim, generator=g).to(dtype).transpose(1, 2)
               for _ in range(3))  # strided, as a BERT layer's projections are
    keep = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    keep[..., -2:] = False
    additive = torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)
    scale = args.head_dim ** -0.5
    calls = max(3, 4096 // length)
    runs = {"sdpa": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).contiguous(),
            "eager": lambda: eager(q, k, v, additive),
            "embtune": lambda: matmul_softmax_attention(q, k, v, keep, scale)}
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
            rows.append([name, length, m["batch"], 1e3 * m["sdpa"], 1e3 * m["eager"], 1e3 * m["embtune"],
                         f"{m['sdpa'] / m['eager']:.2f}x", f"{m['sdpa'] / m['embtune']:.2f}x"])
            print(rows[-1], flush=True)
    table = md_table(["dtype", "length L", "batch", "SDPA ms/call", "eager ms/call", "embtune ms/call",
                      "eager speed vs SDPA", "embtune speed vs SDPA"], rows)
    text = (f"# Attention on a CPU: SDPA, eager and embtune's short-batch path, by length\n\nCommand: `python -m bench.attention --threads {args.threads} "
            f"--heads {args.heads} --head-dim {args.head_dim} --tokens {args.tokens} --repeats {args.repeats}` "
            f"(total {time.perf_counter() - t0:.0f} s)\n\nMachine: {machine()}\n\n"
            f"One attention call: {args.tokens} tokens per batch (batch = tokens / L sequences), {args.heads} heads × "
            f"{args.head_dim} (strided inputs, contiguous [batch, L, heads, dim] output), the last two positions of every "
            f"sequence masked; best of {args.repeats} alternating rounds.\n\n"
            + table + "\n")
    Path(args.write).write_text(text, encoding="utf-8")
    Path(args.write).with_suffix(".json").write_text(json.dumps(res, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
