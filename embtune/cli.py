"""The ``embtune`` command: adapt, train, eval, encode, report, index, search, serve."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import logging
import sys
from pathlib import Path

from embtune.errors import EmbtuneError


PICKLE_HELP = "load pickle-based weights (pytorch_model.bin) when a model has no safetensors: they can run code"


def _add_train(sub) -> None:
    from embtune.config import GENERIC_OPTIONS, all_objective_options, objective_option_owners
    from embtune.objectives import OBJECTIVES
    from embtune.options import add_flags

    p = sub.add_parser("train", help="train a sentence-embedding model",
                       description="Flags override the YAML file given with --config; defaults follow the SimCSE paper. "
                                   "Every option is also a YAML key (--max-steps = max_steps).")
    p.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    add_flags(p.add_argument_group("options"), GENERIC_OPTIONS.values())
    owners = objective_option_owners()
    add_flags(p.add_argument_group("objective options (only with the objectives named)"),
              all_objective_options().values(), note=lambda o: f" [{', '.join(owners[o.name])}]")
    p.add_argument("--resume", default=None, metavar="OUTPUT_DIR",
                   help="continue the run in OUTPUT_DIR from its last complete checkpoint, with its saved config "
                        f"(may change on resume: {', '.join('--' + n.replace('_', '-') for n in RESUMABLE)})")
    p.add_argument("--overwrite", action="store_true", help="clear a non-empty --output folder before training")
    p.add_argument("--final-eval", default=None,
                   help="after training, evaluate on these tasks (e.g. sts12,...,sickr) into OUTPUT/results.json")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds: train once per seed into OUTPUT/seed-N, evaluate each on the STS "
                        "suite (or --final-eval) and print mean ± std")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")


#: options that may differ from the saved config when a run is resumed (they do not change what the
#: steps already taken computed)
RESUMABLE = ("max_steps", "log_every", "save_steps", "save_total_limit", "device", "trust_remote_code",
             "allow_pickle_weights")


def _add_precision(p) -> None:
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto (default): bf16 where the device runs it natively, else fp32")
    p.add_argument("--allow-slow-precision", action="store_true",
                   help="run a precision this device has no native support for (emulated, usually far slower)")


def _add_eval(sub) -> None:
    from embtune.encoders.pooling import POOLERS
    from embtune.evaluation.chinese import ZH_TASKS
    from embtune.evaluation.sts import MODES, STS_TASKS
    from embtune.evaluation.suite import OTHER_TASKS

    p = sub.add_parser("eval", help="evaluate a model on STS (Spearman ×100, as in SimCSE Table 5) and more")
    p.add_argument("model")
    p.add_argument("--tasks", default=",".join(STS_TASKS),
                   help="comma-separated; default the 7 STS tasks. Also: " + ",".join([*ZH_TASKS, *OTHER_TASKS, "beir:<folder>"]))
    p.add_argument("--split", choices=["test", "dev", "train"], default="test",
                   help="test (default), dev, or train where a task has one (STS-B, SICK-R, a BEIR folder)")
    p.add_argument("--output", help="folder for results.json and results.md")
    p.add_argument("--text", choices=["senteval", "raw"], default="senteval")
    p.add_argument("--sts-mode", choices=list(MODES), default="all")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pooler", choices=POOLERS, default=None, help="override the model's pooler")
    p.add_argument("--device", default=None)
    p.add_argument("--allow-pickle-weights", action="store_true", help=PICKLE_HELP)
    _add_precision(p)
    _add_backend(p)


def _add_encode(sub) -> None:
    p = sub.add_parser("encode", help="embed sentences (one per line) into a .npy matrix")
    p.add_argument("model")
    p.add_argument("--input", required=True, help="text file, one sentence per line")
    p.add_argument("--output", required=True, help=".npy file for the float32 matrix")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--allow-pickle-weights", action="store_true", help=PICKLE_HELP)
    _add_precision(p)
    _add_backend(p)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="print a table of results from several eval output folders")
    p.add_argument("runs", nargs="+", help="folders holding results.json")
    p.add_argument("--delta", action="store_true", help="add a row with last minus first")


def _positive_int(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return n


def _port(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {v!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {v!r}")
    return n


def _no_file_in_the_way(flag: str, path: str, folder: Path) -> None:
    for q in (folder, *folder.parents):  # the nearest existing one must be a folder (then it can be created)
        if q.exists():
            if not q.is_dir():
                raise EmbtuneError(f"{flag} {path}: {q} is a file; expected a folder")
            return


def check_output_folder(flag: str, path: str) -> None:
    """Before any work: no file stands where the folder ``path`` or one of its parents would be."""
    _no_file_in_the_way(flag, path, Path(path))


def check_output_file(flag: str, path: str) -> None:
    """Before any work: ``path`` names a file that can be written (not a folder, no file in its folders' way)."""
    if Path(path).is_dir():
        raise EmbtuneError(f"{flag} {path}: is a folder; expected a file name")
    _no_file_in_the_way(flag, path, Path(path).parent)


def _add_index(sub) -> None:
    p = sub.add_parser("index", help="embed a corpus into a search index folder")
    p.add_argument("model", help="built-in name, model folder or Hugging Face id")
    p.add_argument("--corpus", required=True,
                   help="BEIR corpus.jsonl / JSONL with _id or id / TSV id<TAB>text / TXT (line number = id)")
    p.add_argument("--output", required=True, help="index folder to write")
    p.add_argument("--quantize", choices=["int8", "binary"], default=None,
                   help="search over int8 or binary codes, rescoring the top k × --rescore in float")
    p.add_argument("--rescore", type=_positive_int, default=4, help="candidates per result to rescore (default 4)")
    p.add_argument("--ann", choices=["hnsw", "ivf", "flat"], default=None,
                   help="search a faiss index (pip install 'embtune[faiss]'): hnsw or ivf approximate, flat exact; "
                        "default: the exact engine")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--device", default=None)


def _add_search(sub) -> None:
    p = sub.add_parser("search", help="search an index: one query (printed) or a query file (TREC run)")
    p.add_argument("index", help="folder written by `embtune index`")
    p.add_argument("query", nargs="?", help="a query text")
    p.add_argument("--queries", help="query file (JSONL with _id/id, TSV id<TAB>text or TXT): writes a TREC run")
    p.add_argument("--output", help="TREC run file (qid Q0 docid rank score tag); default stdout")
    p.add_argument("-k", "--k", type=int, default=None, help="results per query (default 10; 1000 with --queries)")
    p.add_argument("--tag", default="embtune", help="run tag in the TREC run's last column")
    p.add_argument("--model", default=None, help="model to embed the queries (default: the index's own model)")
    p.add_argument("--device", default=None)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="a local search page (and JSON API) over a corpus, optionally two models side by side")
    p.add_argument("model")
    p.add_argument("--compare", default=None, help="a second model whose results are shown beside the first's")
    p.add_argument("--corpus", required=True, help="corpus file (as for `embtune index`) or an index folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default localhost only)")
    p.add_argument("--port", type=_port, default=8000, help="port (0: any free port)")
    p.add_argument("-k", "--k", type=_positive_int, default=10, help="results per query shown (default 10)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--device", default=None)


def _add_mine(sub) -> None:
    p = sub.add_parser("mine", help="mine hard negatives for (query, positive) pairs from a corpus -> triples; "
                                    "or, with --neighbours, rows of neighbouring texts for distillation",
                       description="With --pairs: rank the corpus for every pair's query with MODEL and write (sent0, "
                                   "sent1, hard_neg) rows for sup-simcse, the negatives taken from ranks RANGE_MIN+1 … "
                                   "RANGE_MAX, never a known positive of the query, and dropped when scored above "
                                   "the positive's score minus MARGIN (likely false negatives). With --neighbours K "
                                   "(no pairs): rows of a corpus text and its K nearest other texts, training rows "
                                   "for --objective distill on unlabeled in-domain text.")
    p.add_argument("model", help="the model that ranks (built-in name, folder or Hugging Face id)")
    p.add_argument("--pairs", default=None, help="(query, positive) pairs: .csv/.tsv/.jsonl with sent0, sent1")
    p.add_argument("--neighbours", type=int, default=None,
                   help="instead of --pairs: write rows of each text and its K (1 or 2) nearest neighbours")
    p.add_argument("--max-rows", type=int, default=None,
                   help="with --neighbours: at most N rows (the first N texts in SHA-1 order; default all)")
    p.add_argument("--corpus", required=True, help="candidate texts: .txt (one per line) or BEIR corpus.jsonl; "
                                                    "must hold every positive")
    p.add_argument("--output", required=True, help="the triples: .csv (header sent0,sent1,hard_neg) or .jsonl")
    # None = mine()'s default (one definition, in embtune/training/mining.py), so a flag given is always known
    p.add_argument("--range-min", type=int, default=None, help="skip the top N of each ranking (default 10)")
    p.add_argument("--range-max", type=int, default=None, help="the window ends at this rank (default 50)")
    p.add_argument("--num-negatives", type=int, default=None, help="negatives (triples) per pair (default 1)")
    p.add_argument("--margin", type=float, default=None,
                   help="drop a candidate scoring above the positive's cosine minus this (default 0.05)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None)


def _add_word_vectors(sub) -> None:
    p = sub.add_parser("word-vectors", help="word vectors from a sentence encoder (Model2Vec-style): the start of a "
                                            "fast mean/textcnn student",
                       description="Encode each word of a frequency-ordered vocabulary on its own with TEACHER, reduce "
                                   "the vectors with PCA and weight each by log(1 + rank); writes a GloVe text file "
                                   "that --model takes with --encoder mean or textcnn.")
    p.add_argument("teacher", help="the sentence encoder (built-in name, folder or Hugging Face id)")
    p.add_argument("--words", required=True,
                   help="the vocabulary, most frequent first: built-in word vectors (glove-50d: their words) or a "
                        "text file of one word per line")
    p.add_argument("--max-words", type=int, default=100_000, help="keep the N most frequent words (default 100000)")
    p.add_argument("--dim", type=int, default=256, help="PCA dimensions (default 256; 0 keeps the teacher's width)")
    p.add_argument("--weighting", choices=("zipf", "none"), default="zipf",
                   help="zipf: scale each vector by log(1 + rank) (default); none")
    p.add_argument("--output", required=True, help="the GloVe text file to write (word v1 v2 ...)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default=None)
    p.add_argument("--allow-pickle-weights", action="store_true", help=PICKLE_HELP)
    _add_precision(p)


def _add_adapt(sub) -> None:
    from embtune.adaptation.config import ADAPT_OPTIONS
    from embtune.options import add_flags

    p = sub.add_parser("adapt", help="adapt a model to your domain in one command: corpus (+ labels, + a teacher) "
                                     "in, a model better on your held-out task out, with a report",
                       description="Runs the measured-best chain of stages for the data given (embtune/adaptation/"
                                   "recipes.py), each selected on your own task with the starting model as a "
                                   "candidate. Every option is also a YAML key for --config.")
    p.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    add_flags(p.add_argument_group("adapt options (also YAML keys)"), ADAPT_OPTIONS.values())
    p.add_argument("--overwrite", action="store_true", help="clear a non-empty --output folder first")
    p.add_argument("--progress", action="store_true", help="progress bars instead of log lines")


def cmd_adapt(args: argparse.Namespace) -> int:
    from embtune.adaptation import adapt
    from embtune.adaptation.config import make_adapt_config

    given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "verbose", "overwrite", "progress")}
    for flag in ("trust_remote_code", "allow_pickle_weights"):  # only from this command line, never from a file
        given.setdefault(flag, False)
    cfg = make_adapt_config(args.config, **given)
    check_output_folder("--output", cfg.output)
    report = adapt(config=cfg, overwrite=args.overwrite, progress=args.progress)
    print((Path(cfg.output) / "report.md").read_text(encoding="utf-8"))
    return 0 if report["status"] == "done" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embtune", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_adapt(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_encode(sub)
    _add_report(sub)
    _add_index(sub)
    _add_search(sub)
    _add_serve(sub)
    _add_mine(sub)
    _add_word_vectors(sub)
    return parser


_COMMAND_ARGS = ("command", "config", "verbose", "no_progress", "final_eval", "seeds", "resume", "overwrite")


def resume_config(run_dir: Path, given: dict):
    """The config of the run in ``run_dir``, to continue it there.

    The run continues in the folder given (not the one its saved config names); code from the model
    runs only when this command line says --trust-remote-code; flags other than :data:`RESUMABLE`
    must agree with the saved config, since the steps already taken were computed with it.
    """
    from embtune.config import config_from_saved, make_config

    saved_path = run_dir / "train_config.json"
    if not saved_path.is_file():
        raise EmbtuneError(f"{saved_path}: not found; --resume takes the output folder of an earlier run")
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EmbtuneError(f"{saved_path}: not a readable JSON config ({e})") from e
    if not isinstance(saved, dict):
        raise EmbtuneError(f"{saved_path}: expected a JSON object of option: value")
    saved_cfg = config_from_saved(saved, saved_path).to_dict()
    from embtune.config import GENERIC_OPTIONS

    for name, value in given.items():
        if isinstance(value, list) and name in GENERIC_OPTIONS:  # a repeated flag -> its saved form
            value = GENERIC_OPTIONS[name].coerce(value)
        if name == "output":
            if Path(value).resolve() != run_dir.resolve():
                raise EmbtuneError(f"--output {value}: a resumed run continues in its own folder {run_dir}; "
                                   "leave --output out")
        elif name not in RESUMABLE and saved_cfg.get(name) != value:
            flag = "--" + name.replace("_", "-")
            raise EmbtuneError(f"{flag} {value}: cannot change on --resume (the run was started with "
                               f"{saved_cfg.get(name)!r}); start a new run for that. May change on resume: "
                               + ", ".join("--" + n.replace("_", "-") for n in RESUMABLE))
    values = {**saved_cfg, **{k: v for k, v in given.items() if k in RESUMABLE}}
    values["output"] = str(run_dir)
    values["trust_remote_code"] = bool(given.get("trust_remote_code", False))
    values["allow_pickle_weights"] = bool(given.get("allow_pickle_weights", False))  # likewise, never from the folder
    return make_config(**values)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise EmbtuneError(f"--seeds: expected comma-separated integers, got {text!r}") from e
    if not seeds:
        raise EmbtuneError(f"--seeds: expected at least one seed, got {text!r}")
    from embtune.config import TrainConfig
    from embtune.options import options_of

    for seed in seeds:  # the seed option's own rule, before any run starts
        problem = options_of(TrainConfig)["seed"].problem(seed)
        if problem:
            raise EmbtuneError(f"--seeds: seed {seed}: {problem}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise EmbtuneError(f"--seeds: seed(s) {', '.join(map(str, repeated))} given twice: one run would be counted "
                           "as two")
    return seeds


def cmd_train(args: argparse.Namespace) -> int:
    from embtune.config import resolve_config
    from embtune.evaluation.sts import STS_TASKS

    given = {k: v for k, v in vars(args).items() if k not in _COMMAND_ARGS}
    progress = not args.no_progress
    if args.resume:
        for flag, value in (("--config", args.config), ("--seeds", args.seeds), ("--overwrite", args.overwrite)):
            if value:
                raise EmbtuneError(f"{flag} cannot be combined with --resume (the run's saved config is used)")
        cfg = resume_config(Path(args.resume), given)
        _train_and_eval(cfg, args.final_eval, progress=progress, resume=True)
        return 0
    cfg = resolve_config(args.config, given)
    check_output_folder("--output", cfg.output)
    if not args.seeds:
        _train_and_eval(cfg, args.final_eval, progress=progress, overwrite=args.overwrite)
        return 0
    seeds = parse_seeds(args.seeds)
    runs = []
    for seed in seeds:
        run = dataclasses.replace(cfg, seed=seed, output=str(Path(cfg.output) / f"seed-{seed}"))
        _train_and_eval(run, args.final_eval or ",".join(STS_TASKS), progress=progress, overwrite=args.overwrite)
        runs.append(run.output)
    from embtune.evaluation.report import report_table

    print(report_table(runs))
    return 0


def _train_and_eval(cfg, final_eval: str | None, progress: bool, resume: bool = False, overwrite: bool = False) -> None:
    from embtune.encoders import load_encoder
    from embtune.evaluation.report import format_results, write_results
    from embtune.evaluation.suite import parse_tasks, run_evaluation
    from embtune.training import train

    try:  # fail on a bad task name before training
        tasks = parse_tasks(final_eval) if final_eval else None
    except EmbtuneError as e:
        raise EmbtuneError(f"--final-eval: {e}") from e
    metrics = train(cfg, progress=progress, resume=resume, overwrite=overwrite)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    print(f"saved {cfg.output}: {metrics['steps']} steps, {metrics['seconds_per_step']:.3f} s/step, "
          f"loss {metrics['loss_first']:.4g} -> {metrics['loss_last']:.4g}")
    if tasks:
        enc = load_encoder(cfg.output, device=cfg.device, allow_pickle=cfg.allow_pickle_weights)
        enc.allow_slow_precision = cfg.allow_slow_precision
        res = run_evaluation(enc, tasks, precision=cfg.precision)
        res["model"] = cfg.output
        write_results(cfg.output, res, cfg.output)
        print(format_results(cfg.output, res))


def _add_backend(p: argparse.ArgumentParser) -> None:
    from embtune.encoders import BACKENDS

    p.add_argument("--backend", choices=list(BACKENDS), default="torch",
                   help="; ".join(f"{k}: {v}" for k, v in BACKENDS.items()))


def _check_backend(args: argparse.Namespace) -> None:
    if args.backend != "torch" and args.precision == "auto":
        args.precision = "fp32"
    if args.backend != "torch" and args.precision != "fp32":
        raise EmbtuneError(f"--backend {args.backend} sets its own precision; --precision {args.precision} "
                           "needs --backend torch")


def _resolve_precision(args: argparse.Namespace, enc) -> str:
    """--precision auto -> bf16 where native else fp32 (logged); a non-native one stops unless allowed."""
    from embtune.precision import resolve_precision

    if args.batch_size < 1:
        raise EmbtuneError(f"--batch-size must be >= 1, got {args.batch_size}")
    enc.allow_slow_precision = args.allow_slow_precision
    return resolve_precision(args.precision, enc.device, allow_slow=args.allow_slow_precision)


def cmd_eval(args: argparse.Namespace) -> int:
    from embtune.encoders import load_encoder
    from embtune.evaluation.report import format_results, write_results
    from embtune.evaluation.suite import parse_tasks, run_evaluation

    tasks = parse_tasks(args.tasks)
    if args.output:
        check_output_folder("--output", args.output)
    _check_backend(args)
    enc = load_encoder(args.model, device=args.device, pooler=args.pooler, backend=args.backend,
                       allow_pickle=args.allow_pickle_weights)
    args.precision = _resolve_precision(args, enc)
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

    if not args.output.endswith(".npy"):
        raise EmbtuneError(f"--output {args.output}: expected a .npy file name (the embeddings are a NumPy matrix)")
    check_output_file("--output", args.output)
    lines = read_text_lines(args.input)
    if not lines:
        raise EmbtuneError(f"{args.input}: no sentences")
    _check_backend(args)
    enc = load_encoder(args.model, device=args.device, backend=args.backend, allow_pickle=args.allow_pickle_weights)
    args.precision = _resolve_precision(args, enc)
    emb = enc.encode(lines, batch_size=args.batch_size, normalize=args.normalize, precision=args.precision)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "wb") as f:  # exactly the path given (np.save on a name would append .npy)
        np.save(f, emb)
    print(f"wrote {emb.shape[0]}x{emb.shape[1]} float32 embeddings to {args.output}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from embtune.evaluation.report import report_table

    print(report_table(args.runs, delta=args.delta))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from embtune.search import Index

    if args.ann and args.quantize:
        raise EmbtuneError("--ann and --quantize cannot be combined: a faiss index searches the float vectors")
    if args.ann:
        from embtune.search.faiss_backend import _faiss

        _faiss()  # not installed: say so before encoding the corpus
    check_output_folder("--output", args.output)
    index = Index.build(args.model, args.corpus, quantize=args.quantize, rescore=args.rescore,
                        batch_size=args.batch_size, device=args.device, ann=args.ann)
    index.save(args.output)
    q = f", {args.quantize} codes (rescore × {args.rescore})" if args.quantize else ""
    q += f", faiss {args.ann} index" if args.ann else ""
    print(f"indexed {len(index)} documents from {args.corpus} with {args.model} ({index.dim} dimensions{q}) into {args.output}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    import numpy as np

    from embtune.search import Index
    from embtune.search.corpus import read_id_texts

    if (args.query is None) == (args.queries is None):
        raise EmbtuneError("give either a query text or --queries FILE (not both, not neither)")
    if args.output and not args.queries:
        raise EmbtuneError("--output writes a TREC run for --queries FILE; with a single query the results are printed")
    k = args.k if args.k is not None else (1000 if args.queries else 10)
    if k <= 0:
        raise EmbtuneError(f"--k must be a positive integer, got {k}")
    if args.output:
        check_output_file("--output", args.output)
    queries = read_id_texts(args.queries, "query") if args.queries else None  # bad query files fail before loading
    index = Index.load(args.index, model=args.model, device=args.device)
    if k > len(index):
        logging.getLogger("embtune.search").warning("--k %d is larger than the index (%d documents): clamped to %d",
                                                    k, len(index), len(index))
        k = len(index)
    if queries is None:
        ids, scores = index.search([args.query], k=k)
        for rank, (d, sc) in enumerate(zip(ids[0], scores[0]), 1):
            text = index.text(d).replace("\n", " ")
            print(f"{rank:>3}  {sc:.4f}  {d}  {text}")
        return 0
    qids = list(queries)
    bad = next((x for x in [*qids, *index.ids, args.tag] if not x or any(c.isspace() for c in x)), None)
    if bad is not None:
        raise EmbtuneError(f"id or tag {bad!r} contains whitespace or is empty: a TREC run cannot hold it")
    ids, scores = index.search([queries[q] for q in qids], k=k)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for qid, row, srow in zip(qids, ids, scores):
            for rank, (d, sc) in enumerate(zip(row, srow), 1):
                # the shortest text that reads back as the same float32 (trec_eval's score type): trec_eval
                # re-sorts by score then id, and rounding would turn near-ties into ties it orders otherwise
                out.write(f"{qid} Q0 {d} {rank} {np.float32(sc)} {args.tag}\n")
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"wrote the top {k} of {len(index)} documents for {len(qids)} queries to {args.output}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from embtune.serve import serve

    serve(args.model, args.corpus, compare=args.compare, host=args.host, port=args.port, k=args.k,
          batch_size=args.batch_size, device=args.device)
    return 0


def cmd_mine(args: argparse.Namespace) -> int:
    from embtune.training.mining import mine

    if args.batch_size < 1:
        raise EmbtuneError(f"--batch-size {args.batch_size}: expected >= 1")
    given = {k: getattr(args, k) for k in ("range_min", "range_max", "num_negatives", "margin")
             if getattr(args, k) is not None}  # the rest take mine()'s defaults
    check_output_file("--output", args.output)
    if (args.pairs is None) == (args.neighbours is None):
        raise EmbtuneError("give --pairs (hard negatives for (query, positive) pairs) or --neighbours K (rows of "
                           "neighbouring texts for distillation), not both, not neither")
    if args.neighbours is not None:
        from embtune.training.mining import OUTPUT_SUFFIXES, neighbour_rows

        moved = ["--" + k.replace("_", "-") for k in given]
        if moved:
            raise EmbtuneError(f"{', '.join(moved)}: options of hard-negative mining (--pairs); --neighbours takes "
                               "the nearest texts")
        if Path(args.output).suffix.lower() not in OUTPUT_SUFFIXES:
            raise EmbtuneError(f"--output {args.output}: expected a .csv or .jsonl file name")
        rows = neighbour_rows(args.model, args.corpus, args.output, neighbours=args.neighbours,
                              max_rows=args.max_rows, batch_size=args.batch_size, device=args.device,
                              show_progress=sys.stderr.isatty())
        print(f"wrote {args.output}: {len(rows)} rows of a text and its {args.neighbours} nearest neighbours")
        return 0
    if args.max_rows is not None:
        raise EmbtuneError("--max-rows: an option of --neighbours")
    _, report = mine(args.model, args.pairs, args.corpus, args.output, **given,
                     batch_size=args.batch_size, device=args.device, show_progress=sys.stderr.isatty())
    print(f"wrote {args.output}: {report.summary()}")
    return 0


def cmd_word_vectors(args: argparse.Namespace) -> int:
    from embtune.data.readers import read_text_lines
    from embtune.encoders import load_encoder
    from embtune.encoders.static_vectors import teacher_word_vectors, vocabulary, write_glove_text
    from embtune.encoders.wordvec import BUILTIN_VECTORS, load_vectors

    if args.max_words < 1:
        raise EmbtuneError(f"--max-words: expected a value >= 1, got {args.max_words}")
    if args.dim < 0:
        raise EmbtuneError(f"--dim: expected a value >= 0 (0: the teacher's width), got {args.dim}")
    check_output_file("--output", args.output)
    if args.words in BUILTIN_VECTORS:
        words = load_vectors(args.words, max_words=args.max_words)[0]
    else:
        if not Path(args.words).is_file():
            raise EmbtuneError(f"--words {args.words}: not built-in word vectors ({', '.join(BUILTIN_VECTORS)}) "
                               "and no such file")
        lines = read_text_lines(args.words)
        for i, w in enumerate(lines, 1):
            if not w.strip() or len(w.split()) != 1:
                raise EmbtuneError(f"{args.words}:{i}: expected one word per line, got {w!r}")
        words = [w.strip() for w in lines[:args.max_words]]
    words, left_out = vocabulary(words)
    if left_out:
        logging.getLogger(__name__).warning("--words %s: %d word(s) left out (repeated: first occurrence kept; or "
                                            "empty or holding whitespace, which a GloVe text file cannot hold)",
                                            args.words, left_out)
    enc = load_encoder(args.teacher, device=args.device, allow_pickle=args.allow_pickle_weights)
    args.precision = _resolve_precision(args, enc)
    vectors = teacher_word_vectors(enc, words, dim=args.dim or None, weighting=args.weighting,
                                   batch_size=args.batch_size, precision=args.precision)
    write_glove_text(args.output, words, vectors)
    print(f"wrote {args.output}: {len(words)} words x {vectors.shape[1]} dimensions from {args.teacher} "
          f"(weighting {args.weighting}{f'; {left_out} words left out' if left_out else ''})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from embtune.utils import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return {"adapt": cmd_adapt, "train": cmd_train, "eval": cmd_eval, "encode": cmd_encode, "report": cmd_report, "index": cmd_index,
                "search": cmd_search, "serve": cmd_serve, "mine": cmd_mine,
                "word-vectors": cmd_word_vectors}[args.command](args)
    except EmbtuneError as e:
        print(f"embtune: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment, not a bug: a full disk, a permission, a vanished file
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"embtune: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("embtune: interrupted", file=sys.stderr)
        return 130
