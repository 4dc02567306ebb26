"""What each speed lever gains: embtune's training step and encoding with one lever at a time undone.

    python -m bench.levers [--steps 6] [--sentences 4000] [--repeats 2] [--precision fp32|bf16]

Training (all-MiniLM-L6-v2, batch 64, max length 32, ``--precision``, full step: forward, loss, backward, AdamW):
- ``separate passes``: one forward pass per view (the plain way);
- ``one concatenated pass``: all V·N sequences in one pass, padded to the longest;
- ``embtune``: the V·N sequences sorted by length, embedded in V passes of N (each padded to its own
  longest) — what ``training/trainer.py`` does; all three draw dropout masks as the trainer does
  (``encoders/dropout.py``);
- ``torch's dropout masks``: embtune's passes with ``nn.Dropout`` and SDPA's own attention dropout
  (``bernoulli_``) instead.
Encoding (the first ``--sentences`` distinct STS test sentences, batch 64, ``--precision``):
- ``embtune``: tokenize once, length-sorted batches, ``inference_mode``, an inference copy whose linear
  layers are packed for oneDNN — ``Encoder.encode``;
- ``nn.Linear``: the same without packing (fp32: the model itself; bf16: the plain cast copy);
- ``no length sort``: batches in input order; ``tokenize per batch``: the tokenizer called per batch
  (fp32 only: these call the model directly);
- ``eager attention``: transformers' eager attention instead of scaled-dot-product attention;
- ``SDPA for short batches too``: the inference copy with SDPA's CPU kernel at every length, not
  ``encoders/cpu_attention.py``'s matmul–softmax–matmul for short batches;
- ``--backend onnx``: ONNX Runtime with fused kernels (fp32, when onnxruntime is installed).
Variants alternate, ``--repeats`` times after a warm-up round; the best of each is reported.
Writes docs/levers.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.common import DOCS, machine, md_table
from embtune.encoders.base import autocast

MODEL = "minilm-l6"


def train_variants(objective: str, steps: int, precision: str) -> dict[str, callable]:
    from embtune.config import make_config
    from embtune.data import duplicate_free_batches, read_train_file
    from embtune.encoders import load_encoder
    from embtune.encoders.dropout import use_fast_dropout
    from embtune.objectives import get_objective_class
    from embtune.objectives.base import Batch
    from embtune.training.trainer import embed_views

    cfg = make_config(objective=f"{objective}-simcse", train_file="wiki-sample" if objective == "unsup" else "snli-triples")
    data = read_train_file(cfg.train_file)

    def model(fast_dropout: bool):
        enc = load_encoder(MODEL)
        if fast_dropout:
            use_fast_dropout(enc)
        obj = get_objective_class(cfg.objective).from_config(cfg)
        obj.setup(enc, data)
        enc.train()
        return enc, obj, torch.optim.AdamW(list(enc.parameters()) + list(obj.parameters()), lr=3e-5)

    enc, obj, opt = model(True)
    torch_dropout = model(False)
    tok = lambda texts: enc.tokenize_ids(texts, max_length=32)  # noqa: E731
    import random

    batches = []
    for b in duplicate_free_batches(data.examples, 64, seed=42)[:steps]:
        texts = [data.examples[i] for i in b]
        ids = [tuple(tok(list(ex))) for ex in texts]
        batches.append(Batch(texts, ids, tok, random.Random(0)))

    def separate(views):
        with autocast(enc.device, precision):
            return torch.stack([enc.embed_ids(v) for v in views]).float()

    def concatenated(views):
        flat = [s for v in views for s in v]
        with autocast(enc.device, precision):
            return enc.embed_ids(flat).view(len(views), len(views[0]), -1).float()

    def sorted_passes(views):
        return embed_views(enc, views, enc.device, precision)

    def runner(embed, enc=enc, obj=obj, opt=opt):
        def run() -> float:
            t = time.perf_counter()
            for batch in batches:
                loss = obj.loss(embed(obj.views(batch)), batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return (time.perf_counter() - t) / len(batches)
        return run

    enc2 = torch_dropout[0]
    return {"separate passes": runner(separate), "one concatenated pass": runner(concatenated),
            "embtune (length-sorted passes)": runner(sorted_passes),
            "embtune, torch's dropout masks (bernoulli_)": runner(
                lambda views: embed_views(enc2, views, enc2.device, precision), *torch_dropout)}


def encode_variants(n: int, precision: str) -> dict[str, callable]:
    from embtune.encoders import load_encoder, transformer
    from embtune.encoders.onnx import available
    from embtune.evaluation.sts import STS_TASKS, load_sts

    sents = list(dict.fromkeys(s for t in STS_TASKS for d in [load_sts(t)] for s in (*d.sent1, *d.sent2)))[:n]
    enc = load_encoder(MODEL)

    plain = load_encoder(MODEL)  # its inference copy is built, and cached, with packing off

    def full(enc=enc) -> float:
        return len(sents) / _timed(lambda: enc.encode(sents, batch_size=64, precision=precision))

    def unpacked() -> float:
        can_pack = transformer.can_pack
        transformer.can_pack = lambda device, dtype: False
        try:
            return full(plain)
        finally:
            transformer.can_pack = can_pack

    def manual(sort: bool, per_batch_tokenize: bool) -> callable:
        def run() -> float:
            t = time.perf_counter()
            order = sorted(range(len(sents)), key=lambda i: -len(sents[i])) if sort else list(range(len(sents)))
            ids = None if per_batch_tokenize else enc.tokenize_ids(sents)
            run = enc.inference_runner("fp32")
            with torch.inference_mode():
                for s in range(0, len(order), 64):
                    idx = order[s:s + 64]
                    bid = enc.tokenize_ids([sents[i] for i in idx]) if per_batch_tokenize else [ids[i] for i in idx]
                    run(enc.collate(bid))  # the model encode() runs (the packed inference copy on a CPU)
            return len(sents) / (time.perf_counter() - t)
        return run

    eager_enc = load_encoder(MODEL)  # its own encoder: switching enc's attention would rebuild enc's copy
    eager_enc.backbone.set_attn_implementation("eager")

    def eager() -> float:
        return full(eager_enc)

    sdpa_enc = load_encoder(MODEL)  # its own encoder, whose inference copy is switched back to SDPA
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def sdpa_only() -> float:
        copy_ = sdpa_enc.inference_backbone(dtype)  # cached: the switch below stays until the weights change
        if copy_ is not None:
            copy_.set_attn_implementation("sdpa")
        return full(sdpa_enc)

    out = {"embtune (Encoder.encode)": full, "nn.Linear (weights not packed for oneDNN)": unpacked,
           "SDPA for short batches too": sdpa_only}
    if precision == "fp32":
        out.update({"no length sort": manual(False, False), "tokenize per batch (sorted by characters)": manual(True, True)})
    out["eager attention"] = eager
    if available() and precision == "fp32":
        onnx = load_encoder(MODEL, backend="onnx")
        out["--backend onnx"] = lambda: len(sents) / _timed(lambda: onnx.encode(sents, batch_size=64))
    return out


def alternate(variants: dict[str, callable], repeats: int) -> dict[str, list[float]]:
    """Run the variants in turn, ``repeats`` rounds after one discarded warm-up round (first calls
    allocate and pick kernels); each variant's measurements in order."""
    out: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(repeats + 1):
        for k, run in variants.items():
            took = run()
            if r:
                out[k].append(took)
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--sentences", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="training autocast and encoding precision (bf16: the CPU must run it natively)")
    ap.add_argument("--only", choices=("train", "encode"), help="only the training or only the encoding rows")
    ap.add_argument("--write", default=str(DOCS / "levers.md"))
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    sections, res = [], {}
    for objective in () if args.only == "encode" else ("unsup", "sup"):
        variants = train_variants(objective, args.steps, args.precision)
        times = alternate(variants, args.repeats)
        best = {k: min(v) for k, v in times.items()}
        base = best["separate passes"]
        res[f"train-{objective}"] = times
        sections.append(f"Training step, {objective} SimCSE ({args.steps} steps per run):\n\n" + md_table(
            ["variant", "s/step (best)", "all runs", "speed vs separate passes"],
            [[k, v, ", ".join(f"{x:.2f}" for x in times[k]), f"{base / v:.2f}x"] for k, v in best.items()]))
        print(sections[-1], flush=True)
    if args.only != "train":
        variants = encode_variants(args.sentences, args.precision)
        speeds = alternate(variants, args.repeats)
        best = {k: max(v) for k, v in speeds.items()}
        ref = best["embtune (Encoder.encode)"]
        res["encode"] = speeds
        sections.append(f"Encoding, first {args.sentences} distinct STS test sentences:\n\n" + md_table(
            ["variant", "sentences/s (best)", "all runs", "vs embtune"],
            [[k, v, ", ".join(f"{x:.1f}" for x in speeds[k]), f"{v / ref:.2f}x"] for k, v in best.items()]))
        print(sections[-1], flush=True)
    only = f" --only {args.only}" if args.only else ""
    text = (f"# Speed levers, one at a time\n\nCommand: `python -m bench.levers --steps {args.steps} --sentences "
            f"{args.sentences} --repeats {args.repeats} --precision {args.precision}{only}` (total {time.perf_counter() - t0:.0f} s)\n\nMachine: {machine()}\n\n"
            f"all-MiniLM-L6-v2, {args.precision}, batch 64, max length 32 in training. The variants alternate after one discarded "
            "warm-up round; the best run is reported (this VM's speed drifts between runs).\n\n" + "\n\n".join(sections) + "\n")
    Path(args.write).write_text(text, encoding="utf-8")
    Path(args.write).with_suffix(".json").write_text(json.dumps(res, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
