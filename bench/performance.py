"""embtune against sentence-transformers on the same machine, in one run, alternating the tools.

    python -m bench.performance [--steps 30] [--skip-bf16]      (make bench runs this; CPU)
    python -m bench.performance --device cuda                   (one accelerator: bench/device.py, bench/gpu_run.sh)

1. training throughput, unsup SimCSE: all-MiniLM-L6-v2, batch 64, max length 32, lr 3e-5, the
   bundled Wikipedia sample; sentence-transformers' way is MultipleNegativesRankingLoss with each
   sentence given twice (scale 20 = τ 0.05). Both tools consume the very same batches.
2. the same, supervised, on the SNLI triples with hard negatives.
3. encoding throughput: the distinct sentences of the 7 STS test sets, batch 64, and the 7-task
   average from each tool's embeddings.
4. the machine's fp32/bf16 matmul throughput, and the FLOP/s each configuration reaches
   (transformer FLOPs per token counted analytically).
Every measurement runs in a fresh process (so peak RSS is its own). sentence-transformers is
driven by a plain PyTorch loop over its model and loss (no Trainer), which is its fastest path.
Writes docs/performance.md. A benchmark, not a test: it never fails on a timing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import DOCS, machine, md_table

MODEL = "minilm-l6"
GPU_MARK = "## GPU"


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (1024, 2048), repeats: int = 3) -> float:
    """Best FLOP/s of square matmuls over a few sizes and repeats (single probes are noisy here)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        reps = max(1, int(2e10 // (2 * n**3))) if dtype == torch.float32 else 1
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def flops_per_token(cfg, seq: float) -> float:
    """Forward FLOPs per token of a BERT encoder: per layer 24h² (QKV, output, FFN 4h) + 4·s·h (attention)."""
    h, layers = cfg.hidden_size, cfg.num_hidden_layers
    ffn = cfg.intermediate_size / h
    return layers * ((8 + 4 * ffn) * h * h + 4 * seq * h)


def useful_flops(cfg, lengths: list[int], train: bool) -> float:
    f = sum(n * flops_per_token(cfg, n) for n in lengths)
    return 3 * f if train else f  # backward ≈ 2x forward


# ---- child roles ------------------------------------------------------------------------------
def _batches(objective: str, steps: int):
    from embtune.data import duplicate_free_batches, read_train_file

    data = read_train_file("wiki-sample" if objective == "unsup" else "snli-triples")
    batches = duplicate_free_batches(data.examples, 64, seed=42)[:steps]
    return [[data.examples[i] for i in b] for b in batches]


def _stsb_dev(encode) -> float:
    from embtune.evaluation.dev import evaluate_dev

    class Wrap:
        def encode(self, texts, **kw):
            return encode(texts)

    return evaluate_dev(Wrap())["stsb_dev_spearman"]


def child_train(tool: str, objective: str, steps: int, precision: str) -> dict:
    from embtune.encoders import load_encoder
    from embtune.encoders.base import autocast

    torch.manual_seed(42)
    batches = _batches(objective, steps)
    dev = torch.device("cpu")
    if tool == "embtune":
        from embtune.config import make_config
        from embtune.training.trainer import Trainer

        out = tempfile.mkdtemp(prefix="bench-")
        cfg = make_config(model=MODEL, objective=f"{objective}-simcse", output=out, max_steps=steps, precision=precision,
                          allow_slow_precision=True, device="cpu",
                          train_file="wiki-sample" if objective == "unsup" else "snli-triples")
        tr = Trainer(cfg, progress=False)
        m = tr.run()
        enc = tr.encoder
        lengths = [len(s) for idx in tr.batches(0)[:steps] for ex in idx for s in tr.examples[ex]]
        if objective == "unsup":
            lengths = lengths * 2
        seconds = m["train_seconds"]
        score = _stsb_dev(lambda texts: enc.encode(texts))
        cfg_model = enc.backbone.config
    else:
        from sentence_transformers import SentenceTransformer
        try:
            from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        except ImportError:  # sentence-transformers < 6
            from sentence_transformers.losses import MultipleNegativesRankingLoss

        path = str(load_encoder(MODEL).source_path)
        model = SentenceTransformer(path, device="cpu")
        model.max_seq_length = 32
        loss_fn = MultipleNegativesRankingLoss(model, scale=20.0)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (steps - s) / steps))
        model.train()
        lengths = []
        t0 = time.perf_counter()
        for batch in batches:
            cols = [[ex[0] for ex in batch]] * 2 if objective == "unsup" else [[ex[c] for ex in batch] for c in range(3)]
            feats = [model.tokenize(c) for c in cols]
            lengths += [int(x) for f in feats for x in f["attention_mask"].sum(1)]
            with autocast(dev, precision):
                loss = loss_fn(feats, None)
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
        seconds = time.perf_counter() - t0
        model.eval()
        model.max_seq_length = 256
        score = _stsb_dev(lambda texts: model.encode(texts, batch_size=64, convert_to_numpy=True))
        cfg_model = model[0].auto_model.config
    n = sum(len(b) for b in batches)
    return {"examples_per_s": n / seconds, "s_per_step": seconds / len(batches), "stsb_dev": score,
            "flops_per_s": useful_flops(cfg_model, lengths, train=True) / seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_encode(tool: str, precision: str, limit: int | None) -> dict:
    import numpy as np

    from embtune.encoders import load_encoder
    from embtune.evaluation.sts import STS_TASKS, _cosine, correlations, load_sts

    sets = [load_sts(t) for t in STS_TASKS]
    sents = list(dict.fromkeys(s for d in sets for s in (*d.sent1, *d.sent2)))[:limit]
    enc = load_encoder(MODEL)
    export_s = 0.0
    if tool in ("embtune", "embtune-onnx"):
        if tool == "embtune-onnx":  # the one-time export (cached afterwards) is timed apart
            t0 = time.perf_counter()
            enc = load_encoder(MODEL, backend="onnx")
            export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb = enc.encode(sents, batch_size=64, precision=precision, allow_slow_precision=True)
        seconds = time.perf_counter() - t0
    else:
        from sentence_transformers import SentenceTransformer

        from embtune.encoders.base import autocast

        model = SentenceTransformer(str(enc.source_path), device="cpu")
        if precision == "bf16":  # sentence-transformers' own way: the model cast to bf16
            model = model.to(torch.bfloat16)
        t0 = time.perf_counter()
        with autocast(torch.device("cpu"), precision if precision == "fp16" else "fp32"):
            emb = model.encode(sents, batch_size=64, convert_to_numpy=True)
        seconds = time.perf_counter() - t0
    row = {s: i for i, s in enumerate(sents)}
    scores = {}
    if limit is None:
        for d in sets:
            pred = _cosine(emb[[row[s] for s in d.sent1]], emb[[row[s] for s in d.sent2]])
            scores[d.task] = correlations(pred, d.scores)[0]
    lengths = [len(x) for x in enc.tokenize_ids(sents)]
    return {"sentences_per_s": len(sents) / seconds, "sentences": len(sents), "seconds": seconds, "export_s": export_s,
            "avg7": float(np.mean(list(scores.values()))) if scores else math.nan, "tasks": scores,
            "flops_per_s": useful_flops(load_encoder(MODEL).backbone.config, lengths, train=False) / seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ---- parent -----------------------------------------------------------------------------------
def spawn(*args: str) -> dict:
    cmd = [sys.executable, "-m", "bench.performance", "--role", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    print(args, {k: v for k, v in res.items() if k != "tasks"}, flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip-bf16", action="store_true", help="skip the bf16 rows")
    ap.add_argument("--encode-sentences", default="all", help="all (default) or the first N sentences (a quick try)")
    ap.add_argument("--bf16-steps", type=int, default=2, help="training steps of the bf16 rows where bf16 is not native")
    ap.add_argument("--bf16-sentences", type=int, default=500, help="sentences of the bf16 encode rows where not native")
    ap.add_argument("--encode-repeats", type=int, default=2, help="encoding runs per tool (best reported)")
    ap.add_argument("--write", default=str(DOCS / "performance.md"))
    ap.add_argument("--device", default="cpu", help="cpu (the table in docs/performance.md) or cuda (bench/device.py: "
                    "one process, random-init BERT-base)")
    ap.add_argument("--one-process", action="store_true", help="the device benchmark (bench/device.py) on this --device")
    from bench import device as device_bench

    device_bench.add_arguments(ap)
    args = ap.parse_args()
    if not args.role and (args.device != "cpu" or args.one_process):
        device_bench.parse(args)
        device_bench.run(args)
        return
    if args.role:
        kind, *rest = args.role
        if kind == "train":
            res = child_train(rest[0], rest[1], int(rest[2]), rest[3])
        else:
            res = child_encode(rest[0], rest[1], int(rest[2]) if len(rest) > 2 and rest[2] != "all" else None)
        print(json.dumps(res))
        return

    t0 = time.perf_counter()
    old_text = Path(args.write).read_text(encoding="utf-8") if Path(args.write).is_file() else ""
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    from embtune.precision import detect_support

    support = detect_support("cpu")
    native_bf16 = support.bf16
    rows, res = [], {}
    for objective in ("unsup", "sup"):
        e = spawn("train", "embtune", objective, str(args.steps), "fp32")
        s = spawn("train", "st", objective, str(args.steps), "fp32")
        res[f"train-{objective}"] = {"embtune": e, "st": s}
        rows.append([f"train {objective} fp32 (examples/s)", e["examples_per_s"], s["examples_per_s"],
                     f"{e['examples_per_s'] / s['examples_per_s']:.2f}x",
                     f"STS-B dev {e['stsb_dev']:.2f} vs {s['stsb_dev']:.2f}",
                     f"{100 * e['flops_per_s'] / peak32:.0f}% vs {100 * s['flops_per_s'] / peak32:.0f}%",
                     f"{e['peak_rss_mib']:.0f} vs {s['peak_rss_mib']:.0f}"])
    # encoding: each tool args.encode_repeats times, alternating; the best run of each is reported
    runs: dict[str, list[dict]] = {"embtune": [], "st": [], "embtune-onnx": []}
    for _ in range(args.encode_repeats):
        for tool in runs:
            runs[tool].append(spawn("encode", tool, "fp32", args.encode_sentences))
    best = {tool: max(r, key=lambda x: x["sentences_per_s"]) for tool, r in runs.items()}
    res["encode"] = {**best, "all_runs": runs}
    s = best["st"]
    for tool, label in (("embtune", "encode fp32, torch (sentences/s)"), ("embtune-onnx", "encode fp32, --backend onnx (sentences/s)")):
        e = best[tool]
        rows.append([label, e["sentences_per_s"], s["sentences_per_s"],
                     f"{e['sentences_per_s'] / s['sentences_per_s']:.2f}x", f"7-task avg {e['avg7']:.2f} vs {s['avg7']:.2f}",
                     f"{100 * e['flops_per_s'] / peak32:.0f}% vs {100 * s['flops_per_s'] / peak32:.0f}%",
                     f"{e['peak_rss_mib']:.0f} vs {s['peak_rss_mib']:.0f}"])
    res["encode"]["embtune"] = best["embtune"]
    if not args.skip_bf16:  # run everywhere; marked where the CPU has no bf16 instructions
        mark = "" if native_bf16 else " (not native: emulated)"
        steps = args.steps if native_bf16 else args.bf16_steps
        e = spawn("train", "embtune", "unsup", str(steps), "bf16")
        s = spawn("train", "st", "unsup", str(steps), "bf16")
        res["train-unsup-bf16"] = {"embtune": e, "st": s}
        e32 = res["train-unsup"]["embtune"]
        rows.append([f"train unsup bf16{mark}, {steps} steps (examples/s)", e["examples_per_s"], s["examples_per_s"],
                     f"{e['examples_per_s'] / s['examples_per_s']:.2f}x; {e['examples_per_s'] / e32['examples_per_s']:.2f}x "
                     f"embtune fp32; {e['examples_per_s'] / res['train-unsup']['st']['examples_per_s']:.2f}x ST fp32",
                     f"STS-B dev {e['stsb_dev']:.2f} vs {s['stsb_dev']:.2f} (fp32 run: {e32['stsb_dev']:.2f})",
                     f"{100 * e['flops_per_s'] / peak16:.0f}% vs {100 * s['flops_per_s'] / peak16:.0f}% of bf16 peak",
                     f"{e['peak_rss_mib']:.0f} vs {s['peak_rss_mib']:.0f}"])
        n = args.encode_sentences if native_bf16 else str(args.bf16_sentences)
        bruns: dict[str, list[dict]] = {"embtune": [], "st": []}
        for _ in range(args.encode_repeats if native_bf16 else 1):
            for tool in bruns:
                bruns[tool].append(spawn("encode", tool, "bf16", n))
        e, s = (max(r, key=lambda x: x["sentences_per_s"]) for r in bruns.values())
        res["encode-bf16"] = {"embtune": e, "st": s, "all_runs": bruns}
        e32 = res["encode"]["embtune"]
        quality = f"7-task avg {e['avg7']:.2f} vs {s['avg7']:.2f} (fp32: {e32['avg7']:.2f})" if n == "all" else "–"
        rows.append([f"encode bf16{mark}, {'all' if n == 'all' else 'first ' + n} sentences (sentences/s)",
                     e["sentences_per_s"], s["sentences_per_s"],
                     f"{e['sentences_per_s'] / s['sentences_per_s']:.2f}x; {e['sentences_per_s'] / e32['sentences_per_s']:.2f}x "
                     "embtune fp32", quality,
                     f"{100 * e['flops_per_s'] / peak16:.0f}% vs {100 * s['flops_per_s'] / peak16:.0f}% of bf16 peak",
                     f"{e['peak_rss_mib']:.0f} vs {s['peak_rss_mib']:.0f}"])
    table = md_table(["measurement", "embtune", "sentence-transformers", "ratio", "quality", "of fp32 peak",
                      "peak RSS MiB"], rows)
    st_version = __import__("sentence_transformers").__version__
    text = (f"# Performance: embtune vs sentence-transformers\n\nCommand: `python -m bench.performance --steps {args.steps}` "
            f"(total {time.perf_counter() - t0:.0f} s)\n\nMachine: {machine()}; sentence-transformers {st_version}.\n"
            f"torch matmul peak (best of 1024² and 2048², 3 repeats, this run): fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.1f} GFLOP/s; "
            f"native bf16 on this CPU: {'yes' if native_bf16 else 'no'} ({support.detail}).\n\n"
            f"Training: {args.steps} steps of batch 64, max length 32, lr 3e-5, both tools on the same batches. "
            "Encoding: the 26,083 distinct sentences of the 7 STS test sets (SentEval text), batch 64, "
            f"{args.encode_repeats} runs per tool alternating, the best of each reported (sentence-transformers' "
            "runs: " + ", ".join(f"{r['sentences_per_s']:.1f}" for r in runs["st"]) + "; embtune torch: "
            + ", ".join(f"{r['sentences_per_s']:.1f}" for r in runs["embtune"]) + "; embtune onnx: "
            + ", ".join(f"{r['sentences_per_s']:.1f}" for r in runs["embtune-onnx"]) + " sentences/s). "
            "The ONNX export (once, then cached) took "
            f"{best['embtune-onnx']['export_s']:.0f} s in its best run's process and is not in its time. "
            "FLOP/s = useful transformer FLOPs on real (unpadded) tokens / wall time.\n\n" + table + "\n")
    text += ("\nbf16: embtune runs the transformer as a bf16 copy of the model (weights cast once; pooling in fp32) "
             "for encoding, autocast with fp32 master weights for training; sentence-transformers encodes with the model "
             "cast to bf16 and trains under autocast.\n")
    if GPU_MARK in old_text:  # keep the GPU section of an earlier device run
        text += "\n" + old_text[old_text.index(GPU_MARK):]
    print(text)
    Path(args.write).write_text(text, encoding="utf-8")
    Path(args.write).with_suffix(".json").write_text(json.dumps(res, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
