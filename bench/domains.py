"""Domain benchmark: does tuning all-MiniLM-L6-v2 on a domain's own data help on that domain's task?

    python -m bench.domains [--domains mathematica,twitterpara,stsb-zh] [--recipes unsup,sup] [--steps 100]

writes docs/domains.md (a benchmark, not a test). Every recipe gets the same budget (``--steps`` steps of
batch 64, max_seq_length 32, lr 3e-5, the SimCSE defaults) and own-task selection: the starting model is
evaluated at step 0 and every ``--eval-steps``, and the run returns its best checkpoint on the domain's
selection split — never on the evaluation split. Each finished run is kept under ``--work``
(``runs/bench-domains/<domain>/<recipe>/bench.json``) and skipped when the script is run again, so the
table grows run by run; the table is rewritten after every run.

Domains (data from the shared data folder, ``--data``; the rules that split it are fixed and stated):

- ``cqa-<forum>``: CQADupStack title-only duplicate retrieval. Queries with int(sha1(query id), 16) even are
  the tuning half, the others the evaluation half (nDCG@10 and MAP@100 over the full corpus, reported).
  Of the tuning half, the first 20% of queries in SHA-1 order of their id are the selection slice, ranked
  against a sub-corpus (their relevant titles + 3,000 titles, the first in SHA-1 order of their id) so an
  evaluation costs seconds; the rest give the (question, duplicate) training pairs. Unlabeled: all titles.
- ``twitterpara``: PIT-2015. Evaluation: AP of the cosine on the 838 test pairs with a binary label.
  dev.data's pairs with n_yes >= 3 are 1, n_yes <= 1 are 0 (2 = debatable, dropped); grouped by their first
  tweet, the first 20% of groups in SHA-1 order are the selection slice (AP), the rest the tuning pairs.
  Unlabeled: every distinct tweet of dev.data.
- ``<zh set>`` (lcqmc, atec, bq, pawsx, stsb-zh): Spearman of the cosine with the label (senteval_cn). Dev pairs
  for tuning and selection (grouped by sentence1, first 20% of groups in SHA-1 order = selection), test for
  evaluation; BQ has only a dev split: its pairs grouped by sentence1, the first half of the groups in SHA-1
  order are BQ's evaluation half, the rest its dev. Unlabeled: the dev sentences of the tuning part.

Recipes: ``unsup`` (unsup SimCSE on the unlabeled in-domain text), ``unsup-anchor`` (the same + anchor
regularisation to the starting model, λ = ``--anchor``), ``sup`` (sup SimCSE on the positive pairs, in-batch
negatives), ``sup-anchor``, ``cosent`` (CoSENT on the scored/binary pairs), ``mined`` (sup SimCSE on triples
whose hard negative ``embtune mine`` took from the unlabeled texts with the starting model), ``distill``
(in-domain distillation from all-mpnet-base-v2 on the unlabeled text, ``--distill-loss``; the first
``--distill-texts`` texts in SHA-1 order, since the teacher is slow on 2 cores), ``distill-nn`` (the same
distillation on rows of a text and its 2 nearest neighbours under the starting model, ``--distill-texts`` texts
in all, so each batch holds close pairs — random in-domain texts are mostly unrelated, and the relational
loss then has little to teach), ``distill-sup`` / ``distill-nn-sup`` (then sup SimCSE from the returned model), ``tsdae-sup`` (TSDAE on the same capped unlabeled text, then sup SimCSE —
the TSDAE paper's order). ``teacher``: all-mpnet-base-v2 itself on the evaluation split, a reference (not a
recipe; skipped for CQADupStack, whose full corpora the teacher would take too long to encode here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import random
import subprocess
import time
from pathlib import Path

import numpy as np

MODEL = "minilm-l6"
ZH = ("lcqmc", "atec", "bq", "pawsx", "stsb-zh")
TEACHER = "mpnet-base"
RECIPES = ("teacher", "unsup", "unsup-anchor", "sup", "sup-anchor", "cosent", "mined", "distill", "distill-nn",
           "distill-sup", "distill-nn-sup", "distill-nn-cosent", "tsdae-sup",
           "adapt", "adapt-corpus", "adapt-labels", "st-mnrl", "st-mnrl-mined")
#: ``embtune adapt`` rows: which of the domain's inputs the product gets (the plan follows from them)
ADAPT_ROWS = {"adapt": ("labels", "teacher"), "adapt-corpus": ("teacher",), "adapt-labels": ("labels",)}
#: sentence-transformers' standard recipe beside it (MultipleNegativesRankingLoss, 3 epochs, batch 64, the
#: no-duplicates sampler; "-mined": its mine_hard_negatives first)
ST_ROWS = ("st-mnrl", "st-mnrl-mined")
#: two-stage recipes: (first stage, second stage); the second starts from the first's returned model
CHAINS = {"distill-sup": ("distill", "sup"), "distill-nn-sup": ("distill-nn", "sup"),
          "distill-nn-cosent": ("distill-nn", "cosent"), "tsdae-sup": ("tsdae", "sup")}
#: published anchors and the issue's measured starting points (all-MiniLM-L6-v2), per domain
ANCHORS = {
    "cqa": "TSDAE (bert-base, USEB title-only) CQADupStack MAP@100 14.5 (mean of 12 forums); MiniLM android full "
           "query set nDCG@10 40.92 (issue)",
    "twitterpara": "TSDAE (bert-base) AP 69.2; all-MiniLM-L6-v2 AP 71.9, all-mpnet-base-v2 81.3 (issue)",
    "lcqmc": "CoSENT bert-base-chinese 78.69; unsup SimCSE bert-base-chinese 71.81; MiniLM 23.85 (issue)",
    "atec": "CoSENT 49.74; unsup SimCSE 33.90; MiniLM 13.52",
    "bq": "CoSENT 72.38; unsup SimCSE 50.29; MiniLM 24.73 (full dev)",
    "pawsx": "CoSENT 60.00; unsup SimCSE 13.14; MiniLM 7.15",
    "stsb-zh": "CoSENT 80.14; unsup SimCSE 71.09; MiniLM 37.80",
}
log = logging.getLogger("bench.domains")


def sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def first_share(keys, share: float) -> set[str]:
    """The first round(share · n) distinct keys in SHA-1 order (the fixed rule of every split here)."""
    ordered = sorted(set(keys), key=lambda k: (sha(k), k))
    return set(ordered[: max(1, round(share * len(ordered)))])


def write_tsv(path: Path, header: tuple[str, ...], rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(str(c).replace("\t", " ").replace("\n", " ") for c in r) + "\n")


def write_lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(s.replace("\n", " ") + "\n" for s in lines), encoding="utf-8")


# ---- domain preparation -> {eval: spec, select: spec, pairs: file, scored: file, unlabeled: file, metric} -----------

def prepare_cqa(forum: str, data: Path, out: Path) -> dict:
    src = data / "domain" / "cqadupstack" / forum
    corpus = [json.loads(x) for x in (src / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (src / "queries.jsonl").read_text(encoding="utf-8").splitlines())}
    qrels = [x.split("\t") for x in (src / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:] if x.strip()]
    tune = [r for r in qrels if int(sha(r[0]), 16) % 2 == 0]
    evalh = [r for r in qrels if int(sha(r[0]), 16) % 2 == 1]
    select_q = first_share([r[0] for r in tune], 0.2)
    titles = {d["_id"]: d["text"] for d in corpus}
    ev = out / "eval"
    (ev / "qrels").mkdir(parents=True, exist_ok=True)
    (ev / "corpus.jsonl").write_text((src / "corpus.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    (ev / "queries.jsonl").write_text((src / "queries.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    write_tsv(ev / "qrels" / "test.tsv", ("query-id", "corpus-id", "score"), evalh)
    sel = out / "select"
    (sel / "qrels").mkdir(parents=True, exist_ok=True)
    sel_rows = [r for r in tune if r[0] in select_q]
    keep = {r[1] for r in sel_rows} | set(sorted(titles, key=lambda i: (sha(i), i))[:3000])
    (sel / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": titles[i]}) + "\n" for i in titles if i in keep),
                                      encoding="utf-8")
    (sel / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": queries[q]}) + "\n" for q in sorted(select_q)),
                                       encoding="utf-8")
    write_tsv(sel / "qrels" / "dev.tsv", ("query-id", "corpus-id", "score"), sel_rows)
    train_rows = [(queries[q], titles[d]) for q, d, _ in tune if q not in select_q]
    write_tsv(out / "pairs.tsv", ("sent0", "sent1"), train_rows)
    # every tuning-half pair: what adapt gets (it holds out its own selection queries) and what ST trains on
    write_tsv(out / "pairs-all.tsv", ("sent0", "sent1"), [(queries[q], titles[d]) for q, d, _ in tune])
    write_lines(out / "unlabeled.txt", list(dict.fromkeys(titles.values())))
    note = (f"{len(corpus):,} titles; tuning half {len({r[0] for r in tune})} queries ({len(train_rows)} training pairs, "
            f"{len(select_q)} selection queries on a {len(keep):,}-title sub-corpus); evaluation half "
            f"{len({r[0] for r in evalh})} queries / {len(evalh)} pairs on the full corpus")
    return {"eval": f"beir:{ev}", "select": f"select=beir:{sel}", "pairs": out / "pairs.tsv", "scored": None,
            "unlabeled": out / "unlabeled.txt", "metrics": ("ndcg@10", "map@100"), "note": note,
            "adapt": {"corpus": str(ev), "pairs": str(out / "pairs-all.tsv")}}


def _split_pairs(rows: list[tuple[str, str, float]], share: float = 0.2):
    sel = first_share([r[0] for r in rows], share)
    return [r for r in rows if r[0] not in sel], [r for r in rows if r[0] in sel]


def prepare_twitter(data: Path, out: Path) -> dict:
    src = data / "domain" / "twitterpara" / "pit2015"
    test_rows = []
    data_lines = (src / "test.data").read_text(encoding="utf-8").splitlines()
    labels = (src / "test.label").read_text(encoding="utf-8").splitlines()
    for ln, lab in zip(data_lines, labels):
        c = ln.split("\t")
        verdict = lab.split("\t")[0]
        if verdict in ("true", "false"):
            test_rows.append((c[2], c[3], 1 if verdict == "true" else 0))
    dev = []
    for ln in (src / "dev.data").read_text(encoding="utf-8").splitlines():
        c = ln.split("\t")
        yes = int(c[4].strip("()").split(",")[0])
        if yes >= 3 or yes <= 1:
            dev.append((c[2], c[3], 1 if yes >= 3 else 0))
    tune, sel = _split_pairs(dev)
    write_tsv(out / "test.tsv", ("sent0", "sent1", "label"), test_rows)
    write_tsv(out / "select.tsv", ("sent0", "sent1", "label"), sel)
    write_tsv(out / "binary.tsv", ("sent0", "sent1", "label"), tune)
    write_tsv(out / "pairs.tsv", ("sent0", "sent1"), [(a, b) for a, b, y in tune if y == 1])
    write_lines(out / "unlabeled.txt", list(dict.fromkeys(s for a, b, _ in dev for s in (a, b))))
    note = (f"test {len(test_rows)} pairs ({sum(r[2] for r in test_rows)} paraphrases); dev {len(dev)} labelled pairs: "
            f"{len(tune)} tuning ({sum(r[2] for r in tune)} positive), {len(sel)} selection")
    write_tsv(out / "binary-all.tsv", ("sent0", "sent1", "label"), dev)
    return {"eval": f"binary:{out / 'test.tsv'}", "select": f"select=binary:{out / 'select.tsv'}",
            "pairs": out / "pairs.tsv", "scored": out / "binary.tsv", "unlabeled": out / "unlabeled.txt",
            "metrics": ("ap",), "note": note,
            "adapt": {"corpus": str(out / "unlabeled.txt"), "scored": str(out / "binary-all.tsv")}}


def prepare_zh(task: str, out: Path) -> dict:
    from embtune.evaluation.chinese import load_zh

    d = load_zh(task, "dev")
    rows = list(zip(d.sent1, d.sent2, d.scores.tolist()))
    if task == "bq":
        held = first_share([r[0] for r in rows], 0.5)
        test = [r for r in rows if r[0] in held]
        rows = [r for r in rows if r[0] not in held]
        how = f"BQ dev split by sentence1 (first half of the groups in SHA-1 order): {len(test)} evaluation pairs"
    else:
        t = load_zh(task, "test")
        test = list(zip(t.sent1, t.sent2, t.scores.tolist()))
        how = f"test {len(test)} pairs"
    tune, sel = _split_pairs(rows)
    binary = task != "stsb-zh"
    col = "label" if binary else "score"
    write_tsv(out / "test.tsv", ("sent0", "sent1", "score"), test)
    write_tsv(out / "select.tsv", ("sent0", "sent1", "score"), sel)
    write_tsv(out / "scored.tsv", ("sent0", "sent1", col), [(a, b, int(y) if binary else y) for a, b, y in tune])
    positive = [(a, b) for a, b, y in tune if (y >= 1 if binary else y >= 4)]
    write_tsv(out / "pairs.tsv", ("sent0", "sent1"), positive)
    write_lines(out / "unlabeled.txt", list(dict.fromkeys(s for a, b, _ in tune for s in (a, b))))
    note = f"{how}; dev: {len(tune)} tuning pairs ({len(positive)} positive), {len(sel)} selection"
    write_tsv(out / "scored-all.tsv", ("sent0", "sent1", col), [(a, b, int(y) if binary else y) for a, b, y in rows])
    write_lines(out / "unlabeled-all.txt", list(dict.fromkeys(s for a, b, _ in rows for s in (a, b))))
    return {"eval": f"scored:{out / 'test.tsv'}", "select": f"select=scored:{out / 'select.tsv'}",
            "pairs": out / "pairs.tsv", "scored": out / "scored.tsv", "unlabeled": out / "unlabeled.txt",
            "metrics": ("spearman",), "note": note,
            "adapt": {"corpus": str(out / "unlabeled-all.txt"), "scored": str(out / "scored-all.tsv")}}


def prepare(domain: str, data: Path, out: Path) -> dict:
    """The domain's files, written once (``prepared.json`` marks them done: runs reading them are never
    raced by a rewrite)."""
    marker = out / "prepared.json"
    if marker.is_file():
        d = json.loads(marker.read_text(encoding="utf-8"))
        return {k: Path(v) if k in ("pairs", "scored", "unlabeled") and v else v for k, v in d.items()}
    out.mkdir(parents=True, exist_ok=True)
    if domain.startswith("cqa-"):
        d = prepare_cqa(domain[4:], data, out)
    elif domain == "twitterpara":
        d = prepare_twitter(data, out)
    elif domain in ZH:
        d = prepare_zh(domain, out)
    else:
        raise SystemExit(f"unknown domain {domain!r}")
    marker.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in d.items()}), encoding="utf-8")
    return d


# ---- runs ---------------------------------------------------------------------------------------------

#: inference precision of every evaluation here (set from --eval-precision; adapt's own reports use the same)
EVAL_PRECISION = {"value": "auto"}


def evaluate(model, spec: str) -> dict[str, float]:
    from embtune.encoders import load_encoder
    from embtune.evaluation.tasks import evaluate_tasks, load_task, parse_task

    enc = load_encoder(str(model)) if isinstance(model, (str, Path)) else model
    t = parse_task(spec)
    res = evaluate_tasks([load_task(t, purpose="report")], enc, precision=EVAL_PRECISION["value"])
    return {k.split("/", 1)[1]: v for k, v in res.items()}


def recipe_config(recipe: str, d: dict, out: Path, args, model: str = MODEL) -> dict | None:
    from embtune.objectives import OBJECTIVES

    base = dict(model=model, output=str(out), max_steps=args.steps, eval_steps=args.eval_steps,
                eval_task=d["select"], batch_size=64, max_seq_length=32, lr=3e-5, seed=42, precision=args.precision)
    if recipe in ("unsup", "unsup-anchor"):
        base.update(objective="unsup-simcse", train_file=str(d["unlabeled"]))
    elif recipe in ("sup", "sup-anchor"):
        base.update(objective="sup-simcse", train_file=str(d["pairs"]))
    elif recipe == "mined":
        base.update(objective="sup-simcse", train_file=str(d["triples"]))
    elif recipe == "cosent":
        if "cosent" not in OBJECTIVES or d["scored"] is None:
            return None
        base.update(objective="cosent", train_file=str(d["scored"]))
    elif recipe == "distill":
        base.update(objective="distill", train_file=str(d["capped"]), teacher=args.teacher,
                    distill_loss=args.distill_loss, lr=args.distill_lr)
    elif recipe == "distill-nn":
        base.update(objective="distill", train_file=str(d["neighbours"]), teacher=args.teacher,
                    distill_loss=args.distill_loss, lr=args.distill_lr, batch_size=66)  # 22 rows of 3
    elif recipe == "tsdae":
        base.update(objective="tsdae", train_file=str(d["capped"]))
    else:
        raise SystemExit(f"unknown recipe {recipe!r}")
    if recipe.endswith("-anchor"):
        base["anchor_weight"] = args.anchor
    return base


def capped_texts(d: dict, out: Path, n: int) -> Path:
    """The first ``n`` unlabeled texts in SHA-1 order (the teacher and TSDAE are slow on 2 cores)."""
    path = out / f"unlabeled-{n}.txt"
    if not path.is_file():
        texts = [t for t in d["unlabeled"].read_text(encoding="utf-8").splitlines() if t.strip()]
        write_lines(path, sorted(texts, key=lambda t: (sha(t), t))[:n])
    return path


def neighbour_rows(d: dict, out: Path, n: int, k: int = 2) -> Path:
    """``embtune mine --neighbours k --max-rows n/(k+1)`` over the unlabeled texts with the starting model
    (:func:`embtune.training.mining.neighbour_rows`): rows of a text and its k nearest others."""
    from embtune.training.mining import neighbour_rows as rows_of

    path = out / f"neighbours-{n}.tsv"  # the first runs' name (same rows as the product function writes)
    if not path.is_file():
        path = out / f"neighbours-{n}.csv"
        if not path.is_file():
            rows_of(MODEL, d["unlabeled"], path, neighbours=k, max_rows=n // (k + 1), batch_size=128)
    return path


def mined_triples(d: dict, out: Path, args) -> Path:
    from embtune.training.mining import mine

    path = out / "mined.csv"
    if not path.is_file():
        _, report = mine(MODEL, d["pairs"], d["unlabeled"], path, range_min=args.range_min,
                         range_max=args.range_max, margin=args.margin)
        (out / "mined.txt").write_text(report.summary() + "\n", encoding="utf-8")
    return path


def run_adapt(domain: str, recipe: str, d: dict, work: Path, args) -> dict | None:
    """An ``embtune adapt`` row: the product itself on the domain's inputs (the corpus, and the tuning half's
    labels and/or the teacher, as ``ADAPT_ROWS`` says), its report's stages as the row's columns."""
    from embtune.adaptation import adapt

    if "adapt" not in d:
        return None
    given = ADAPT_ROWS[recipe]
    labels = {k: v for k, v in d["adapt"].items() if k != "corpus"} if "labels" in given else {}
    if "labels" in given and not labels:
        return None
    out = work / domain / run_name(recipe, args)
    rep = adapt(MODEL, d["adapt"]["corpus"], str(out / "adapt"), overwrite=True, sts=args.adapt_sts,
                teacher=args.teacher if "teacher" in given else None, eval_task=f"eval={d['eval'].split('=', 1)[-1]}",
                steps=args.adapt_steps, precision=args.precision, watch=True,
                **({"cross_fit": args.adapt_cross_fit} if args.adapt_cross_fit else {}), **labels)
    stages = [s for s in rep["stages"] if "objective" in s]
    ev = {k.split("/", 1)[1]: v for k, v in rep["after"]["tasks"].items()}
    return {"model": str(out / "adapt" / "model"), "eval": ev, "watch": watch_summary(stages, rep["after"]["tasks"]),
            "selected_step": "+".join(str(s["selected_step"]) for s in stages),
            "steps": "+".join(str(s["steps"]) for s in stages),
            "eval_steps": "+".join(str(s["eval_steps"]) for s in stages),
            "select_start": stages[-1]["start_value"], "select_best": stages[-1]["best_value"],
            "plan": rep["plan"], "stage_seconds": {s["stage"]: s.get("seconds") for s in rep["stages"]},
            "sts_before": rep["before"].get("sts_avg"), "sts_after": rep["after"].get("sts_avg")}


def watch_summary(stages: list[dict], after: dict | None = None) -> dict:
    """adapt's ``--watch`` record, reduced: per stage, the kept step and the step that is best on the evaluation
    half (the first of equal values); over the run, the returned model's evaluation value against the best
    candidate's (every evaluation of every stage is a model adapt could have returned). A cross-fitted stage's
    evaluations are its fold models' means; its returned model is the refit, whose value is ``after``'s (the
    report's evaluation of the returned model)."""
    per, cands = [], []
    for s in stages:
        evs = [e for e in s.get("evaluations", []) if e.get("held_out")]
        if not evs:
            continue
        key = next(iter(evs[0]["held_out"]))
        vals = [(e["held_out"][key], e["step"]) for e in evs]
        best = max(v for v, _ in vals)
        kept = next(v for v, st in vals if st == s["selected_step"])
        per.append({"stage": s["stage"], "kept_step": s["selected_step"],
                    "best_step": next(st for v, st in vals if v == best), "kept_is_best": kept >= best - 1e-9,
                    "kept": kept, "best": best, "start": vals[0][0], "evaluations": len(vals)})
        cands += [v for v, _ in vals]
    if not per:
        return {}
    returned = per[-1]["kept"]
    if after and stages[-1].get("refit") and stages[-1]["selected_step"]:
        returned = after.get(key, returned)
    return {"stages": per, "returned": returned, "best_candidate": max(cands), "regret": max(cands) - returned,
            "returned_is_best": returned >= max(cands) - 1e-9}


def run_st(domain: str, recipe: str, d: dict, work: Path, args) -> dict | None:
    """sentence-transformers' standard recipe on the same tuning pairs adapt gets: MultipleNegativesRankingLoss,
    3 epochs, batch 64, the no-duplicates batch sampler, lr 2e-5 with 10% warm-up (its training examples'
    settings); ``st-mnrl-mined`` first adds one hard negative per pair with its ``mine_hard_negatives`` (ranks
    11–50, relative margin 0.05, the same window and margin as ``embtune mine``). No selection: the last
    checkpoint is the model, as the recipe returns it."""
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments, losses)
    from sentence_transformers.training_args import BatchSamplers
    from sentence_transformers.util import mine_hard_negatives

    from embtune.encoders.hub import resolve_model_path
    from embtune.search.corpus import read_id_texts

    pairs = d.get("adapt", {}).get("pairs")
    if not pairs:
        return None
    rows = [ln.split("\t") for ln in Path(pairs).read_text(encoding="utf-8").splitlines()[1:] if ln.strip()]
    out = work / domain / run_name(recipe, args)
    model = SentenceTransformer(str(resolve_model_path(MODEL)), device="cpu")
    train = Dataset.from_dict({"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows]})
    t0 = time.perf_counter()
    if recipe == "st-mnrl-mined":
        corpus = list(read_id_texts(Path(d["adapt"]["corpus"]) / "corpus.jsonl").values())
        train = mine_hard_negatives(train, model, corpus=corpus, range_min=10, range_max=50, relative_margin=0.05,
                                    num_negatives=1, sampling_strategy="top", batch_size=128, verbose=False)
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(out / "st-trainer"), num_train_epochs=3, per_device_train_batch_size=64, learning_rate=2e-5,
        warmup_ratio=0.1, batch_sampler=BatchSamplers.NO_DUPLICATES, seed=42, save_strategy="no", report_to="none",
        bf16=args.precision == "bf16", logging_steps=10, use_cpu=True)
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=train,
                                         loss=losses.MultipleNegativesRankingLoss(model))
    trainer.train()
    model.save(str(out / "model"))
    train_seconds = time.perf_counter() - t0
    return {"model": str(out / "model"), "eval": evaluate(out / "model", d["eval"]), "selected_step": "last",
            "steps": trainer.state.global_step, "select_start": float("nan"), "select_best": float("nan"),
            "train_seconds": round(train_seconds, 1), "rows": len(train)}


def run_name(recipe: str, args) -> str:
    """A run's folder: the recipe and its budget (``sup@100``; a chain whose second stage has its own
    budget: ``distill-nn-cosent@300+100``), so budgets sit side by side."""
    if recipe in ("start", "teacher") or recipe in ST_ROWS:
        return recipe
    if recipe in ADAPT_ROWS:  # adapt's defaults unmarked; --adapt-cross-fit 1 (one held-out split): "-split"
        k = getattr(args, "adapt_cross_fit", None)
        return recipe + (f"@{args.adapt_steps}" if args.adapt_steps else "") + (
            "-split" if k == 1 else f"-cf{k}" if k not in (None, 2) else "")
    if recipe in CHAINS and args.second_steps:
        return f"{recipe}@{args.steps}+{args.second_steps}"
    return f"{recipe}@{args.steps}"


def train_stage(domain: str, recipe: str, d: dict, work: Path, args, model: str = MODEL, run: str | None = None,
                steps: int | None = None) -> dict:
    """Train ``recipe`` from ``model`` into ``<run>/model`` (``run``: the row's folder, default the recipe's own;
    a chain's second stage trains into the chain's folder with its own ``steps``)."""
    from embtune.config import make_config
    from embtune.training import train

    out = work / domain / (run or run_name(recipe, args)) / "model"
    values = recipe_config(recipe, d, out, args, model)
    if steps:
        values["max_steps"] = steps
    m = train(make_config(**values), progress=False, overwrite=True)
    return {"model": str(out), "selected_step": m["selected_step"], "steps": m["steps"],
            "select_start": m["start_value"], "select_best": m["best_value"], "select_metric": m["best_metric"],
            "train_seconds": m["train_seconds"]}


def run_one(domain: str, recipe: str, d: dict, work: Path, args) -> dict | None:
    done = work / domain / run_name(recipe, args) / "bench.json"
    if done.is_file():
        return json.loads(done.read_text())
    if recipe == "cosent" and d["scored"] is None:
        return None
    if recipe == "teacher" and domain.startswith("cqa-") and not args.cqa_teacher:
        return None
    t0 = time.perf_counter()
    if recipe in ("distill", "tsdae", "distill-sup", "tsdae-sup"):
        d = dict(d, capped=capped_texts(d, work / domain / "data", args.distill_texts))
    if recipe in ("distill-nn", "distill-nn-sup"):
        d = dict(d, neighbours=neighbour_rows(d, work / domain / "data", args.distill_texts))
    if recipe == "mined":
        d = dict(d, triples=mined_triples(d, work / domain / "data", args))
    if recipe in ADAPT_ROWS or recipe in ST_ROWS:
        res = run_adapt(domain, recipe, d, work, args) if recipe in ADAPT_ROWS else run_st(domain, recipe, d, work, args)
        if res is None:
            return None
    elif recipe in ("start", "teacher"):
        name = MODEL if recipe == "start" else args.teacher
        res = {"eval": evaluate(name, d["eval"]), "select": evaluate(name, d["select"].split("=", 1)[1])}
        res.update(selected_step=None, steps=0)
    elif recipe in CHAINS:
        first, second = CHAINS[recipe]
        one = run_one(domain, first, d, work, args) if first in RECIPES else None
        if one is None:  # a stage that is not a row of its own (tsdae) is trained here
            one = train_stage(domain, first, d, work, args)
        two = train_stage(domain, second, d, work, args, one["model"], run=run_name(recipe, args),
                          steps=args.second_steps or args.steps)
        res = dict(two, eval=evaluate(two["model"], d["eval"]), first_stage=one,
                   selected_step=f"{one['selected_step']}+{two['selected_step']}",
                   steps=f"{one['steps']}+{two['steps']}", select_start=one["select_start"])
    else:
        res = train_stage(domain, recipe, d, work, args)
        res["eval"] = evaluate(res["model"], d["eval"])
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    res.setdefault("eval_steps", args.eval_steps)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(res, indent=1))
    return res


def render(work: Path, domains: list[str], notes: dict[str, str], args) -> str:
    cpu = subprocess.run("lscpu | grep -o avx512_bf16 | head -1", shell=True, capture_output=True, text=True).stdout.strip()
    lines = ["# Domain benchmark: tuning all-MiniLM-L6-v2 on a domain's own data", "",
             f"`python -m bench.domains` ({' '.join(args.argv)}); CPU {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, flags: {cpu or 'no avx512_bf16'}; training precision {args.precision}, "
             f"evaluation precision {args.eval_precision}; "
             + (f"runs of {os.environ['OMP_NUM_THREADS']} thread(s) each (`OMP_NUM_THREADS`)"
                if os.environ.get("OMP_NUM_THREADS") else "one run at a time on all cores")
             + ". Rows `adapt*` are `embtune adapt` itself (embtune/adaptation/), `st-*` sentence-transformers' standard "
             "recipe on the same tuning pairs.", "",
             "Budget: a recipe named `name @N` trained N steps (a chain `a-b @N`: N steps each), batch 64 "
             "(distill-nn: 22 rows of 3), max_seq_length 32, lr 3e-5 (distillation 5e-5), seed 42; evaluation on the "
             "selection split at step 0 and every E steps; the run returns the best of those checkpoints (step 0 = "
             "the starting model; the selected-step column: selected / trained, every E). Metrics ×100 "
             "on the evaluation split, which no run trains or selects on.", "",
             "`adapt` rows run the product with its own defaults (`embtune/adaptation/recipes.py`: distill 400 steps, "
             "labelled stages 3 epochs, batch 64, max_seq_length 64, 4 evaluations per stage, bootstrap confidence "
             "0.9, teacher guard 1.0 waived at labelled confidence 0.99) on the corpus, all the tuning half's labels and/or the "
             "teacher. A labelled stage is selected by 2-fold cross-fitting (`--cross-fit 2`, adaptation/crossfit.py: "
             "two runs, each trained on one half of the tuning queries and scored on the other half against the full "
             "corpus, pooled; the chosen share of the schedule refit on every pair); rows named `-split` "
             "(`--adapt-cross-fit 1`) hold out one 20% of the queries/groups instead, as adapt did before; their "
             "selection column is the last stage's own selection metric (its start → its kept value; stages are "
             "selected on different metrics, so the first stage's start is not comparable) and "
             "their selected-step column lists each stage's kept step. `st-*` rows train on all the tuning half's "
             "pairs and return the last step (no selection).", ""]
    for dom in domains:
        found = {p.parent.name: json.loads(p.read_text()) for p in (work / dom).glob("*/bench.json")}
        order = {r: i for i, r in enumerate(("start", *RECIPES))}
        rows = dict(sorted(found.items(), key=lambda kv: (order.get(kv[0].split("@")[0], 99), kv[0])))
        if "start" not in rows:
            continue
        metrics = list(rows["start"]["eval"])
        shown = [m for m in ("ndcg@10", "map@100", "map", "ap", "f1", "spearman") if m in metrics]
        lines += [f"## {dom}", "", notes.get(dom, ""), "",
                  "| recipe | " + " | ".join(shown) + " | Δ " + shown[0] + " | selected step | selection (step 0 → best) | wall s |",
                  "|---|" + "---:|" * (len(shown) + 4)]
        base = rows["start"]["eval"][shown[0]]
        for r, v in rows.items():
            ref = r in ("start", "teacher") or r in ST_ROWS
            r = r.replace("@", " @")
            sel = "–" if ref else f"{v['select_start']:.2f} → {v['select_best']:.2f}"
            if "plan" in v:
                r += f" ({'→'.join(v['plan'])})"
            step = "–" if ref and r.split(" ")[0] not in ST_ROWS else (
                f"last of {v['steps']}" if v.get("selected_step") == "last"
                else f"{v['selected_step']} / {v['steps']}, every {v.get('eval_steps', '?')}")
            lines.append(f"| {r} | " + " | ".join(f"{v['eval'][m]:.2f}" for m in shown)
                         + f" | {v['eval'][shown[0]] - base:+.2f} | {step} | {sel} | {v['wall_seconds']:.0f} |")
        key = "cqa" if dom.startswith("cqa-") else dom
        lines += ["", f"Published anchors / references: {ANCHORS.get(key, '–')}.", ""]
    lines += summary(work, domains)
    lines += selection_table(work, domains)
    doc = Path(args.doc)
    kept = ""
    if doc.is_file() and NOTES_MARK in doc.read_text(encoding="utf-8"):  # the hand-written reading is kept
        kept = doc.read_text(encoding="utf-8").split(NOTES_MARK, 1)[1]
    return "\n".join(lines) + "\n" + NOTES_MARK + (kept or "\n")


NOTES_MARK = "<!-- notes: kept when the tables are regenerated -->"


def selection_table(work: Path, domains: list[str]) -> list[str]:
    """Issue 27's measurement: how often adapt's kept checkpoint is also the best of its stage's checkpoints on
    the evaluation half (scored at every evaluation by ``--watch``, never selected on), and what the returned
    model gives up against the best candidate of the whole run."""
    rows, stage_hits, stage_n, run_hits, run_n = [], 0, 0, 0, 0
    for dom in domains:
        for p in sorted((work / dom).glob("adapt*/bench.json")):
            w = json.loads(p.read_text()).get("watch")
            if not w:
                continue
            for st in w["stages"]:
                stage_hits += st["kept_is_best"]
                stage_n += 1
            run_hits += w["returned_is_best"]
            run_n += 1
            stages = "; ".join(f"{st['stage']}: kept {st['kept_step']}, best {st['best_step']} "
                               f"({st['kept'] - st['start']:+.2f} vs {st['best'] - st['start']:+.2f})" for st in w["stages"])
            rows.append(f"| {dom} | {p.parent.name.replace('@', ' @')} | {stages} | {w['returned']:.2f} | "
                        f"{w['best_candidate']:.2f} | {w['regret']:.2f} |")
    if not rows:
        return []
    return ["## Selection against the evaluation half (adapt rows, `--watch`)", "",
            "Every evaluation of every stage also scored the evaluation half (for the record; never selected on). "
            "Per stage: the kept step and the step best on the evaluation half (its gain over the stage's start on "
            "that half); per run: the returned model and the best of all its candidates.", "",
            "| domain | row | stages: kept vs best on the evaluation half | returned | best candidate | regret |",
            "|---|---|---|---:|---:|---:|", *rows, "",
            f"Kept step = the evaluation half's best step in **{stage_hits} of {stage_n}** stages; the returned "
            f"model = the best candidate of its run in **{run_hits} of {run_n}** runs.", ""]


def summary(work: Path, domains: list[str]) -> list[str]:
    """The issue's aggregate targets: CQADupStack mean nDCG@10 over its forums, the Chinese sets' mean
    Spearman. Each run is averaged over the domains that have it, beside the start's mean over the same."""
    groups = {"CQADupStack (nDCG@10)": ([d for d in domains if d.startswith("cqa-")], "ndcg@10"),
              "Chinese sets (Spearman)": ([d for d in domains if d in ZH], "spearman")}
    out: list[str] = []
    for title, (doms, metric) in groups.items():
        runs: dict[str, dict[str, float]] = {}
        for dom in doms:
            for p in (work / dom).glob("*/bench.json"):
                runs.setdefault(p.parent.name, {})[dom] = json.loads(p.read_text())["eval"][metric]
        if len(doms) < 2 or "start" not in runs:
            continue
        # the best run of each domain (by the evaluation metric: a reading aid, not a selection rule)
        out += [f"## Summary: {title}, mean over the domains each run has", "",
                "| run | domains | mean | start's mean on those | Δ |", "|---|---:|---:|---:|---:|"]
        for name, vals in sorted(runs.items(), key=lambda kv: (kv[0] != "start", kv[0])):
            if name == "teacher":
                continue
            base = [runs["start"][d] for d in vals if d in runs["start"]]
            mean, ref = float(np.mean(list(vals.values()))), float(np.mean(base))
            out.append(f"| {name.replace('@', ' @')} | {len(vals)} of {len(doms)} | {mean:.2f} | {ref:.2f} | {mean - ref:+.2f} |")
        out.append("")
        if "teacher" in runs:  # the share of the teacher's lead each run captured, per domain
            shown = [n for n in sorted(runs) if n not in ("start", "teacher")]
            out += [f"Share of the teacher's lead captured ((run − start) / (teacher − start)), {metric}:", "",
                    "| domain | start | teacher | " + " | ".join(n.replace("@", " @") for n in shown) + " |",
                    "|---|---:|---:|" + "---:|" * len(shown)]
            for dom in doms:
                if dom not in runs["teacher"] or dom not in runs["start"]:
                    continue
                s0, t = runs["start"][dom], runs["teacher"][dom]
                cells = [f"{(runs[n][dom] - s0) / (t - s0):+.0%}" if dom in runs[n] and t != s0 else "–" for n in shown]
                out.append(f"| {dom} | {s0:.2f} | {t:.2f} | " + " | ".join(cells) + " |")
            out.append("")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--domains", default="cqa-mathematica,twitterpara,stsb-zh,bq,pawsx")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eval-steps", type=int, default=50)
    ap.add_argument("--anchor", type=float, default=1.0)
    ap.add_argument("--teacher", default=TEACHER)
    ap.add_argument("--second-steps", type=int, default=None, help="steps of a chain's second stage (default --steps)")
    ap.add_argument("--distill-loss", default="relational", choices=("mse", "relational", "similarity"))
    ap.add_argument("--distill-lr", type=float, default=5e-5)
    ap.add_argument("--distill-texts", type=int, default=6000, help="unlabeled texts the teacher encodes (cap)")
    ap.add_argument("--range-min", type=int, default=10, help="mining rank window start (embtune mine)")
    ap.add_argument("--range-max", type=int, default=50)
    ap.add_argument("--margin", type=float, default=0.05)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                    help="training precision (evaluation follows the encoder's default)")
    ap.add_argument("--data", default=next((p for p in ("../shared/data", "/work/shared/data") if Path(p).is_dir()),
                                           "../shared/data"))
    ap.add_argument("--work", default="runs/bench-domains")
    ap.add_argument("--doc", default="docs/domains.md")
    ap.add_argument("--render-only", action="store_true", help="rewrite the doc from the finished runs, train nothing")
    ap.add_argument("--adapt-steps", type=int, default=None, help="adapt rows: steps per stage (default: each stage's own)")
    ap.add_argument("--adapt-sts", action="store_true", help="adapt rows: also score the STS table before and after")
    ap.add_argument("--adapt-cross-fit", type=int, default=None,
                    help="adapt rows: --cross-fit K (default: adapt's; 1 = one held-out split, runs named '-split')")
    ap.add_argument("--cqa-teacher", action="store_true", help="score the teacher on the CQADupStack forums too")
    ap.add_argument("--eval-precision", default="auto", choices=("fp32", "bf16", "auto"),
                    help="inference precision of the evaluations (auto: bf16 where native, as adapt evaluates)")
    args = ap.parse_args()
    import sys

    args.argv = [a for a in sys.argv[1:] if a != "--render-only"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    EVAL_PRECISION["value"] = args.eval_precision
    random.seed(0)
    np.random.seed(0)
    work, data = Path(args.work), Path(args.data)
    domains = [x.strip() for x in args.domains.split(",") if x.strip()]
    recipes = [x.strip() for x in args.recipes.split(",") if x.strip()]
    notes = {}
    if args.render_only:  # never rewrites a domain's files (a run may be reading them)
        prepared = {dom: prepare(dom, data, work / dom / "data") for dom in domains
                    if (work / dom / "data" / "prepared.json").is_file()}
    else:
        prepared = {dom: prepare(dom, data, work / dom / "data") for dom in domains}
    notes = {dom: p["note"] for dom, p in prepared.items()}
    for dom in domains if not args.render_only else []:
        for recipe in ("start", *recipes):
            log.info("%s / %s", dom, recipe)
            run_one(dom, recipe, prepared[dom], work, args)
            Path(args.doc).write_text(render(work, domains, notes, args), encoding="utf-8")
    Path(args.doc).write_text(render(work, domains, notes, args), encoding="utf-8")
    print(Path(args.doc).read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
