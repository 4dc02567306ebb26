"""The strong-teacher row set of bench.small_models: all-mpnet-base-v2 distilled into small students.

    python -m bench.small_models --row-set strong-teacher [--teacher mpnet-base] [--rows SLUG,...]

Students: all-MiniLM-L6-v2 itself (relational and similarity losses; relational followed by sup SimCSE on the
SNLI triples), the TextCNN over GloVe-50d and a 3-layer MiniLM, all distilled on the same training file: rows of
three related sentences from the Wikipedia sample, the SNLI triples and the STS-B/SICK-R *train* splits with
random edits (``distill_triples``; no STS test sentence). The teacher labels every distinct sentence once; the
embeddings are cached (``TeacherCache``), so the rows share one teacher pass, timed and reported on its own.
The ``-cosent`` rows add the supervised-STS setting: CoSENT on the gold scores of the STS-B/SICK-R train pairs
that share no sentence with an STS test set (``scored_pairs``; most of them do, and are left out and counted).

Each row is saved with its settings in ``OUT/<slug>/row.json`` and reused while the settings are unchanged, so
rows can be run one at a time (``--rows``), in separate processes, and the table assembled by a last run.
Encoding speed is measured for all the models in one process at the end, interleaved (best of rounds), so every
ratio compares models under the same machine load.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.common import machine, md_table
from bench.small_models import _test_sentences, distill_triples, norm, write_tsv, folder_mib, write_section
from embtune.config import make_config
from embtune.data import read_train_file
from embtune.encoders import load_encoder
from embtune.encoders.layer_cut import spread_layers
from embtune.evaluation.sts import STS_TASKS, evaluate_sts, load_sts
from embtune.objectives.distill import TeacherCache
from embtune.training import train

SECTION = "strong-teacher"


@dataclass
class Row:
    slug: str
    name: str
    model: str | None = None  # evaluated as is (no training)
    stages: list[dict] = field(default_factory=list)  # train configs, each stage starting from the previous output
    after: str | None = None  # the row whose trained model the first stage starts from (its steps and time count)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("--row-set strong-teacher")
    g.add_argument("--rows", default=None, help="comma-separated row slugs to run (default: all); others are reused")
    g.add_argument("--student", default="minilm-l6", help="the transformer student (and its 3-layer cut)")
    g.add_argument("--minilm-steps", type=int, default=150, help="steps of each all-MiniLM-L6-v2 distillation")
    g.add_argument("--minilm-lr", type=float, default=2e-5)
    g.add_argument("--minilm-anchor-weight", type=float, default=0.0,
                   help="the all-MiniLM-L6-v2 distillation rows: λ of the regulariser toward the starting model "
                        "(--anchor-weight); 0 = off")
    g.add_argument("--sup-steps", type=int, default=45, help="sup SimCSE steps after distillation")
    g.add_argument("--student-steps", type=int, default=300, help="steps of the 3-layer student")
    g.add_argument("--student-layer-choice", choices=("first", "spread", "dev", "auto"), default="spread",
                   help="which 3 layers of the student the 3-layer cut keeps (the rows up to 2026-11-27 kept the first 3)")
    g.add_argument("--student-lr", type=float, default=1e-4, help="learning rate of the 3-layer row")
    g.add_argument("--student-anchor-weight", type=float, default=0.0,
                   help="the 3-layer row: λ of the regulariser toward the untrained cut (--anchor-weight); 0 = off")
    g.add_argument("--student-eval-steps", type=int, default=None,
                   help="the 3-layer row: evaluate on STS-B dev every N steps and keep the best checkpoint (default: the last)")
    g.add_argument("--scored-epochs", type=int, default=1,
                   help="the '-cosent' rows: epochs of CoSENT on the STS-B/SICK-R train splits' gold scores")
    g.add_argument("--scored-lr", type=float, default=2e-5)
    g.add_argument("--static-words", type=int, default=100_000,
                   help="word-vector students from the teacher: GloVe's N most frequent words (embtune word-vectors)")
    g.add_argument("--static-dim", type=int, default=256, help="their PCA dimensions")
    g.add_argument("--static-steps", type=int, default=2000, help="training steps of those students")
    g.add_argument("--static-lr", type=float, default=1e-3)
    g.add_argument("--speed-seconds", type=float, default=3.0, help="encoding time per model and round of the speed pass")
    g.add_argument("--speed-threads", type=int, default=2, help="CPU threads of the speed pass (this project's 2-core target)")
    g.add_argument("--speed-clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: count the process's CPU time (use with --speed-threads 1 on a shared machine)")
    g.add_argument("--max-rows", type=int, default=None, help="keep this many rows of the training file (seeded sample)")
    g.add_argument("--seed", type=int, default=42, help="training seed of every row")
    g.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="training precision of every row (the documented device rows ran in fp32)")
    g.add_argument("--tasks", default=",".join(STS_TASKS), help="STS tasks of the evaluation (default: the 7)")
    g.add_argument("--speed-architectures", action="store_true",
                   help="only time untrained models of the students' architectures (speed does not depend on weights)")
    g.add_argument("--table-only", action="store_true", help="assemble the table from the rows already measured")


def rows(args, triples: Path, out: Path) -> list[Row]:
    t, st = args.teacher, args.student
    three = "minilm3-relational" if args.student_layer_choice == "first" else f"minilm3-{args.student_layer_choice}-relational"
    common = dict(precision=args.precision, seed=args.seed)  # fp32 by default: the documented rows were trained in fp32
    mini = dict(model=st, objective="distill", teacher=t, train_file=str(triples), lr=args.minilm_lr,
                batch_size=64, max_steps=args.minilm_steps, warmup_steps=10,
                **({"anchor_weight": args.minilm_anchor_weight} if args.minilm_anchor_weight else {}), **common)
    # word-vector students over the teacher's own word vectors: vectors trainable, batch 128 rows, the
    # checkpoint kept by STS-B dev every 250 steps (the starting vectors are a candidate)
    static = dict(objective="distill", teacher=t, distill_loss="relational", train_file=str(triples), lr=args.static_lr,
                  batch_size=128, max_steps=args.static_steps, eval_steps=250, **common)
    # CoSENT on gold scores: batch 32 pairs, STS-B dev at the start, every 100 steps and at the end, the best kept
    cosent = dict(objective="cosent", train_file=str(out / "scored_pairs.tsv"), lr=args.scored_lr, batch_size=32,
                  epochs=args.scored_epochs, warmup_steps=10, eval_steps=100, **common)
    return [
        Row("teacher", f"{t} (teacher)", model=t),
        Row("minilm", f"{st} (student, no training)", model=st),
        Row("minilm-relational", f"{st}, distilled (relational)", stages=[dict(mini, distill_loss="relational")]),
        Row("minilm-similarity", f"{st}, distilled (similarity)", stages=[dict(mini, distill_loss="similarity")]),
        Row("minilm-relational-sup", f"{st}, distilled (relational) → sup SimCSE (SNLI triples)",
            after="minilm-relational",
            stages=[dict(model=str(out / "minilm-relational" / "final"), objective="sup-simcse",
                         train_file="snli-triples", lr=1e-5, batch_size=64, max_steps=args.sup_steps, **common)]),
        Row("textcnn-relational", "TextCNN (GloVe-50d), distilled (relational, trainable GloVe)",
            stages=[dict(model="glove-50d", encoder="textcnn", objective="distill", teacher=t, distill_loss="relational",
                         train_file=str(triples), lr=1e-3, batch_size=128, epochs=args.cnn_epochs, **common)]),
        Row(three, f"3-layer {st} ({args.student_layer_choice} layers), distilled (relational)",
            stages=[dict(model=st, student_layers="3", student_layer_choice=args.student_layer_choice, objective="distill", teacher=t, distill_loss="relational",
                         train_file=str(triples), lr=args.student_lr, batch_size=64, max_steps=args.student_steps,
                         warmup_steps=10, **({"eval_steps": args.student_eval_steps} if args.student_eval_steps else {}),
                         **({"anchor_weight": args.student_anchor_weight} if args.student_anchor_weight else {}),
                         **common)]),
        # the supervised-STS setting (not SimCSE's transfer setting): the gold scores of the STS-B and SICK-R train
        # splits (``scored_pairs``), CoSENT, after the distillation rows or from the untrained student
        Row("minilm-cosent", f"{st}, CoSENT (STS-B/SICK-R train scores)", stages=[dict(cosent, model=st)]),
        Row("minilm-relational-sup-cosent", f"{st}, distilled (relational) → sup SimCSE → CoSENT (STS-B/SICK-R train scores)",
            after="minilm-relational-sup", stages=[dict(cosent, model=str(out / "minilm-relational-sup" / "final"))]),
        Row(f"{three}-cosent", f"3-layer {st} ({args.student_layer_choice} layers), distilled (relational) → CoSENT "
            "(STS-B/SICK-R train scores)", after=three, stages=[dict(cosent, model=str(out / three / "final"))]),
        Row("static-mean", f"mean of {t}'s word vectors (no training)", model=str(static_folder(args, out))),
        Row("static-mean-relational", f"mean of {t}'s word vectors, distilled (relational)",
            stages=[dict(model=str(static_file(args, out)), encoder="mean", **static)]),
        Row("static-textcnn-relational", f"TextCNN over {t}'s word vectors, distilled (relational)",
            stages=[dict(model=str(static_file(args, out)), encoder="textcnn", **static)]),
    ]


def scored_pairs(path: Path) -> tuple[int, int]:
    """The STS-B and SICK-R train splits' pairs with their gold scores (sent0, sent1, score), SICK-R's 1–5 put on
    STS-B's 0–5 scale ((s − 1) · 5/4) since CoSENT orders the pairs of a batch by score across both sets; a pair
    with a sentence of an STS test set is left out (counted: the second number)."""
    test = _test_sentences()
    rows, dropped = [], 0
    for task, scale in (("stsb", lambda s: s), ("sickr", lambda s: (s - 1.0) * 1.25)):
        d = load_sts(task, "train", text="raw")
        for a, b, y in zip(d.sent1, d.sent2, d.scores):
            a, b = norm(a), norm(b)
            if a.lower() in test or b.lower() in test:
                dropped += 1
                continue
            rows.append([a, b, f"{scale(float(y)):.4f}"])
    write_tsv(path, ["sent0", "sent1", "score"], rows)
    return len(rows), dropped


def static_file(args, out: Path) -> Path:
    """The teacher's vectors for GloVe's most frequent words (``embtune word-vectors``), made by :func:`static_pass`."""
    return out / f"word-vectors-{args.teacher}-{args.static_words}-{args.static_dim}.txt"


def static_folder(args, out: Path) -> Path:
    return out / f"word-vectors-{args.teacher}-{args.static_words}-{args.static_dim}-mean"


def static_pass(args, out: Path) -> dict:
    """Make the teacher's word vectors (once) and the untrained mean model over them; the pass's time."""
    from embtune.encoders.static_vectors import teacher_word_vectors, vocabulary, write_glove_text
    from embtune.encoders.wordvec import WordVectorEncoder, load_vectors

    path, record = static_file(args, out), static_file(args, out).with_suffix(".json")
    if not path.is_file():
        words, _ = vocabulary(load_vectors("glove-50d", max_words=args.static_words)[0])
        t0 = time.perf_counter()
        vectors = teacher_word_vectors(load_encoder(args.teacher), words, dim=args.static_dim)
        seconds = time.perf_counter() - t0
        write_glove_text(path, words, vectors)
        record.write_text(json.dumps({"teacher": args.teacher, "words": len(words), "dim": args.static_dim,
                                      "seconds": seconds}), encoding="utf-8")
    if not (static_folder(args, out) / "modules.json").is_file():
        WordVectorEncoder.from_vectors(str(path), kind="mean").save(static_folder(args, out))
    return json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}


def sample_rows(path: Path, n: int, seed: int = 0) -> tuple[int, int]:
    """Keep a seeded sample of ``n`` rows of the triples file (in file order)."""
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    keep = sorted(random.Random(seed).sample(range(len(rows)), n))
    kept = [rows[i] for i in keep]
    path.write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    return len(kept), len({x for r in kept for x in r.split("\t")})


def teacher_pass(teacher: str, triples: Path, out: Path) -> dict:
    """Label the file's distinct sentences once (or find them in the cache); the time of the pass that computed them."""
    data = read_train_file(triples)
    texts = list(dict.fromkeys(x for ex in data.examples for x in ex))
    record = out / "teacher_pass.json"
    cache = TeacherCache(teacher)
    t0 = time.perf_counter()
    cache.embeddings(texts)
    if cache.forwards:  # computed now
        info = {"teacher": teacher, "sentences": len(texts), "seconds": time.perf_counter() - t0}
        record.write_text(json.dumps(info), encoding="utf-8")
        return info
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))
    return {"teacher": teacher, "sentences": len(texts), "seconds": None}  # labelled by an earlier, unrecorded run


def run_row(row: Row, out: Path, tasks: list[str]) -> dict:
    folder = out / row.slug
    saved = folder / "row.json"
    settings = {"model": row.model, "stages": row.stages, "tasks": tasks}
    train_s, steps = 0.0, []
    if row.after:
        dep = out / row.after / "row.json"
        if not dep.is_file():
            raise SystemExit(f"row {row.slug} starts from row {row.after}: run that one first")
        d = json.loads(dep.read_text(encoding="utf-8"))
        settings["after"] = d["settings"]
        train_s, steps = d["train_seconds"], list(d["steps"])
    if saved.is_file():
        r = json.loads(saved.read_text(encoding="utf-8"))
        if r.get("settings") == settings:
            return r
    model = row.model
    for i, stage in enumerate(row.stages):
        dest = folder / ("final" if i == len(row.stages) - 1 else f"stage{i}")
        m = train(make_config(output=str(dest), **stage), progress=False, overwrite=True)
        train_s += m["train_seconds"]
        steps.append(m["steps"])
        model = str(dest)
    enc = load_encoder(model)
    res = evaluate_sts(enc, tasks)
    r = {"slug": row.slug, "name": row.name, "path": model, "settings": settings, "avg": res["avg"],
         "tasks": {t: v["spearman"] for t, v in res["tasks"].items()}, "eval_seconds": res["seconds"],
         "train_seconds": train_s if row.stages else None, "steps": steps,
         "size_mib": folder_mib(Path(model) if row.stages or Path(model).is_dir() else Path(enc.source_path))}
    folder.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(r, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in r.items() if k not in ("tasks", "settings")}), flush=True)
    return r


def speeds(paths: dict[str, str], seconds: float, threads: int, rounds: int = 3, n_sents: int = 512,
           clock: str = "wall") -> dict[str, float]:
    """CPU sentences per second of each model (batch 64, ``threads`` threads, fp32) on the same ``n_sents`` STS-B
    test sentences: every round encodes that list with each model in turn, repeated for ``seconds``; the best
    round counts. Interleaving puts every model under the same machine load. ``clock="cpu"`` counts the process's
    CPU time instead of wall time (with 1 thread: the speed of an unshared core, for a machine others load)."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    d = load_sts("stsb", "test", text="senteval")
    sents = list(dict.fromkeys([*d.sent1, *d.sent2]))[:n_sents]
    torch.set_num_threads(threads)
    encoders = {k: load_encoder(p, device="cpu") for k, p in paths.items()}
    best = dict.fromkeys(paths, 0.0)
    for _ in range(rounds):
        for k, enc in encoders.items():
            n, t0 = 0, now()
            while n == 0 or now() - t0 < seconds:
                enc.encode(sents, batch_size=64)
                n += len(sents)
            best[k] = max(best[k], n / (now() - t0))
    return best


def architecture_speeds(args, out: Path) -> None:
    """Encode speed of the teacher, the student and untrained models of the distilled students' architectures."""
    arch = out / "architectures"
    if not (arch / "3-layer" / "modules.json").is_file():
        enc = load_encoder(args.student, device="cpu")
        enc.keep_layers(spread_layers(enc.num_layers, 3))
        enc.save(arch / "3-layer")
    if not (arch / "textcnn" / "modules.json").is_file():
        load_encoder("glove-50d", device="cpu", word_encoder="textcnn").save(arch / "textcnn")
    paths = {args.teacher: args.teacher, args.student: args.student, f"3-layer {args.student}": str(arch / "3-layer"),
             "TextCNN (GloVe-50d, 1/3/5 x 128)": str(arch / "textcnn")}
    if static_file(args, out).is_file():  # the students over the teacher's word vectors (made by a --rows static-* run)
        name = f"{args.static_words // 1000}k words x {args.static_dim}"
        if not (arch / "static-textcnn" / "modules.json").is_file():
            load_encoder(str(static_file(args, out)), device="cpu", word_encoder="textcnn").save(arch / "static-textcnn")
        paths[f"TextCNN ({name}, 1/3/5 x 128)"] = str(arch / "static-textcnn")
        paths[f"mean ({name})"] = str(static_folder(args, out))
    sp = speeds(paths, args.speed_seconds, args.speed_threads, n_sents=256, clock=args.speed_clock)
    print(md_table(["model", f"sentences / {'CPU-' if args.speed_clock == 'cpu' else ''}second", f"vs {args.student}"],
                   [[k, v, f"{v / sp[args.student]:.2f}x"] for k, v in sp.items()]))


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA), fp32"
    return "this CPU, fp32"


def run(args) -> None:
    args.teacher = args.teacher or "mpnet-base"
    args.cnn_epochs = args.cnn_epochs if args.cnn_epochs is not None else 8
    args.triple_rounds = args.triple_rounds if args.triple_rounds is not None else 1
    out = Path(args.out if args.out != "runs/small-models" else "runs/small-models-strong")
    if args.speed_architectures:
        return architecture_speeds(args, out)
    t0 = time.perf_counter()
    triples = out / "distill_triples.tsv"
    n_rows, n_sents = distill_triples(triples, rounds=args.triple_rounds)
    if args.max_rows and args.max_rows < n_rows:
        n_rows, n_sents = sample_rows(triples, args.max_rows)
    tasks = args.tasks.split(",")
    tp = teacher_pass(args.teacher, triples, out)
    n_scored, n_scored_dropped = scored_pairs(out / "scored_pairs.tsv")
    print(json.dumps({"scored_pairs": n_scored, "left_out_with_a_test_sentence": n_scored_dropped}), flush=True)
    all_rows = rows(args, triples, out)
    wanted = set(args.rows.split(",")) if args.rows else {r.slug for r in all_rows}
    if any(r.startswith("static-") for r in wanted) and not args.table_only:
        print(json.dumps({"word_vectors": static_pass(args, out)}), flush=True)
    unknown = wanted - {r.slug for r in all_rows}
    if unknown:
        raise SystemExit(f"--rows: unknown row(s) {', '.join(sorted(unknown))}; rows: {', '.join(r.slug for r in all_rows)}")
    results = []
    for row in all_rows:
        saved = out / row.slug / "row.json"
        if row.slug in wanted and not args.table_only:
            results.append(run_row(row, out, tasks))
        elif saved.is_file():
            results.append(json.loads(saved.read_text(encoding="utf-8")))
    if args.rows and not args.table_only:  # a partial run: the table is written by a run over all the rows
        return
    sp = speeds({r["slug"]: r["path"] for r in results}, args.speed_seconds, args.speed_threads, clock=args.speed_clock)
    teacher, student = results[0], next(r for r in results if r["slug"] == "minilm")
    table = md_table(
        ["model", f"{len(tasks)}-task avg", "% of teacher", f"Δ vs {args.student}", "encode sent/s", f"speed vs {args.student}", "size (MiB)",
         "steps", "train s", "eval s"],
        [[r["name"], r["avg"], 100 * r["avg"] / teacher["avg"], f"{r['avg'] - student['avg']:+.2f}", sp[r["slug"]],
          f"{sp[r['slug']] / sp['minilm']:.2f}x", r["size_mib"], "+".join(map(str, r["steps"])) or "–",
          r["train_seconds"] if r["train_seconds"] is not None else "–", r["eval_seconds"]] for r in results])
    per_task = md_table(["model", *tasks], [[r["name"], *[r["tasks"].get(t, float("nan")) for t in tasks]] for r in results])
    tp_s = f"{tp['seconds']:.0f} s ({tp['sentences'] / tp['seconds']:.1f} sentences/s)" if tp["seconds"] else "not recorded"
    text = (
        f"## Row set: a stronger teacher ({args.teacher})\n\n"
        f"Command: `python -m bench.small_models --row-set strong-teacher --teacher {args.teacher} "
        f"--triple-rounds {args.triple_rounds} --minilm-steps {args.minilm_steps} --minilm-lr {args.minilm_lr} "
        f"{f'--minilm-anchor-weight {args.minilm_anchor_weight} ' if args.minilm_anchor_weight else ''}"
        f"--sup-steps {args.sup_steps} --student-steps {args.student_steps} --cnn-epochs {args.cnn_epochs} "
        f"--student-layer-choice {args.student_layer_choice} --student-lr {args.student_lr}"
        f"{f' --student-anchor-weight {args.student_anchor_weight}' if args.student_anchor_weight else ''}"
        f"{f' --student-eval-steps {args.student_eval_steps}' if args.student_eval_steps else ''} "
        f"--scored-epochs {args.scored_epochs} --scored-lr {args.scored_lr} --static-steps {args.static_steps} "
        f"--precision {args.precision} --seed {args.seed}"
        f"{f' --max-rows {args.max_rows}' if args.max_rows else ''}` "
        f"(this assembly {time.perf_counter() - t0:.0f} s; rows measured by earlier `--rows` runs are reused, "
        "their own times are in the table)\n\n"
        f"Machine: {machine()}\n\n"
        f"Training file: {n_rows} rows of three related sentences ({n_sents} distinct) — SNLI triples; STS-B/SICK-R "
        f"train pairs + a 20% word-deletion edit; Wikipedia sentence + a 20% word-deletion edit + a 30% crop "
        f"({args.triple_rounds} round(s) of random edits); no sentence of an STS test set. Teacher pass over the "
        f"{tp['sentences']} distinct sentences: {tp_s}, once; every row reads the cached embeddings. "
        f"CoSENT rows: the {n_scored} STS-B/SICK-R train pairs that share no sentence with an STS test set "
        f"({n_scored_dropped} that do left out), gold scores (SICK-R's put on 0–5), batch 32. "
        "All-MiniLM students: batch 64 rows (192 sentences), relational τ 0.05, 10 warm-up steps, linear decay; "
        "TextCNN: batch 128 rows, lr 1e-3, GloVe trainable. 'train s' excludes the teacher pass; 'eval s' is the "
        f"evaluation (Spearman ×100, SentEval text, {', '.join(tasks)}). Encode speed: CPU, {args.speed_threads} "
        f"thread(s), {args.speed_clock}-clock time, fp32, the same 512 STS-B test sentences, batch 64, all models in one process, interleaved, best of 3 rounds of "
        f"{args.speed_seconds:.0f} s each. Device of the training, teacher pass and evaluation: {device_name()}.\n\n"
        + table + "\n\nPer task:\n\n" + per_task + "\n")
    print(text)
    write_section(Path(args.write), SECTION, text)
    Path(args.write).with_name("small-models-strong.json").write_text(
        json.dumps({"teacher_pass": tp, "speeds": sp, "rows": results}, indent=1), encoding="utf-8")
