"""Search: the top-k engine, faiss, quantized indexes and the official SimCSE tool, side by side.

    python -m bench.search [--parts a,b,c,d,e,f] [--forum gaming] [--synthetic-docs 500000]

(a) CQADupStack retrieval evaluation (one forum, all-MiniLM-L6-v2): encoding time, then the ranking
    time of ``evaluate_retrieval`` (engine, top 1000) against the former per-query Python sort (timed on
    a sample of queries and extrapolated; its metrics on the sample compared).
(b) synthetic 500,000 documents × 10,000 queries, dim 384, random unit vectors: the evaluation's
    ranking path (top 1000) in a child process: time and peak RSS (``ru_maxrss``).
(c) exact search against sentence-transformers' ``util.semantic_search`` on the same embeddings
    (alternating, best of rounds), and faiss HNSW / IVF: recall@10 against exact and queries/second.
(d) int8 and binary indexes with float rescoring: recall@10 against float, size, queries/second.
(e) the official SimCSE tool (PyPI ``simcse==0.4``, installed with ``--no-deps`` into ``--simcse-path``):
    ``build_index``/``search`` against ``embtune.Index`` on the same corpus and model: time and top-10
    agreement.
(f) the encoder itself in ONNX Runtime, fp32 and int8 (dynamic quantization, ``--backend onnx-int8``),
    against torch fp32/bf16: graph size, encode sentences/s (interleaved, best of rounds), the 7 STS
    tasks and nDCG@10 on CQADupStack ``--f-forum`` — what int8 costs in quality for what it gains in speed.
Results accumulate in docs/search.json; docs/search.md is rewritten from it after every part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import DOCS, machine, md_table

CQA = Path("/work/shared/data/domain/cqadupstack")
MODEL = "minilm-l6"
RESULTS = DOCS / "search.json"


def cpu_flags() -> str:
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags) or "none of avx2/avx512"


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def save(part: str, data: dict) -> None:
    import fcntl

    with open(RESULTS.with_suffix(".lock"), "w") as lock:  # parts may run in parallel processes
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = load_results()
        data["loadavg_1m_at_end"] = os.getloadavg()[0]
        res[part] = data
        res["machine"] = machine()
        res["cpu_flags"] = cpu_flags()
        RESULTS.write_text(json.dumps(res, indent=1) + "\n")
        write_doc(res)


def cached_forum(forum: str, cache: Path):
    """The forum's task and minilm embeddings (normalised), encoded once and cached."""
    import embtune
    from embtune.evaluation.retrieval import load_beir

    task = load_beir(CQA / forum)
    f = cache / f"{forum}.npz"
    doc_ids = list(task.corpus)
    q_ids = list(task.queries)
    if f.is_file():
        z = np.load(f)
        return task, doc_ids, q_ids, z["d"], z["q"], float(z["seconds"])
    enc = embtune.load(MODEL)
    t0 = time.perf_counter()
    d = enc.encode([task.corpus[i] for i in doc_ids], batch_size=64, normalize=True)
    q = enc.encode([task.queries[i] for i in q_ids], batch_size=64, normalize=True)
    secs = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, d=d, q=q, seconds=secs)
    return task, doc_ids, q_ids, d, q, secs


def cached_all_forums(cache: Path, n_queries: int):
    """Every CQADupStack forum's titles as one corpus and a seeded sample of their queries: all-MiniLM-L6-v2
    embeddings (normalised; encoded once in bf16 where native, else fp32, and cached), the encoding seconds and
    the precision used."""
    import random

    import embtune
    from embtune.evaluation.retrieval import load_beir
    from embtune.precision import resolve_precision

    f = cache / f"all-forums-q{n_queries}.npz"
    if f.is_file():
        z = np.load(f)
        return z["d"], z["q"], float(z["seconds"]), str(z["precision"])
    docs, queries = [], []
    for forum in sorted(p.name for p in CQA.iterdir() if (p / "corpus.jsonl").is_file()):
        task = load_beir(CQA / forum)
        docs += list(task.corpus.values())
        queries += list(task.queries.values())
    queries = random.Random(0).sample(queries, min(n_queries, len(queries)))
    enc = embtune.load(MODEL)
    precision = resolve_precision("auto", enc.device)
    t0 = time.perf_counter()
    d = enc.encode(docs, batch_size=128, normalize=True, precision=precision)
    q = enc.encode(queries, batch_size=128, normalize=True, precision=precision)
    secs = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, d=d, q=q, seconds=secs, precision=precision)
    return d, q, secs, precision


def old_rank(scores: np.ndarray, doc_ids: list[str]) -> list[str]:
    """retrieval.rank() before the engine: a full Python sort per query."""

    class Desc(str):
        def __lt__(self, other):
            return str.__gt__(self, other)

    order = sorted(range(len(doc_ids)), key=lambda i: (-float(scores[i]), Desc(doc_ids[i])))
    return [doc_ids[i] for i in order]


def part_a(args) -> dict:
    from embtune.evaluation.retrieval import query_metrics
    from embtune.search import topk

    if args.random_embeddings:  # the forum's ids and qrels, random unit vectors of the same shapes
        from embtune.evaluation.retrieval import load_beir

        task = load_beir(CQA / args.forum)
        doc_ids, q_ids = list(task.corpus), list(task.queries)
        d, q, enc_secs = random_unit(len(doc_ids), 384, 5), random_unit(len(q_ids), 384, 6), float("nan")
    else:
        task, doc_ids, q_ids, d, q, enc_secs = cached_forum(args.forum, args.cache)
    keep = [i for i, qid in enumerate(q_ids) if any(r > 0 for r in task.qrels.get(qid, {}).values())]
    q, q_ids = q[keep], [q_ids[i] for i in keep]
    engine, (idx, _) = timed(lambda: topk(q, d, 1000, doc_ids=doc_ids), args.rounds)
    metrics_t, per = timed(lambda: [query_metrics([doc_ids[j] for j in idx[i]], task.qrels[qid])
                                    for i, qid in enumerate(q_ids)], args.rounds)
    metrics = {k: 100 * float(np.mean([p[k] for p in per])) for k in per[0]}
    # the former path on a sample of queries (float64 score matrix, Python sort per query)
    n_old = min(args.old_queries, len(q_ids))
    def old_path():
        sims = q[:n_old].astype(np.float64) @ d.astype(np.float64).T
        return [query_metrics(old_rank(sims[i], doc_ids), task.qrels[q_ids[i]]) for i in range(n_old)]

    old_secs, old = timed(old_path, 1)
    same = all(abs(old[i][k] - per[i][k]) < 1e-12 for i in range(n_old) for k in ("recall@10", "mrr@10", "ndcg@10"))
    return {"random": bool(args.random_embeddings), "forum": args.forum, "docs": len(doc_ids), "queries": len(q_ids), "encode_s": enc_secs,
            "engine_s": engine, "metrics_s": metrics_t, "ranking_s": engine + metrics_t,
            "old_sample_queries": n_old, "old_s_per_query": old_secs / n_old,
            "old_extrapolated_s": old_secs / n_old * len(q_ids), "old_new_same_on_sample": same,
            "metrics": metrics}


def child_synthetic(n_docs: int, n_q: int, dim: int, k: int) -> None:
    """Run in a child process: random unit vectors, the engine's top k; prints JSON with time and peak RSS."""
    from embtune.search import topk

    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    d = torch.randn(n_docs, dim, generator=g)
    d /= d.norm(dim=1, keepdim=True)
    q = torch.randn(n_q, dim, generator=g)
    q /= q.norm(dim=1, keepdim=True)
    gen = time.perf_counter() - t0
    ids = [str(i) for i in range(n_docs)]
    t0 = time.perf_counter()
    idx, sc = topk(q.numpy(), d.numpy(), k, doc_ids=ids)
    secs = time.perf_counter() - t0
    # VmHWM: the peak of this process's own memory. Not ru_maxrss: Linux carries the parent's high-water
    # mark across fork + exec, so a child of a parent holding the 500k corpora of parts (c)/(d) reported 4.7 GiB.
    rss = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:")) / 2**20  # KiB -> GiB
    print(json.dumps({"docs": n_docs, "queries": n_q, "dim": dim, "k": k, "generate_s": gen, "search_s": secs,
                      "peak_rss_gib": rss, "shape": list(idx.shape)}))


def part_b(args) -> dict:
    out = {}
    for k in args.b_k:
        r = subprocess.run([sys.executable, "-m", "bench.search", "--child", f"{args.synthetic_docs},{args.synthetic_queries},384,{k}"],
                           capture_output=True, text=True, check=True)
        out[f"k{k}"] = json.loads(r.stdout.strip().splitlines()[-1])
        print(out[f"k{k}"], flush=True)
    return out


def timed(fn, rounds: int):
    best, res = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    return (x / x.norm(dim=1, keepdim=True)).numpy()


def part_c(args) -> dict:
    from sentence_transformers import util

    from embtune.search import topk
    from embtune.search.faiss_backend import FaissSearcher, recall_at_k

    sets = [(f"random unit vectors {args.synthetic_docs:,}",
             lambda: (random_unit(args.synthetic_docs, 384, 1), random_unit(args.c_queries, 384, 2))),
            (f"CQADupStack-{args.forum} (minilm-l6)", lambda: cached_forum(args.forum, args.cache)[3:5])]
    if args.c_all_forums:  # the largest real corpus here: every forum's titles
        sets.append(("CQADupStack, all forums' titles (minilm-l6, encoded in bf16 where native)",
                     lambda: cached_all_forums(args.cache, args.c_queries)[:2]))
    sets = [s for s in sets if not args.c_sets or any(w in s[0] for w in args.c_sets.split(","))]
    out = load_results().get("c", {}) if args.c_sets else {}  # a partial run keeps the other sets' rows
    for name, make in sets:
        d, q = make()
        print(f"(c) {name}: {d.shape[0]} docs × {q.shape[0]} queries", flush=True)
        row = {"docs": d.shape[0], "queries": q.shape[0]}
        dt, qt = torch.from_numpy(d), torch.from_numpy(q)
        ours_t, st_t = [], []
        for _ in range(args.rounds):  # alternating in one process
            t, (exact, _) = timed(lambda: topk(q, d, 10), 1)
            ours_t.append(t)
            t, st = timed(lambda: util.semantic_search(qt, dt, top_k=10, score_function=util.dot_score), 1)
            st_t.append(t)
        row["exact_qps"] = q.shape[0] / min(ours_t)
        row["st_qps"] = q.shape[0] / min(st_t)
        row["st_recall"] = recall_at_k(np.array([[h["corpus_id"] for h in r] for r in st]), exact)
        for label, s in [("hnsw M16 efC40 ef64", FaissSearcher("hnsw", m=16, ef_construction=40, ef_search=64)),
                         ("hnsw M16 efC40 ef256", None),
                         ("ivf nprobe16", FaissSearcher("ivf", nprobe=16)),
                         ("ivf nprobe64", None)]:
            if s is None:  # the previous index, searched wider
                s = prev
                if s.kind == "hnsw":
                    s.ef_search = 256
                else:
                    s.index.nprobe = 64
                build = 0.0
            else:
                build, _ = timed(lambda: s.build(d), 1)
            prev = s
            t, (idx, _) = timed(lambda: s.search(q, 10), args.rounds)
            row[label] = {"build_s": build, "qps": q.shape[0] / t, "recall@10": recall_at_k(idx, exact),
                          "speedup": (q.shape[0] / t) / row["exact_qps"]}
            print(label, row[label], flush=True)
        out[name] = row
        save("c", out)  # partial results survive an interrupted run
    return out


def part_d(args) -> dict:
    import embtune
    from embtune.search import Index
    from embtune.search.faiss_backend import recall_at_k

    enc = embtune.load(MODEL)
    out = {}
    sets = [(f"random unit vectors {args.d_docs:,}", lambda: (random_unit(args.d_docs, 384, 3), random_unit(1000, 384, 4))),
            (f"CQADupStack-{args.forum} (minilm-l6)", lambda: cached_forum(args.forum, args.cache)[3:5])]
    for name, make in sets:
        d, q = make()
        ids = [str(i) for i in range(d.shape[0])]
        texts = [""] * d.shape[0]
        ref = Index(enc)
        ref.add_embeddings(d, texts, ids)
        t, (exact, _) = timed(lambda: ref.search_embeddings(q, 10), args.rounds)
        rows = {"float32": {"bytes": ref.embeddings.nbytes, "qps": q.shape[0] / t, "recall@10": 1.0}}
        for kind, rescore in [("int8", 1), ("int8", 4), ("binary", 1), ("binary", 4), ("binary", 10)]:
            ix = Index(enc, quantize=kind, rescore=rescore)
            ix.add_embeddings(d, texts, ids)
            t, (idx, _) = timed(lambda: ix.search_embeddings(q, 10), args.rounds)
            rows[f"{kind} rescore×{rescore}"] = {"bytes": ix.codes.nbytes, "qps": q.shape[0] / t,
                                                 "recall@10": recall_at_k(idx, exact)}
            print(name, kind, rescore, rows[f"{kind} rescore×{rescore}"], flush=True)
        out[name] = {"docs": d.shape[0], "queries": q.shape[0], "rows": rows}
        save("d", out)
    return out


def part_e(args) -> dict:
    from embtune.encoders import load_encoder
    from embtune.encoders.hub import resolve_model_path
    from embtune.evaluation.retrieval import load_beir
    from embtune.search import Index

    out: dict = {"version": "simcse==0.4", "install": (
        "`pip download simcse==0.4` gives an sdist whose setup.py requires `numpy>=1.19.5,<1.20` and "
        "`scipy>=1.5.4,<1.6` (and unpinned torch/transformers): installing it with its dependencies would replace "
        "this venv's numpy 2 and scipy (torch itself is not pinned by it). It was therefore installed with "
        "`pip install --no-deps --target DIR simcse==0.4` (outside the venv) and imported from there; its code "
        "needs only torch, transformers, scikit-learn, tqdm and faiss, all present, so it runs as is.")}
    sys.path.insert(0, str(args.simcse_path))
    try:
        from simcse import SimCSE
    except Exception as e:  # report exactly why it cannot run
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    task = load_beir(CQA / args.forum)
    docs = list(task.corpus.values())[: args.e_docs]
    queries = list(task.queries.values())[: args.e_queries]
    path = str(resolve_model_path(MODEL))
    out.update({"docs": len(docs), "queries": len(queries), "model": f"{MODEL} with cls_before_pooler (the SimCSE "
                "tool pools [CLS] only)"})
    rows = {}
    sim = SimCSE(path, device="cpu", pooler="cls_before_pooler")
    try:
        rows["simcse build_index"], _ = timed(lambda: sim.build_index(docs, use_faiss=True, batch_size=64), 1)
    except AttributeError as e:  # 0.4 sets nprobe on a flat index; faiss-cpu 1.15.1 refuses unknown attributes
        out["flat_error"] = f"build_index(use_faiss=True): {type(e).__name__}: {e}"
        rows["simcse build_index"], _ = timed(  # IVF: nprobe exists
            lambda: sim.build_index(docs, use_faiss=True, faiss_fast=True, batch_size=64), 1)
        out["index"] = "faiss IVF (faiss_fast=True)"
    rows["simcse search"], theirs = timed(lambda: sim.search(queries, top_k=10, threshold=-2.0), 1)
    rows["embtune Index.build"], ix = timed(
        lambda: Index.build(load_encoder(path, pooler="cls_before_pooler"), docs), 1)
    rows["embtune search"], (ours, _) = timed(lambda: ix.search(queries, k=10), 1)
    agree = [len({docs[int(i)] for i in o} & {s for s, _ in t}) / 10 for o, t in zip(ours, theirs)]
    out["seconds"] = rows
    out["top10_agreement"] = float(np.mean(agree))
    out["identical_top10_queries"] = int(sum(a == 1.0 for a in agree))
    return out


F_BACKENDS = [("torch fp32", "torch", "fp32"), ("torch bf16", "torch", "bf16"),
              ("onnx fp32", "onnx", "fp32"), ("onnx int8 (dynamic)", "onnx-int8", "fp32")]


def part_f(args) -> dict:
    from embtune.encoders import load_encoder
    from embtune.evaluation.sts import STS_TASKS, load_sts
    from embtune.evaluation.suite import run_evaluation
    from embtune.precision import detect_support

    out: dict = {"model": MODEL, "forum": args.f_forum, "threads": torch.get_num_threads(), "rows": {}}
    native = detect_support("cpu")
    encoders = {}
    for label, backend, precision in F_BACKENDS:
        if precision != "fp32" and not native.native(precision):  # marked, not run: it would be a slow emulation
            out["rows"][label] = {"not_native": True}
            continue
        encoders[label] = (load_encoder(MODEL, backend=backend), precision)
        f = getattr(encoders[label][0], "onnx_file", None)
        out["rows"][label] = {"graph_mib": f.stat().st_size / 2**20 if f else None}
    # speed: the same sentences, every backend in turn per round, best round (one process, same load)
    d = load_sts("stsb", "test", text="senteval")
    sents = list(dict.fromkeys(d.sent1 + d.sent2))[: args.f_sentences]
    for label, (enc, precision) in encoders.items():  # warm-up: export/quantize, first-call allocations
        enc.encode(sents[:64], batch_size=64, precision=precision)
    best = {label: float("inf") for label in encoders}
    for _ in range(args.rounds + 1):
        for label, (enc, precision) in encoders.items():
            t, _ = timed(lambda: enc.encode(sents, batch_size=64, precision=precision), 1)
            best[label] = min(best[label], t)
    for label in encoders:
        out["rows"][label]["sent_per_s"] = len(sents) / best[label]
    out["speed_sentences"] = len(sents)
    save("f", out)
    # quality: the 7 STS tasks and one CQADupStack forum's nDCG@10, per backend
    tasks = [*STS_TASKS, f"beir:{CQA / args.f_forum}"]
    for label, (enc, precision) in encoders.items():
        t0 = time.perf_counter()
        r = run_evaluation(enc, tasks, precision=precision)
        ret = next(iter(r["retrieval"].values()))["metrics"]
        out["rows"][label].update(sts={t: v["spearman"] for t, v in r["tasks"].items()}, sts_avg=r["avg"],
                                  ndcg10=ret["ndcg@10"], eval_s=time.perf_counter() - t0)
        print(label, out["rows"][label], flush=True)
        save("f", out)
    return out


def write_doc(res: dict) -> None:
    lines = ["# Search: the top-k engine, faiss, quantized indexes, the SimCSE tool", "",
             "Measured with `python -m bench.search` on: " + res.get("machine", "?") + ".",
             f"CPU flags: {res.get('cpu_flags', '?')}. Load average (1 min) when each part ended: "
             + ", ".join(f"({k}) {v['loadavg_1m_at_end']:.1f}" for k, v in sorted(res.items())
                         if isinstance(v, dict) and "loadavg_1m_at_end" in v)
             + ". Every comparison alternates its contenders in one process and keeps the best round.", ""]
    for key in ("a", "a_random"):
        if key not in res:
            continue
        a = res[key]
        what = ("random unit vectors of its shapes (ranking time only; metrics meaningless)" if a.get("random")
                else "all-MiniLM-L6-v2")
        lines += [f"## (a) CQADupStack-{a['forum']} retrieval evaluation ({a['docs']:,} titles, {a['queries']:,} "
                  f"queries), {what}", "",
                  md_table(["step", "seconds"], [
                      *([] if a.get("random") else [["encode corpus + queries (all-MiniLM-L6-v2, fp32)", round(a["encode_s"], 1)]]),
                      ["rank: engine top 1000 (float32, tiled, trec_eval ties)", round(a["engine_s"], 2)],
                      ["metrics from the top 1000", round(a["metrics_s"], 2)],
                      ["**ranking total (target ≤ 2 s)**", round(a["ranking_s"], 2)],
                      [f"former Python sort, {a['old_s_per_query']:.3f} s/query × {a['queries']} queries "
                       f"(extrapolated from {a['old_sample_queries']})", round(a["old_extrapolated_s"], 1)]]), "",
                  f"On the {a['old_sample_queries']} sampled queries the former path and the engine give the same "
                  f"recall@10, MRR@10 and nDCG@10: {a['old_new_same_on_sample']}.", "",
                  *([] if a.get("random") else [md_table(list(a["metrics"]), [[round(v, 2) for v in a["metrics"].values()]])]),
                  ""]
    if "b" in res:
        rows = [[f"{v['docs']:,} × {v['queries']:,}", v["dim"], v["k"], round(v["search_s"], 1),
                 round(v["peak_rss_gib"], 2)] for v in res["b"].values() if isinstance(v, dict)]
        lines += ["## (b) Synthetic: random unit vectors, ranking only (child process)", "",
                  md_table(["docs × queries", "dim", "k", "search s", "peak RSS GiB (target < 4)"], rows), "",
                  "Peak RSS is the child's own high-water mark (`VmHWM`), including the 0.77 GB corpus, the queries, the ids and torch.", ""]
    if "c" in res:
        lines += ["## (c) Exact search vs sentence-transformers, and faiss", ""]
        for name, r in res["c"].items():
            if not isinstance(r, dict):
                continue
            rows = [["embtune exact (`search.topk`)", round(r["exact_qps"]), "1.000", "1.00", "–"],
                    ["sentence-transformers `util.semantic_search` (dot_score)", round(r["st_qps"]),
                     f"{r['st_recall']:.3f}", f"{r['st_qps'] / r['exact_qps']:.2f}", "–"]]
            for label, v in r.items():
                if isinstance(v, dict):
                    rows.append([f"faiss {label}", round(v["qps"]), f"{v['recall@10']:.3f}", f"{v['speedup']:.2f}",
                                 round(v["build_s"], 1) if v["build_s"] else "(same index)"])
            lines += [f"**{name}**: {r['docs']:,} docs, {r['queries']:,} queries, k = 10", "",
                      md_table(["search", "queries/s", "recall@10 vs exact", "× exact q/s", "build s"], rows), ""]
        lines += ["Targets: exact ≥ sentence-transformers' q/s; faiss recall@10 ≥ 0.95 at ≥ 10× exact q/s on the 500k "
                  "corpus. Random unit vectors in 384 dimensions have no cluster structure (every point is nearly "
                  "equidistant), the hardest case for IVF and HNSW; the CQADupStack rows show real embeddings.", ""]
    if "d" in res:
        lines += ["## (d) Quantized indexes with float rescoring", ""]
        for name, r in res["d"].items():
            if not isinstance(r, dict):
                continue
            fl = r["rows"]["float32"]
            rows = [[k, f"{v['bytes'] / 2**20:.1f}", f"{fl['bytes'] / v['bytes']:.0f}×", round(v["qps"]),
                     f"{v['recall@10']:.3f}"] for k, v in r["rows"].items()]
            lines += [f"**{name}**: {r['docs']:,} docs, {r['queries']:,} queries, k = 10", "",
                      md_table(["index", "search structure MiB", "smaller", "queries/s", "recall@10 vs float"], rows), ""]
        lines += ["Candidates (k × rescore) come from the codes (int8: float query · decoded codes; binary: Hamming, "
                  "via ±1 matmul); they are rescored with the float vectors, which `Index.load` memory-maps from "
                  "`embeddings.npy` (only the candidates' rows are read). Target: binary recall@10 ≥ 0.95 at 32× smaller.", ""]
    if "e" in res:
        e = res["e"]
        lines += ["## (e) The official SimCSE tool (`simcse==0.4`)", ""]
        if "error" in e:
            lines += [f"It could not run: {e['error']}", ""]
        else:
            rows = [[k, round(v, 1)] for k, v in e["seconds"].items()]
            index = e.get("index", "faiss flat (`use_faiss=True`)")
            failed = f" Its exact faiss path failed first — {e['flat_error']} — so it ran with {index}." if "flat_error" in e else ""
            lines += [f"{e['docs']:,} CQADupStack titles, {e['queries']} queries, model {e['model']}; {index} for the "
                      f"SimCSE tool, the exact engine for embtune.{failed} Build times include encoding.", "",
                      md_table(["step", "seconds"], rows), "",
                      f"Top-10 agreement: {e['top10_agreement']:.4f} (identical top-10 sets for "
                      f"{e['identical_top10_queries']} of {e['queries']} queries).", ""]
        lines += [e.get("install", ""), ""]
    if "f" in res:
        f = res["f"]
        rows, ref = [], f["rows"].get("torch fp32", {})
        for label, r in f["rows"].items():
            if r.get("not_native"):
                rows.append([f"{label} (not native on this CPU: not run)", *["–"] * 7])
                continue
            rows.append([label, f"{r['graph_mib']:.1f}" if r.get("graph_mib") else "–", round(r.get("sent_per_s", 0)),
                         f"{r.get('sent_per_s', 0) / ref.get('sent_per_s', 1):.2f}×",
                         *([f"{r['sts_avg']:.2f}", f"{r['sts_avg'] - ref['sts_avg']:+.2f}", f"{r['ndcg10']:.2f}",
                            f"{r['ndcg10'] - ref['ndcg10']:+.2f}"] if "sts_avg" in r and "sts_avg" in ref
                           else ["(not measured)"] * 4)])
        lines += ["## (f) The encoder in ONNX Runtime: fp32 and int8 dynamic quantization", "",
                  f"all-MiniLM-L6-v2, {f['threads']} threads; encode speed on {f['speed_sentences']} distinct STS-B test "
                  "sentences, batch 64, the backends in turn each round, best round; quality: Spearman ×100 averaged "
                  f"over the 7 STS tasks and nDCG@10 on CQADupStack-{f['forum']} (all queries), same code path for "
                  "every backend (`embtune eval MODEL --backend B`).", "",
                  md_table(["backend", "graph MiB", "sentences/s", "× torch fp32", "STS avg", "Δ STS", "nDCG@10",
                            "Δ nDCG@10"], rows), "",
                  "int8: `onnxruntime.quantization.quantize_dynamic` of the fused graph, int8 weights per output "
                  "channel, activations quantized per batch at run time (no calibration data), as "
                  "sentence-transformers' `export_dynamic_quantized_onnx_model` does.", ""]
        measured = {label: r for label, r in f["rows"].items() if "sts" in r}
        if measured:
            tasks = list(next(iter(measured.values()))["sts"])
            lines += [md_table(["backend", *tasks], [[label, *[f"{r['sts'][t]:.2f}" for t in tasks]]
                                                      for label, r in measured.items()]), ""]
    if res.get("notes"):
        lines += ["## Reading", "", res["notes"], ""]
    (DOCS / "search.md").write_text("\n".join(lines).rstrip() + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--parts", default="a,b,c,d,e")
    p.add_argument("--forum", default="gaming")
    p.add_argument("--cache", type=Path, default=Path("/tmp/embtune-bench-search"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--old-queries", type=int, default=30)
    p.add_argument("--synthetic-docs", type=int, default=500_000)
    p.add_argument("--synthetic-queries", type=int, default=10_000)
    p.add_argument("--b-k", type=lambda v: [int(x) for x in v.split(",")], default=[1000],
                   help="k values for (b) (1000: what retrieval evaluation keeps)")
    p.add_argument("--c-queries", type=int, default=1000)
    p.add_argument("--c-all-forums", action="store_true",
                   help="(c): also every CQADupStack forum's titles as one corpus (encoded once, cached)")
    p.add_argument("--c-sets", default=None, help="(c): run only the sets whose name contains one of these words")
    p.add_argument("--d-docs", type=int, default=500_000)
    p.add_argument("--e-docs", type=int, default=10_000)
    p.add_argument("--e-queries", type=int, default=500)
    p.add_argument("--f-forum", default="mathematica", help="(f): the CQADupStack forum for nDCG@10")
    p.add_argument("--f-sentences", type=int, default=1000, help="(f): sentences of the speed measurement")
    p.add_argument("--simcse-path", type=Path, default=Path("/tmp/a14-simcse/site"),
                   help="folder holding `pip install --no-deps --target DIR simcse==0.4`")
    p.add_argument("--random-embeddings", action="store_true",
                   help="(a): random unit vectors of the forum's shapes instead of encoding it (ranking time only)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        n, q, dim, k = (int(x) for x in args.child.split(","))
        child_synthetic(n, q, dim, k)
        return
    for part in args.parts.split(","):
        t0 = time.perf_counter()
        print(f"== part {part}", flush=True)
        key = "a_random" if part == "a" and args.random_embeddings else part
        save(key, {"a": part_a, "b": part_b, "c": part_c, "d": part_d, "e": part_e, "f": part_f}[part](args))
        print(f"== part {part} done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
