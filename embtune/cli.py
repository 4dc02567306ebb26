"""The ``embtune`` command: train, eval, encode, report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import logging
import sys
from pathlib import Path

from embtune.errors import EmbtuneError


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes"):
        return True
    if v.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")


def _add_train(sub) -> None:
    from embtune.encoders.pooling import POOLERS
    from embtune.objectives import OBJECTIVES

    p = sub.add_parser("train", help="train a sentence-embedding model",
                       description="Flags override the YAML file given with --config; defaults follow the SimCSE paper.")
    S = argparse.SUPPRESS  # unset flags do not override the config file
    p.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    p.add_argument("--model", default=S, help="built-in name (minilm-l6), local folder or Hugging Face id")
    p.add_argument("--objective", default=S, choices=list(OBJECTIVES))
    p.add_argument("--train-file", default=S, help=".txt, .csv, .tsv or .jsonl, or a named dataset (wiki-sample, snli-triples)")
    p.add_argument("--output", default=S, help="output folder (a sentence-transformers model folder)")
    p.add_argument("--batch-size", type=int, default=S)
    p.add_argument("--max-seq-length", type=int, default=S)
    p.add_argument("--lr", type=float, default=S)
    p.add_argument("--weight-decay", type=float, default=S)
    p.add_argument("--warmup-steps", type=int, default=S)
    p.add_argument("--adam-epsilon", type=float, default=S)
    p.add_argument("--epochs", type=int, default=S)
    p.add_argument("--max-steps", type=int, default=S)
    p.add_argument("--temperature", type=float, default=S)
    p.add_argument("--pooler", default=S, help=f"one of {', '.join(POOLERS)}")
    p.add_argument("--mlp-only-train", type=_bool, nargs="?", const=True, default=S,
                   help="use the cls MLP during training only (unsup SimCSE's default)")
    p.add_argument("--hard-negative-weight", type=float, default=S, help="the paper's α for the own hard negative")
    p.add_argument("--negatives", choices=["batch", "both-views"], default=S, help="unsup-simcse: both-views = 2N−1 variant")
    p.add_argument("--augment", default=S, help="unsup-simcse: delete-one-word,word-deletion,crop,swap,word-repetition")
    p.add_argument("--augment-ratio", type=float, default=S, help="ratio p of the augmentations, in [0, 1)")
    p.add_argument("--dropout", type=_bool, default=S, help="false: no dropout (augmentation alone makes the views)")
    p.add_argument("--views", type=int, default=S, help="multiview-am: views per sentence K >= 2")
    p.add_argument("--margin", type=float, default=S, help="multiview-am: additive margin m >= 0")
    p.add_argument("--tsdae-deletion-ratio", type=float, default=S)
    p.add_argument("--tsdae-tie-decoder", type=_bool, default=S)
    p.add_argument("--mlm-weight", type=float, default=S, help="auxiliary MLM loss weight λ (appendix: 0.1)")
    p.add_argument("--mlm-probability", type=float, default=S)
    p.add_argument("--encoder", choices=["mean", "textcnn"], default=S,
                   help="word-vector encoder over the vectors named by --model (e.g. glove-50d)")
    p.add_argument("--kernel-sizes", default=S, help="textcnn kernel sizes, odd (default 1,3,5)")
    p.add_argument("--cnn-channels", type=int, default=S)
    p.add_argument("--projection-dim", type=int, default=S)
    p.add_argument("--freeze-embeddings", type=_bool, nargs="?", const=True, default=S)
    p.add_argument("--vocab-limit", type=int, default=S, help="keep the N most frequent words of the vectors")
    p.add_argument("--word-dropout", type=float, default=S)
    p.add_argument("--teacher", default=S, help="distill: the teacher model")
    p.add_argument("--distill-loss", choices=["mse", "relational", "similarity"], default=S)
    p.add_argument("--student-layers", type=int, default=S, help="distill: student = the model's first k layers")
    p.add_argument("--seed", type=int, default=S)
    p.add_argument("--device", default=S)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=S)
    p.add_argument("--trust-remote-code", type=_bool, nargs="?", const=True, default=S)
    p.add_argument("--mini-batch-size", type=int, default=S, help="gradient caching: embed in chunks of this many sequences")
    p.add_argument("--save-steps", type=int, default=S, help="write a checkpoint every N steps")
    p.add_argument("--save-total-limit", type=int, default=S, help="keep only the newest N checkpoints")
    p.add_argument("--resume", default=None, metavar="OUTPUT_DIR",
                   help="continue the run in OUTPUT_DIR from its last complete checkpoint (its saved config is used)")
    p.add_argument("--eval-steps", type=int, default=S, help="evaluate on STS-B dev every N steps and keep the best")
    p.add_argument("--eval-sickr", type=_bool, nargs="?", const=True, default=S, help="also evaluate on SICK-R dev")
    p.add_argument("--metric-for-best", default=S, help="stsb_dev_spearman (default), sickr_dev_spearman, alignment, uniformity")
    p.add_argument("--final-eval", default=None,
                   help="after training, evaluate on these tasks (e.g. sts12,...,sickr) into OUTPUT/results.json")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds: train once per seed into OUTPUT/seed-N, evaluate each on the STS "
                        "suite (or --final-eval) and print mean ± std")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")


def _add_eval(sub) -> None:
    from embtune.evaluation.chinese import ZH_TASKS
    from embtune.evaluation.sts import MODES, STS_TASKS
    from embtune.evaluation.suite import OTHER_TASKS

    p = sub.add_parser("eval", help="evaluate a model on STS (Spearman ×100, as in SimCSE Table 5) and more")
    p.add_argument("model")
    p.add_argument("--tasks", default=",".join(STS_TASKS),
                   help="comma-separated; default the 7 STS tasks. Also: " + ",".join([*ZH_TASKS, *OTHER_TASKS, "beir:<folder>"]))
    p.add_argument("--split", default="test", help="test (default) or dev")
    p.add_argument("--output", help="folder for results.json and results.md")
    p.add_argument("--text", choices=["senteval", "raw"], default="senteval")
    p.add_argument("--sts-mode", choices=list(MODES), default="all")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pooler", default=None, help="override the model's pooler")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="onnx: run the transformer in ONNX Runtime (CPU, fp32; exported on first use)")


def _add_encode(sub) -> None:
    p = sub.add_parser("encode", help="embed sentences (one per line) into a .npy matrix")
    p.add_argument("model")
    p.add_argument("--input", required=True, help="text file, one sentence per line")
    p.add_argument("--output", required=True, help=".npy file for the float32 matrix")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="onnx: run the transformer in ONNX Runtime (CPU, fp32; exported on first use)")


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="print a table of results from several eval output folders")
    p.add_argument("runs", nargs="+", help="folders holding results.json")
    p.add_argument("--delta", action="store_true", help="add a row with last minus first")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embtune", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_eval(sub)
    _add_encode(sub)
    _add_report(sub)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from embtune.config import resolve_config
    from embtune.evaluation.sts import STS_TASKS

    skip = ("command", "config", "verbose", "no_progress", "final_eval", "seeds", "resume")
    overrides = {k: v for k, v in vars(args).items() if k not in skip}
    if args.resume:
        saved = Path(args.resume) / "train_config.json"
        if not saved.is_file():
            raise EmbtuneError(f"{saved}: not found; --resume takes the output folder of an earlier run")
        cfg = resolve_config(None, json.loads(saved.read_text(encoding="utf-8")))
        _train_and_eval(cfg, args.final_eval, progress=not args.no_progress, resume=True)
        return 0
    cfg = resolve_config(args.config, overrides)
    if not args.seeds:
        _train_and_eval(cfg, args.final_eval, progress=not args.no_progress)
        return 0
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError as e:
        raise EmbtuneError(f"--seeds expects comma-separated integers, got {args.seeds!r}") from e
    runs = []
    for seed in seeds:
        run = dataclasses.replace(cfg, seed=seed, output=str(Path(cfg.output) / f"seed-{seed}"))
        _train_and_eval(run, args.final_eval or ",".join(STS_TASKS), progress=not args.no_progress)
        runs.append(run.output)
    from embtune.evaluation.report import report_table

    print(report_table(runs))
    return 0


def _train_and_eval(cfg, final_eval: str | None, progress: bool, resume: bool = False) -> None:
    from embtune.encoders import load_encoder
    from embtune.evaluation.report import format_results, write_results
    from embtune.evaluation.suite import parse_tasks, run_evaluation
    from embtune.training import train

    tasks = parse_tasks(final_eval) if final_eval else None  # fail on a bad task name before training
    metrics = train(cfg, progress=progress, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    print(f"saved {cfg.output}: {metrics['steps']} steps, {metrics['seconds_per_step']:.3f} s/step, "
          f"loss {metrics['loss_first']:.4g} -> {metrics['loss_last']:.4g}")
    if tasks:
        res = run_evaluation(load_encoder(cfg.output, device=cfg.device), tasks, precision=cfg.precision)
        res["model"] = cfg.output
        write_results(cfg.output, res, cfg.output)
        print(format_results(cfg.output, res))


def _check_backend(args: argparse.Namespace) -> None:
    if args.backend == "onnx" and args.precision != "fp32":
        raise EmbtuneError(f"--backend onnx runs in fp32; --precision {args.precision} needs --backend torch")


def cmd_eval(args: argparse.Namespace) -> int:
    from embtune.encoders import load_encoder
    from embtune.evaluation.report import format_results, write_results
    from embtune.evaluation.suite import parse_tasks, run_evaluation

    tasks = parse_tasks(args.tasks)
    _check_backend(args)
    enc = load_encoder(args.model, device=args.device, pooler=args.pooler, backend=args.backend)
    res = run_evaluation(enc, tasks, text=args.text, mode=args.sts_mode, split=args.split, batch_size=args.batch_size,
                         precision=args.precision, show_progress=sys.stderr.isatty())
    res["model"] = args.model
    print(format_results(args.model, res))
    if args.output:
        write_results(args.output, res, args.model)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from embtune.data.readers import read_text_lines
    from embtune.encoders import load_encoder

    lines = read_text_lines(args.input)
    if not lines:
        raise EmbtuneError(f"{args.input}: no sentences")
    _check_backend(args)
    enc = load_encoder(args.model, device=args.device, backend=args.backend)
    emb = enc.encode(lines, batch_size=args.batch_size, normalize=args.normalize, precision=args.precision)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    np.save(args.output, emb)
    print(f"wrote {emb.shape[0]}x{emb.shape[1]} float32 embeddings to {args.output}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from embtune.evaluation.report import report_table

    print(report_table(args.runs, delta=args.delta))
    return 0


def main(argv: list[str] | None = None) -> int:
    from embtune.utils import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return {"train": cmd_train, "eval": cmd_eval, "encode": cmd_encode, "report": cmd_report}[args.command](args)
    except EmbtuneError as e:
        print(f"embtune: error: {e}", file=sys.stderr)
        return 2
