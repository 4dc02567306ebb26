"""embtune against sentence-transformers on one accelerator, in one process, alternating the tools.

    python -m bench.performance --device cuda [--sentences 40000] [--train-steps 150] [--out DIR]

The model is a random-init BERT-base (12 layers, hidden 768) built from a config, with a WordPiece
vocabulary (30,522 entries) trained in-process on the corpus: no download, the same weights and
tokenizer for both tools. The corpus: distinct sentences from the bundled data (Wikipedia sample, SNLI
triples, STS and SICK sentences, raw text), the first ``--sentences`` of them.

Rows: encode sentences/s per tool, precision and batch size (best of ``--repeats`` runs, alternating
tools); training examples/s and steps/s (unsup SimCSE for embtune, MultipleNegativesRankingLoss with
each sentence twice for sentence-transformers, batch 64, max length 32, the same batches), steady
state after ``--warmup-steps``; the fraction of the device's measured matmul peak (useful transformer
FLOPs on unpadded tokens / wall time). A precision the device has no native support for is run anyway
and marked. A profile of one embtune encode and a few training steps goes to ``profile.txt``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import traceback
from pathlib import Path

import torch

from bench.performance import flops_per_token

HALF = {"fp32": torch.float32, "bf16": torch.bfloat16}


def corpus(n: int) -> list[str]:
    from embtune.data import read_train_file
    from embtune.evaluation.sts import STS_TASKS, load_sts

    seen: dict[str, None] = {}
    for name in ("wiki-sample", "snli-triples"):
        for ex in read_train_file(name).examples:
            for s in ex:
                seen.setdefault(s.strip())
    for task in STS_TASKS:
        for split in ("test", "dev", "train"):
            try:
                d = load_sts(task, split=split, text="raw")
            except Exception:  # not every task has every split bundled
                continue
            for s in (*d.sent1, *d.sent2):
                seen.setdefault(s.strip())
    sents = [s for s in seen if len(s) >= 20]
    return sents[:n]


def build_model(sentences: list[str], folder: Path, layers: int = 12, hidden: int = 768, heads: int = 12,
                vocab_size: int = 30522) -> Path:
    """A random-init BERT with a WordPiece vocabulary trained on ``sentences`` (a plain HF folder)."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(sentences, vocab_size=vocab_size, min_frequency=1, show_progress=False)
    wp.save_model(str(folder))
    tok = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)
    tok.model_max_length = 512
    tok.save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=4 * hidden, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder)
    return folder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 8192, reps: int = 10) -> float:
    if device.type == "cpu":
        from bench.performance import matmul_peak as cpu_peak

        return cpu_peak(dtype)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


class Bench:
    def __init__(self, args, device: torch.device, out: Path):
        from embtune.precision import detect_support

        self.args, self.device, self.out = args, device, out
        self.support = detect_support(device)
        self.results: dict = {"device": self.support.detail, "args": vars(args), "encode": [], "train": []}
        self.log = open(out / "log.txt", "a", encoding="utf-8")

    def say(self, *msg) -> None:
        line = " ".join(str(m) for m in msg)
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str), encoding="utf-8")

    def guarded(self, what: str, fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except Exception as e:  # one failing row must not cost the rest of a device run
            self.say(f"FAILED {what}: {e!r}")
            self.log.write(traceback.format_exc())
            self.results.setdefault("failures", []).append(f"{what}: {e!r}")
            return None


def run(args) -> None:
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    b = Bench(args, device, out)
    t_all = time.perf_counter()
    sents = corpus(args.sentences)
    b.say(f"device: {b.support.detail}; native bf16: {b.support.bf16}; {len(sents)} sentences, "
          f"{sum(map(len, sents)) / len(sents):.1f} characters on average")
    work = Path(tempfile.mkdtemp(prefix="embtune-devbench-"))
    folder = build_model(sents, work / "model", layers=args.layers, hidden=args.hidden, heads=args.heads)
    b.say(f"model built in {time.perf_counter() - t_all:.1f}s")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, for both tools
    peaks = {p: matmul_peak(device, HALF[p]) for p in ("fp32", "bf16")}
    b.results["peaks"] = peaks
    b.say("matmul peak GFLOP/s:", {p: round(v / 1e9) for p, v in peaks.items()})
    b.save()
    encode_rows(b, folder, sents, peaks)
    b.save()
    train_rows(b, folder, sents, work, peaks)
    b.save()
    b.guarded("profile", profile, b, folder, sents, work)
    b.save()
    if not args.no_compile:
        train_compiled(b, folder, work)
    b.results["total_s"] = time.perf_counter() - t_all
    b.save()
    table = markdown(b)
    (out / "table.md").write_text(table, encoding="utf-8")
    b.say(table)


# ---- encoding -----------------------------------------------------------------------------------
def encode_rows(b: Bench, folder: Path, sents: list[str], peaks: dict) -> None:
    from sentence_transformers import SentenceTransformer

    from embtune.encoders import load_encoder

    args, device = b.args, b.device
    enc = load_encoder(str(folder), device=str(device))
    enc.allow_slow_precision = True  # non-native rows are run and marked
    cfg = enc.backbone.config
    t = time.perf_counter()
    ids = enc.tokenize_ids(sents)
    tok_s = time.perf_counter() - t
    lengths = [len(x) for x in ids]
    useful = sum(n * flops_per_token(cfg, n) for n in lengths)
    b.results["tokens"] = {"mean": sum(lengths) / len(lengths), "tokenize_whole_corpus_s": tok_s}
    b.say(f"tokens/sentence {sum(lengths) / len(lengths):.1f}; tokenizing the corpus in one call: {tok_s:.2f}s")
    st = SentenceTransformer(str(folder), device=str(device))
    st.max_seq_length = enc.max_seq_length
    st_bf16 = None
    configs = []
    for p in args.precisions:
        for bs in args.batch_sizes:
            configs.append(("embtune", p, bs, None))
        if args.token_budget:
            configs.append(("embtune", p, max(args.batch_sizes), args.token_budget))
        for bs in args.st_batch_sizes:
            configs.append(("sentence-transformers", p, bs, None))
    warm = sents[: min(len(sents), 2048)]
    for tool, p, bs, tb in configs:  # warm-up: cuBLAS handles, the bf16 copy, ST's bf16 model
        if tool == "embtune":
            b.guarded("warmup", enc.encode, warm, batch_size=bs, precision=p, token_budget=tb)
        else:
            if p == "bf16" and st_bf16 is None:
                st_bf16 = SentenceTransformer(str(folder), device=str(device)).to(torch.bfloat16)
                st_bf16.max_seq_length = enc.max_seq_length
            b.guarded("warmup", (st_bf16 if p == "bf16" else st).encode, warm, batch_size=bs, convert_to_numpy=True)
    best: dict[tuple, dict] = {}
    for r in range(args.repeats):
        for tool, p, bs, tb in configs:
            def one():
                sync(device)
                t0 = time.perf_counter()
                if tool == "embtune":
                    e = enc.encode(sents, batch_size=bs, precision=p, token_budget=tb)
                else:
                    e = (st_bf16 if p == "bf16" else st).encode(sents, batch_size=bs, convert_to_numpy=True)
                sync(device)
                return time.perf_counter() - t0, e.shape
            res = b.guarded(f"encode {tool} {p} bs{bs}", one)
            if res is None:
                continue
            sec = res[0]
            row = {"tool": tool, "precision": p, "batch_size": bs, "token_budget": tb, "seconds": sec,
                   "sentences_per_s": len(sents) / sec, "of_peak": useful / sec / peaks[p],
                   "native": b.support.native(p), "repeat": r}
            b.say("encode", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
            key = (tool, p, bs, tb)
            b.results["encode"].append(row)
            if key not in best or row["sentences_per_s"] > best[key]["sentences_per_s"]:
                best[key] = row
        b.save()
    b.results["encode_best"] = list(best.values())
    # where the time goes: tokenizing vs the forward passes alone on prebuilt batches (bf16)
    b.guarded("forward-only", forward_only, b, enc, ids, useful, peaks)
    del st, st_bf16, enc
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _time_passes(b: Bench, enc, feats: list, p: str) -> float:
    """Seconds for the forward passes over prebuilt batches, the inference model resolved once (as encode())."""
    with torch.inference_mode():
        run = enc.inference_runner(p)
        for f in feats[:3]:
            run(f)
        sync(b.device)
        t0 = time.perf_counter()
        for f in feats:
            run(f)
        sync(b.device)
    return time.perf_counter() - t0


def forward_only(b: Bench, enc, ids, useful: float, peaks: dict) -> None:
    from embtune.encoders import transformer
    from embtune.encoders.batching import length_sorted_batches

    bs = max(b.args.batch_sizes)
    variants = [("embtune's (no cuDNN)" if b.device.type == "cuda" else "default", transformer.INFERENCE_SDPA_BACKENDS)]
    if b.device.type == "cuda":  # where the attention time goes: the same passes with torch's own SDPA choice
        variants.append(("torch's choice (cuDNN allowed)", None))
    for p in b.args.precisions:
        packed = enc.packed_ids(ids)
        feats = [packed.batch(idx) for idx in length_sorted_batches([len(x) for x in ids], bs)]
        for attention, backends in variants:
            kept, transformer.INFERENCE_SDPA_BACKENDS = transformer.INFERENCE_SDPA_BACKENDS, backends
            try:
                sec = _time_passes(b, enc, feats, p)
            finally:
                transformer.INFERENCE_SDPA_BACKENDS = kept
            row = {"precision": p, "batch_size": bs, "seconds": sec, "sentences_per_s": len(ids) / sec,
                   "of_peak": useful / sec / peaks[p], "attention": attention}
            b.results.setdefault("forward_only", []).append(row)
            b.say(f"forward only (batches prebuilt on the device; attention: {attention})", row)


# ---- training -----------------------------------------------------------------------------------
def train_rows(b: Bench, folder: Path, sents: list[str], work: Path, peaks: dict) -> None:
    train_file = work / "train.txt"
    train_file.write_text("\n".join(sents) + "\n", encoding="utf-8")
    for r in range(b.args.train_repeats):
        for p in b.args.precisions:
            for tool in ("embtune", "sentence-transformers"):
                fn = train_embtune if tool == "embtune" else train_st
                row = b.guarded(f"train {tool} {p}", fn, b, folder, train_file, work, p)
                if row is None:
                    continue
                row.update(tool=tool, precision=p, native=b.support.native(p), repeat=r,
                           of_peak=row["flops_per_s"] / peaks[p])
                b.results["train"].append(row)
                b.say("train", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
                b.save()
                if b.device.type == "cuda":
                    torch.cuda.empty_cache()


def _trainer(folder: Path, train_file: Path, work: Path, p: str, steps: int, device: torch.device,
             compile_: bool = False):
    from embtune.config import make_config
    from embtune.training.trainer import Trainer

    cfg = make_config(model=str(folder), objective="unsup-simcse", train_file=str(train_file),
                      output=str(work / f"run-{p}-{time.time_ns()}"), batch_size=64, max_seq_length=32,
                      max_steps=steps, precision=p, allow_slow_precision=True, device=str(device), compile=compile_)
    return Trainer(cfg, progress=False)


def train_embtune(b: Bench, folder: Path, train_file: Path, work: Path, p: str, compile_: bool = False) -> dict:
    args = b.args
    steps = args.warmup_steps + args.train_steps
    t_build = time.perf_counter()
    tr = _trainer(folder, train_file, work, p, steps, b.device, compile_)
    stamps: list[float] = []
    orig = tr.optimizer_step

    def stamped():
        orig()
        stamps.append(time.perf_counter())  # the loss.item() in the step already synchronized

    tr.optimizer_step = stamped
    tr.tracker.tb = None  # no TensorBoard writes in a throughput measurement
    tr.save_checkpoint = lambda: None
    tr.run()
    sec = stamps[-1] - stamps[args.warmup_steps - 1]
    warmup = stamps[args.warmup_steps - 1] - t_build  # with --compile: the compiler's time
    n = args.train_steps
    lengths = [len(s) for idx in tr.batches(0)[args.warmup_steps:steps] for i in idx for s in tr.examples[i]] * 2
    cfg = tr.encoder.backbone.config
    flops = 3 * sum(x * flops_per_token(cfg, x) for x in lengths)
    return {"steps": n, "seconds": sec, "steps_per_s": n / sec, "examples_per_s": 64 * n / sec, "flops_per_s": flops / sec,
            "loss_last": tr.losses[-1], "setup_and_warmup_s": warmup}


def train_compiled(b: Bench, folder: Path, work: Path) -> None:
    """embtune train --compile, in the fastest precision (after the profile: a compiler that overruns the
    device's time costs only this row)."""
    p = "bf16" if "bf16" in b.args.precisions and b.support.bf16 else "fp32"
    row = b.guarded(f"train embtune --compile {p}", train_embtune, b, folder, work / "train.txt", work, p, True)
    if row is not None:
        row.update(tool="embtune --compile", precision=p, native=b.support.native(p), repeat=0,
                   of_peak=row["flops_per_s"] / b.results["peaks"][p])
        b.results["train"].append(row)
        b.say("train", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})


def train_st(b: Bench, folder: Path, train_file: Path, work: Path, p: str) -> dict:
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    from embtune.data import duplicate_free_batches, read_train_file
    from embtune.encoders.base import autocast

    args, device = b.args, b.device
    data = read_train_file(str(train_file))
    steps = args.warmup_steps + args.train_steps
    batches = [[data.examples[i][0] for i in idx] for idx in duplicate_free_batches(data.examples, 64, seed=42)[:steps]]
    model = SentenceTransformer(str(folder), device=str(device))
    model.max_seq_length = 32
    loss_fn = MultipleNegativesRankingLoss(model, scale=20.0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.0, fused=device.type == "cuda")
    model.train()
    lengths: list[int] = []
    t0 = None
    for s, batch in enumerate(batches):
        if s == args.warmup_steps:
            sync(device)
            t0 = time.perf_counter()
        feats = [model.tokenize(batch), model.tokenize(batch)]
        feats = [{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in f.items()} for f in feats]
        if s >= args.warmup_steps:
            lengths += [int(x) for f in feats for x in f["attention_mask"].sum(1)]
        with autocast(device, p):
            loss = loss_fn(feats, None)
        loss.backward()
        opt.step()
        opt.zero_grad()
        last = loss.item()
    sync(device)
    sec = time.perf_counter() - t0
    n = args.train_steps
    cfg = model[0].auto_model.config
    flops = 3 * sum(x * flops_per_token(cfg, x) for x in lengths)
    return {"steps": n, "seconds": sec, "steps_per_s": n / sec, "examples_per_s": 64 * n / sec, "flops_per_s": flops / sec,
            "loss_last": last}


# ---- profile ------------------------------------------------------------------------------------
def profile(b: Bench, folder: Path, sents: list[str], work: Path) -> None:
    from torch.profiler import ProfilerActivity, profile as tprofile

    from embtune.encoders import load_encoder

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if b.device.type == "cuda" else [])
    sort = "cuda_time_total" if b.device.type == "cuda" else "cpu_time_total"
    text = []
    enc = load_encoder(str(folder), device=str(b.device))
    enc.allow_slow_precision = True
    p = "bf16" if "bf16" in b.args.precisions else "fp32"
    few = sents[: min(len(sents), 8192)]
    enc.encode(few, batch_size=max(b.args.batch_sizes), precision=p)
    with tprofile(activities=acts) as prof:
        enc.encode(few, batch_size=max(b.args.batch_sizes), precision=p)
    text += [f"## embtune encode, {len(few)} sentences, {p}, batch {max(b.args.batch_sizes)}",
             prof.key_averages().table(sort_by="cpu_time_total", row_limit=25),
             prof.key_averages().table(sort_by=sort, row_limit=15)]
    del enc
    train_file = work / "train.txt"
    tr = _trainer(folder, train_file, work, p, 13, b.device)
    tr.tracker.tb = None
    orig = tr.optimizer_step
    state = {"n": 0, "prof": None}

    def step():
        orig()
        state["n"] += 1
        if state["n"] == 3:
            state["prof"] = tprofile(activities=acts)
            state["prof"].__enter__()
    tr.optimizer_step = step
    tr.run()
    prof = state["prof"]
    prof.__exit__(None, None, None)
    text += [f"## embtune train, 10 steps of batch 64, {p}",
             prof.key_averages().table(sort_by="cpu_time_total", row_limit=25),
             prof.key_averages().table(sort_by=sort, row_limit=15)]
    (b.out / "profile.txt").write_text("\n\n".join(text), encoding="utf-8")
    b.say("profile written")


# ---- table --------------------------------------------------------------------------------------
def markdown(b: Bench) -> str:
    r = b.results
    pk = r["peaks"]
    mark = lambda row: "" if row["native"] else " (not native: emulated)"  # noqa: E731
    lines = [f"Device: {r['device']}; torch {torch.__version__}; "
             f"{len(corpus(b.args.sentences))} sentences, {r.get('tokens', {}).get('mean', math.nan):.1f} tokens on "
             f"average; model: random-init BERT (layers {b.args.layers}, hidden {b.args.hidden}) with a WordPiece "
             f"vocabulary trained on the corpus. Matmul peak measured here: fp32 {pk['fp32'] / 1e9:,.0f} GFLOP/s "
             f"(TF32 off), bf16 {pk['bf16'] / 1e9:,.0f} GFLOP/s. Total {r.get('total_s', 0):.0f} s.", "",
             "| encode | precision | batch | sentences/s | of peak |", "|---|---|---:|---:|---:|"]
    for row in sorted(r.get("encode_best", []), key=lambda x: (x["precision"], x["tool"], x["batch_size"])):
        bs = f"{row['batch_size']}" + (f", ≤{row['token_budget']} tokens" if row["token_budget"] else "")
        lines.append(f"| {row['tool']} | {row['precision']}{mark(row)} | {bs} | {row['sentences_per_s']:,.0f} | "
                     f"{100 * row['of_peak']:.1f}% |")
    for row in r.get("forward_only", []):
        att = "" if row.get("attention", "default") == "default" else f", SDPA {row['attention']}"
        lines.append(f"| embtune, forward passes only (batches prebuilt{att}) | {row['precision']} | {row['batch_size']} | "
                     f"{row['sentences_per_s']:,.0f} | {100 * row['of_peak']:.1f}% |")
    lines += ["", f"Tokenizing the whole corpus in one call: {r.get('tokens', {}).get('tokenize_whole_corpus_s', math.nan):.2f} s.",
              "", "| train (batch 64, max length 32) | precision | steps/s | examples/s | of peak |",
              "|---|---|---:|---:|---:|"]
    best: dict = {}
    for row in r.get("train", []):
        k = (row["tool"], row["precision"])
        if k not in best or row["steps_per_s"] > best[k]["steps_per_s"]:
            best[k] = row
    for (tool, p), row in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {tool} | {p}{mark(row)} | {row['steps_per_s']:.1f} | {row['examples_per_s']:,.0f} | "
                     f"{100 * row['of_peak']:.1f}% |")
    for row in r.get("train", []):
        if row["tool"] == "embtune --compile":
            lines.append(f"\nembtune --compile: {row['setup_and_warmup_s']:.0f} s from building the trainer to the end of "
                         f"warm-up step {b.args.warmup_steps} (the compiler's time, paid once per run).")
    if r.get("failures"):
        lines += ["", "Failed rows: " + "; ".join(r["failures"])]
    return "\n".join(lines) + "\n"


def add_arguments(ap) -> None:
    ap.add_argument("--sentences", type=int, default=40000)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--batch-sizes", default="128,512", help="embtune encode batch sizes")
    ap.add_argument("--st-batch-sizes", default="128,512", help="sentence-transformers encode batch sizes")
    ap.add_argument("--token-budget", type=int, default=16384, help="also encode with this token budget (0: no)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=150)
    ap.add_argument("--warmup-steps", type=int, default=10)
    ap.add_argument("--train-repeats", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true", help="skip the embtune train --compile row")
    ap.add_argument("--out", default="bench-device-out")


def parse(args) -> None:
    args.precisions = [p for p in args.precisions.split(",") if p]
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    args.st_batch_sizes = [int(x) for x in args.st_batch_sizes.split(",")]
