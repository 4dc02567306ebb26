"""--select-confidence: the paired bootstrap (training/selection.py), the tracker's eligibility rule, the
evaluators' per-item scores, and a training run that selects with it."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import torch

from embtune.config import make_config
from embtune.errors import EmbtuneError
from embtune.evaluation.tasks import LoadedTask, TaskSpec, items_of
from embtune.training.selection import ItemStat, gain_confidence
from embtune.training.trainer import EvalTracker
from tests.conftest import SENTENCES, cfg_for

# ---- ItemStat ---------------------------------------------------------------------------------------


def test_item_stat_value_by_hand():
    a = np.array([1.0, 2.0, 6.0, 3.0])
    mean = ItemStat((a,))
    assert len(mean) == 4
    assert mean.value() == 3.0
    assert mean.value(np.array([2, 2, 0])) == pytest.approx((6 + 6 + 1) / 3)  # an index may repeat
    b = np.array([10.0, 20.0, 30.0, 40.0])
    dot = ItemStat((a, b), lambda x, y: float(np.sum(x * y)))
    assert dot.value() == 1 * 10 + 2 * 20 + 6 * 30 + 3 * 40
    assert dot.value(np.array([1, 3])) == 2 * 20 + 3 * 40
    assert dot.value(np.array([3, 3, 0])) == 3 * 40 + 3 * 40 + 1 * 10
    med = ItemStat((a,), np.median)
    assert med.value() == 2.5 and med.value(np.array([0, 2, 2])) == 6.0


# ---- gain_confidence against a plain-Python replica of the bootstrap ---------------------------------


def replica(start, cand, stat, higher, resamples, seed):
    """The share of resamples where the candidate is strictly better, in plain Python loops."""
    n = len(start)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    wins = 0
    for row in idx.tolist():
        s = stat([float(start[i]) for i in row])
        c = stat([float(cand[i]) for i in row])
        wins += (c - s > 1e-12) if higher else (c - s < -1e-12)
    return wins / resamples


@pytest.mark.parametrize("higher", [True, False])
@pytest.mark.parametrize("seed", [0, 5])
def test_gain_confidence_mean_equals_replica(higher, seed):
    rng = np.random.default_rng(123)
    start = rng.normal(50, 10, size=30)
    cand = start + rng.normal(0.5, 3, size=30)  # a small, noisy gain: the share is strictly between 0 and 1
    want = replica(start, cand, statistics.fmean, higher, 400, seed)
    got = gain_confidence(ItemStat((start,)), ItemStat((cand,)), higher_is_better=higher, resamples=400, seed=seed)
    assert 0.0 < want < 1.0
    assert got == want


@pytest.mark.parametrize("higher", [True, False])
def test_gain_confidence_custom_stat_equals_replica(higher):
    rng = np.random.default_rng(7)
    start = rng.normal(0, 1, size=15)
    cand = start + rng.normal(0.2, 1, size=15)
    want = replica(start, cand, statistics.median, higher, 300, 3)
    got = gain_confidence(ItemStat((start,), np.median), ItemStat((cand,), np.median), higher_is_better=higher,
                          resamples=300, seed=3)
    assert 0.0 < want < 1.0
    assert got == want
    # the per-resample path differs from the mean path: the median's share is not the mean's
    assert got != gain_confidence(ItemStat((start,)), ItemStat((cand,)), higher_is_better=higher, resamples=300, seed=3)


def test_gain_confidence_two_array_stat_equals_replica():
    """A pair metric (two arrays per item, as Spearman of cosine against score): the same resampled rows of both."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(11)
    gold = rng.normal(size=25)
    cos_start = gold + rng.normal(0, 1.0, size=25)
    cos_cand = gold + rng.normal(0, 0.8, size=25)

    def sp(cos, y):
        return float(spearmanr(cos, y).statistic)

    idx = np.random.default_rng(0).integers(0, 25, size=(200, 25))
    want = float(np.mean([sp(cos_cand[r], gold[r]) - sp(cos_start[r], gold[r]) > 1e-12 for r in idx]))
    got = gain_confidence(ItemStat((cos_start, gold), sp), ItemStat((cos_cand, gold), sp), resamples=200)
    assert 0.0 < want < 1.0 and got == want


# ---- negative controls ------------------------------------------------------------------------------


def test_identical_candidate_has_no_confidence():
    a = np.random.default_rng(0).normal(size=50)
    assert gain_confidence(ItemStat((a,)), ItemStat((a.copy(),))) == 0.0  # ties never count as wins
    assert gain_confidence(ItemStat((a,)), ItemStat((a.copy(),)), higher_is_better=False) == 0.0
    assert gain_confidence(ItemStat((a,), np.median), ItemStat((a.copy(),), np.median)) == 0.0


@pytest.mark.parametrize("stat", [None, np.median])
def test_uniform_gain_or_loss_and_direction(stat):
    a = np.random.default_rng(1).normal(size=40)
    up, down = ItemStat((a + 1,), stat), ItemStat((a - 1,), stat)
    start = ItemStat((a,), stat)
    assert gain_confidence(start, up) == 1.0
    assert gain_confidence(start, down) == 0.0
    assert gain_confidence(start, up, higher_is_better=False) == 0.0  # lower is better: the roles flip
    assert gain_confidence(start, down, higher_is_better=False) == 1.0


def test_one_better_item_in_200_wins_when_it_is_drawn():
    n, k = 200, 17
    start = np.zeros(n)
    cand = start.copy()
    cand[k] = 1.0
    conf = gain_confidence(ItemStat((start,)), ItemStat((cand,)), resamples=1000, seed=0)
    expected = 1 - (1 - 1 / n) ** n  # ≈ 0.634: the chance that item k is in a resample
    assert 0.55 <= conf <= 0.71 and abs(conf - expected) < 0.05
    drawn = (np.random.default_rng(0).integers(0, n, size=(1000, n)) == k).any(axis=1)
    assert conf == float(np.mean(drawn))  # exactly: a win is a resample holding item k


def test_mismatched_lengths_and_empty():
    with pytest.raises(EmbtuneError, match="3 items for the candidate, 4 for the start"):
        gain_confidence(ItemStat((np.zeros(4),)), ItemStat((np.zeros(3),)))
    assert gain_confidence(ItemStat((np.zeros(0),)), ItemStat((np.zeros(0),))) == 0.0


# ---- the tracker's rule -----------------------------------------------------------------------------


class Scripted:
    """An evaluator whose per-query scores are scripted, one array per call; the metric is their mean."""

    def __init__(self, script, keep_items=True):
        self.script, self.keep_items = [np.asarray(s, dtype=float) for s in script], keep_items

    def evaluate(self, encoder, batch_size=64, precision="fp32"):
        arr = self.script.pop(0)
        if self.keep_items:
            self.items = {"ndcg@10": ItemStat((arr,))}
        return {"ndcg@10": float(arr.mean()), "map": 1.0}


class FakeEncoder:
    def __init__(self):
        self.w = torch.zeros(3)

    def state_dict(self):
        return {"w": self.w}

    def load_state_dict(self, state):
        self.w = state["w"].clone()


BASE = np.full(40, 50.0)
NOISY = BASE + np.r_[np.ones(21), -np.ones(19)]        # mean +0.05: the gain is noise
BETTER = BASE + np.r_[np.ones(36), -np.ones(4)]        # mean +0.8: better on most queries
WORSE = BASE - 0.5


def run_tracker(tmp_path, confidence, script, keep_items=True):
    cfg = make_config(model="m", train_file="t.tsv", output=str(tmp_path / "o"), precision="fp32",
                      select_confidence=confidence, seed=0)
    spec = TaskSpec("dev", "beir", "x", {"ndcg@10": True, "map": True})
    out = tmp_path / f"out-{confidence}-{len(script)}-{keep_items}"
    out.mkdir()
    tracker = EvalTracker(cfg, out, active=True, tasks=[LoadedTask(spec, Scripted(script, keep_items))],
                          metric="dev/ndcg@10", higher_is_better=True)
    tracker.tb = None  # no TensorBoard files needed
    enc = FakeEncoder()
    for i in range(len(script)):
        step = 2 * i
        enc.w = torch.full((3,), float(step))  # the weights of this step
        tracker.evaluate(enc, step)
    return tracker, out


def test_noisy_gain_is_not_selected_with_confidence(tmp_path):
    tracker, out = run_tracker(tmp_path, 0.9, [BASE, NOISY])
    assert tracker.best_step == 0 and tracker.best == 50.0
    assert torch.equal(tracker.best_state["w"], torch.zeros(3))
    start, noisy = tracker.history
    assert "selection_confidence" not in start  # the starting model is not tested against itself
    assert 0.0 < noisy["selection_confidence"] < 0.9
    logged = [json.loads(ln) for ln in (out / "eval_history.jsonl").read_text().splitlines()]
    assert logged[1]["selection_confidence"] == noisy["selection_confidence"]
    m = tracker.finish(FakeEncoder())
    assert m["selected_step"] == 0 and m["evaluations"][1]["selection_confidence"] < 0.9


def test_confident_gain_is_selected(tmp_path):
    tracker, _ = run_tracker(tmp_path, 0.9, [BASE, NOISY, BETTER, WORSE])
    assert tracker.best_step == 4 and tracker.best == pytest.approx(50.8)
    assert torch.equal(tracker.best_state["w"], torch.full((3,), 4.0))
    confs = [h.get("selection_confidence") for h in tracker.history]
    assert confs[0] is None and confs[1] < 0.9 <= confs[2] and confs[3] == 0.0


def test_without_confidence_the_noisy_gain_is_selected(tmp_path):
    """The negative control: the same script with the test off selects the noisy checkpoint."""
    tracker, _ = run_tracker(tmp_path, 0.0, [BASE, NOISY])
    assert tracker.best_step == 2 and tracker.best == pytest.approx(50.05)
    assert all("selection_confidence" not in h for h in tracker.history)


def test_a_metric_without_items_selects_on_value(tmp_path):
    tracker, _ = run_tracker(tmp_path, 0.9, [BASE, NOISY], keep_items=False)
    assert tracker.best_step == 2
    assert all("selection_confidence" not in h for h in tracker.history)


def test_confidence_survives_state_and_restore(tmp_path):
    """A resumed run compares with the same starting items (state() -> JSON -> restore())."""
    full, _ = run_tracker(tmp_path, 0.9, [BASE, NOISY, BETTER])
    part, out = run_tracker(tmp_path, 0.9, [BASE, NOISY])
    state = json.loads(json.dumps(part.state()))
    cfg = make_config(model="m", train_file="t.tsv", output=str(tmp_path / "o"), precision="fp32",
                      select_confidence=0.9, seed=0)
    spec = TaskSpec("dev", "beir", "x", {"ndcg@10": True, "map": True})
    resumed = EvalTracker(cfg, out, active=True, tasks=[LoadedTask(spec, Scripted([BETTER]))], metric="dev/ndcg@10")
    resumed.tb = None
    resumed.restore(state, part.best_state)
    enc = FakeEncoder()
    enc.w = torch.full((3,), 4.0)
    resumed.evaluate(enc, 4)
    assert resumed.best_step == full.best_step == 4
    assert resumed.history[-1]["selection_confidence"] == full.history[-1]["selection_confidence"]


# ---- the evaluators' per-item scores -----------------------------------------------------------------


class VectorEncoder:
    """Fixed random vectors per text (what pair_cosines asks of an encoder)."""

    def __init__(self, texts, seed=0):
        rng = np.random.default_rng(seed)
        self.vec = {t: rng.normal(size=4).astype(np.float32) for t in texts}

    def encode(self, texts, batch_size=64, precision="fp32", normalize=False):
        return np.stack([self.vec[t] for t in texts])


def pair_data(values):
    from embtune.evaluation.pair_eval import PairData

    s1 = [f"left {i}" for i in range(len(values))]
    s2 = [f"right {i}" for i in range(len(values))]
    return PairData("mem", s1, s2, np.asarray(values, dtype=np.float64)), s1 + s2


def test_scored_pair_items_give_the_spearman():
    from scipy.stats import spearmanr

    from embtune.evaluation.pair_eval import ScoredPairEval

    rng = np.random.default_rng(2)
    data, texts = pair_data(rng.uniform(0, 5, size=20))
    ev = ScoredPairEval(data)
    m = ev.evaluate(VectorEncoder(texts))
    items = ev.items["spearman"]
    assert len(items) == 20 and items.value() == pytest.approx(m["spearman"])
    cos, gold = items.arrays
    sub = np.array([0, 3, 3, 5, 9, 12, 19])
    assert items.value(sub) == pytest.approx(100 * spearmanr(cos[sub], gold[sub]).statistic)
    assert items.value(np.array([4, 4, 4])) == 0.0  # one distinct score: no order


def test_binary_pair_items_give_the_ap():
    from sklearn.metrics import average_precision_score

    from embtune.evaluation.pair_eval import BinaryPairEval

    data, texts = pair_data([i % 3 == 0 for i in range(18)])
    ev = BinaryPairEval(data)
    m = ev.evaluate(VectorEncoder(texts, seed=4))
    items = ev.items["ap"]
    assert len(items) == 18 and items.value() == pytest.approx(m["ap"])
    cos, labels = items.arrays
    sub = np.array([0, 1, 2, 3, 3, 7, 10])
    assert items.value(sub) == pytest.approx(100 * average_precision_score(labels[sub], cos[sub]))
    assert items.value(np.array([1, 2, 4])) == 0.0  # no positive in the resample


def test_retrieval_items_average_to_the_metrics(tiny_st):
    from embtune.encoders import load_encoder
    from embtune.evaluation.retrieval import RetrievalTask, evaluate_retrieval
    from embtune.evaluation.tasks import RetrievalEval

    corpus = {f"d{i}": s for i, s in enumerate(SENTENCES)}
    queries = {f"q{i}": s.replace(" is ", " was ") for i, s in enumerate(SENTENCES[:6])}
    qrels = {f"q{i}": {f"d{i}": 1, f"d{(i + 5) % 12}": 2} for i in range(5)}  # q5: no relevant document
    task = RetrievalTask("mem", corpus, queries, qrels)
    enc = load_encoder(str(tiny_st), device="cpu")
    ev = RetrievalEval(task)
    m = ev.evaluate(enc)
    assert set(ev.items) == set(m)
    for k, items in ev.items.items():
        assert len(items) == 5 and items.value() == pytest.approx(m[k]), k
    assert 0 < m["ndcg@10"] < 100
    assert items_of([LoadedTask(TaskSpec("mine", "beir", "x", {}), ev)])["mine/ndcg@10"] is ev.items["ndcg@10"]
    r = evaluate_retrieval(enc, task, per_query=True)
    assert float(np.mean(r["per_query"]["ndcg@10"])) == pytest.approx(r["metrics"]["ndcg@10"])
    assert "per_query" not in evaluate_retrieval(enc, task)


def test_items_of_skips_evaluators_without_items():
    class NoItems:
        pass

    class WithItems:
        items = {"ap": ItemStat((np.zeros(2),))}

    tasks = [LoadedTask(TaskSpec("a", "scored", "x", {}), NoItems()),
             LoadedTask(TaskSpec("b", "binary", "y", {}), WithItems())]
    assert items_of(tasks) == {"b/ap": WithItems.items["ap"]}


# ---- a training run ---------------------------------------------------------------------------------


def write_dev_beir(root):
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": s}) + "\n"
                                               for i, s in enumerate(SENTENCES)), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": s.replace(" is ", " was ")}) + "\n"
                                                for i, s in enumerate(SENTENCES)), encoding="utf-8")
    (root / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{i}\t1\n" for i in range(len(SENTENCES))), encoding="utf-8")
    return root


def test_training_run_records_selection_confidence(tiny_bert, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{s}\t{SENTENCES[(i + 1) % 12]}\n" for i, s in enumerate(SENTENCES)), encoding="utf-8")
    dev = write_dev_beir(tmp_path / "devset")
    from embtune.training import train

    m = train(cfg_for(tiny_bert, pairs, tmp_path / "o", objective="sup-simcse", lr=0.05, eval_steps=2,
                      eval_task=f"beir:{dev}", select_confidence=0.9), progress=False)
    assert m["best_metric"] == "beir:devset/ndcg@10"
    hist = m["evaluations"]
    assert [h["step"] for h in hist] == [0, 2, 4, 6]
    assert "selection_confidence" not in hist[0]
    for h in hist[1:]:
        assert 0.0 <= h["selection_confidence"] <= 1.0
    chosen = next(h for h in hist if h["step"] == m["selected_step"])
    if m["selected_step"] != 0:
        assert chosen["selection_confidence"] >= 0.9
    # the selected value is the best among the eligible ones (the start and those confident enough)
    eligible = [h["beir:devset/ndcg@10"] for h in hist if h["step"] == 0 or h["selection_confidence"] >= 0.9]
    assert m["best_value"] == max(eligible)
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert saved["selected_step"] == m["selected_step"]
    assert [h.get("selection_confidence") for h in saved["evaluations"]] == [h.get("selection_confidence")
                                                                               for h in hist]
    logged = [json.loads(ln) for ln in (tmp_path / "o" / "eval_history.jsonl").read_text().splitlines()]
    assert [h.get("selection_confidence") for h in logged] == [h.get("selection_confidence") for h in hist]


class TwoTasks:
    """A selection task and a guard task, scripted per call (means of the arrays)."""

    def __init__(self, script):
        self.script = list(script)

    def evaluate(self, encoder, batch_size=64, precision="fp32"):
        return {"ndcg@10": float(self.script.pop(0))}


def run_guarded(tmp_path, tolerance, sel, guard, name="g", **options):
    """An EvalTracker over a scripted selection task (``sel``: values, or per-item arrays) and guard task."""
    cfg = make_config(model="m", train_file="t.tsv", output=str(tmp_path / "o"), precision="fp32", seed=0,
                      guard_metric="agree/ndcg@10", guard_tolerance=tolerance, **options)
    select = ItemTask(sel) if isinstance(sel[0], np.ndarray) else TwoTasks(sel)
    tasks = [LoadedTask(TaskSpec("dev", "beir", "x", {"ndcg@10": True}), select),
             LoadedTask(TaskSpec("agree", "beir", "y", {"ndcg@10": True}), TwoTasks(guard))]
    out = tmp_path / f"{name}-{tolerance}-{options.get('guard_waiver', 0)}"
    out.mkdir()
    tracker = EvalTracker(cfg, out, active=True, tasks=tasks, metric="dev/ndcg@10", higher_is_better=True)
    tracker.tb = None
    enc = FakeEncoder()
    for step in range(len(sel)):
        enc.w = torch.full((3,), float(step))
        tracker.evaluate(enc, step)
    return tracker


def test_guard_metric_keeps_a_checkpoint_that_drifted_out(tmp_path):
    # step 1 gains on selection but loses 2.0 on the guard; step 2 gains less and loses 0.3
    tracker = run_guarded(tmp_path, 1.0, sel=[30.0, 33.0, 31.0], guard=[60.0, 58.0, 59.7])
    assert tracker.best_step == 2 and tracker.history[1]["guard_lost"] == pytest.approx(2.0)
    assert "guard_lost" not in tracker.history[2]
    # negative control: a tolerance that admits the drift keeps the higher selection value
    assert run_guarded(tmp_path, 5.0, sel=[30.0, 33.0, 31.0], guard=[60.0, 58.0, 59.7]).best_step == 1


class ItemTask:
    """A selection task scripted per call as per-item scores (its value their mean, ×100)."""

    def __init__(self, script):
        self.script = [np.asarray(a, dtype=float) for a in script]
        self.items = {}

    def evaluate(self, encoder, batch_size=64, precision="fp32"):
        a = self.script.pop(0)
        self.items = {"ndcg@10": ItemStat((a * 100,))}
        return {"ndcg@10": float(a.mean() * 100)}


def run_waiver(tmp_path, waiver, sel, guard, name="w"):
    return run_guarded(tmp_path, 1.0, sel, guard, name=name, select_confidence=0.9, guard_waiver=waiver)


def test_guard_waiver_keeps_a_near_certain_gain_and_only_that(tmp_path):
    n = 40
    start = np.zeros(n)
    certain = np.full(n, 0.5)  # every item better: bootstrap confidence 1.0
    # 12 items gain 1.0, 8 lose 1.0, the rest tie: mean +0.1, better on 0.785 of the bootstrap resamples
    shaky = np.r_[np.ones(12), -np.ones(8), np.zeros(n - 20)]
    sel = [start, certain, shaky]
    guard = [60.0, 58.0, 58.0]  # both checkpoints lose 2.0 agreement, beyond the tolerance 1.0
    t = run_waiver(tmp_path, 0.99, sel, guard)
    assert t.history[1]["selection_confidence"] == 1.0 and t.history[1]["guard_waived"] is True
    assert t.history[2]["selection_confidence"] < 0.99 and "guard_waived" not in t.history[2]
    assert t.history[2]["guard_lost"] == pytest.approx(2.0)
    assert t.best_step == 1
    # negative control: without the waiver the guard vetoes both, the start is kept
    t0 = run_waiver(tmp_path, 0.0, [start, certain, shaky], guard)
    assert t0.best_step == 0 and "guard_waived" not in t0.history[1]
    # within the tolerance nothing is waived: the guard did not veto
    t1 = run_waiver(tmp_path, 0.99, [start, certain, shaky], [60.0, 59.5, 59.5], name="within")
    assert t1.best_step == 1 and "guard_waived" not in t1.history[1]


def test_guard_waiver_needs_a_guard_metric():
    with pytest.raises(EmbtuneError, match="--guard-waiver"):
        make_config(model="m", train_file="t.tsv", output="o", eval_task="beir:x", eval_steps=1,
                    guard_waiver=0.99).eval_specs()


def test_guard_metric_must_name_a_metric_of_the_tasks():
    with pytest.raises(EmbtuneError, match="--guard-metric 'nope/ndcg@10'"):
        make_config(model="m", train_file="t.tsv", output="o", eval_task="beir:x", eval_steps=1,
                    guard_metric="nope/ndcg@10").eval_specs()


# ---- --watch-task: scored for the record, never selected on ------------------------------------------


def test_watch_task_is_recorded_and_never_selects(tiny_bert, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{s}\t{SENTENCES[(i + 1) % 12]}\n" for i, s in enumerate(SENTENCES)), encoding="utf-8")
    dev = write_dev_beir(tmp_path / "devset")
    held = write_dev_beir(tmp_path / "heldset")
    # a held-out folder is read with its test qrels: here they differ from its dev qrels
    (held / "qrels" / "dev.tsv").rename(held / "qrels" / "test.tsv")
    from embtune.training import train

    common = dict(objective="sup-simcse", lr=0.05, eval_steps=2, eval_task=f"beir:{dev}")
    plain = train(cfg_for(tiny_bert, pairs, tmp_path / "a", **common), progress=False)
    watched = train(cfg_for(tiny_bert, pairs, tmp_path / "b", watch_task=f"held=beir:{held}", **common), progress=False)
    assert all("held/ndcg@10" in h for h in watched["evaluations"])
    assert not any("held/ndcg@10" in h for h in plain["evaluations"])
    # the same runs, the same selection: the watched task only adds columns
    assert watched["selected_step"] == plain["selected_step"] and watched["best_value"] == plain["best_value"]
    assert [h["beir:devset/ndcg@10"] for h in watched["evaluations"]] == [h["beir:devset/ndcg@10"]
                                                                         for h in plain["evaluations"]]
    # same texts and qrels as the dev task: the same values (a control that the watched task is really scored)
    assert [h["held/ndcg@10"] for h in watched["evaluations"]] == pytest.approx(
        [h["beir:devset/ndcg@10"] for h in watched["evaluations"]], abs=1e-6)


def test_watch_task_cannot_select_or_share_a_name():
    base = dict(model="m", train_file="t.tsv", output="o", eval_task="beir:x", eval_steps=1)
    with pytest.raises(EmbtuneError, match="--metric-for-best 'held/ndcg@10'"):
        make_config(**base, watch_task="held=beir:y", metric_for_best="held/ndcg@10").eval_specs()
    with pytest.raises(EmbtuneError, match="--watch-task: 'beir:x' is also an eval task's name"):
        make_config(**base, watch_task="beir:x").eval_specs()
    with pytest.raises(EmbtuneError, match="--watch-task: no evaluation"):
        make_config(model="m", train_file="t.tsv", output="o", watch_task="beir:y").validate()


def run_guard_confidence(tmp_path, guard_confidence, sel, guard, name="gc"):
    """An EvalTracker whose selection and guard tasks are both scripted per-item scores."""
    cfg = make_config(model="m", train_file="t.tsv", output=str(tmp_path / "o"), precision="fp32", seed=0,
                      guard_metric="agree/ndcg@10", guard_tolerance=0.0, guard_confidence=guard_confidence)
    tasks = [LoadedTask(TaskSpec("dev", "beir", "x", {"ndcg@10": True}), TwoTasks(sel)),
             LoadedTask(TaskSpec("agree", "beir", "y", {"ndcg@10": True}), ItemTask(guard))]
    out = tmp_path / f"{name}-{guard_confidence}"
    out.mkdir()
    tracker = EvalTracker(cfg, out, active=True, tasks=tasks, metric="dev/ndcg@10", higher_is_better=True)
    tracker.tb = None
    enc = FakeEncoder()
    for step in range(len(sel)):
        enc.w = torch.full((3,), float(step))
        tracker.evaluate(enc, step)
    return tracker


def test_guard_confidence_vetoes_only_a_loss_it_shows(tmp_path):
    n = 40
    start = np.full(n, 0.5)
    # 8 items lose 0.1, 6 gain 0.1: the guard falls 0.5 (x100) but the start is better in only part of the resamples
    noisy = start + np.r_[-0.1 * np.ones(8), 0.1 * np.ones(6), np.zeros(n - 14)]
    certain = start - 0.01  # every item lower: a loss shown with confidence 1.0
    t = run_guard_confidence(tmp_path, 0.9, sel=[30.0, 33.0, 34.0], guard=[start, noisy, certain])
    assert t.history[1]["guard_lost"] == pytest.approx(0.5) and t.history[1]["guard_loss_confidence"] < 0.9
    assert t.history[2]["guard_loss_confidence"] == 1.0
    assert t.best_step == 1  # step 2 scored higher but its loss is shown: vetoed
    # negative control: without --guard-confidence any loss beyond the tolerance (0) vetoes: the start is kept
    t0 = run_guard_confidence(tmp_path, 0.0, sel=[30.0, 33.0, 34.0], guard=[start, noisy, certain])
    assert t0.best_step == 0 and "guard_loss_confidence" not in t0.history[1]


def test_guard_confidence_needs_a_guard_metric():
    with pytest.raises(EmbtuneError, match="--guard-confidence"):
        make_config(model="m", train_file="t.tsv", output="o", eval_task="stsb-dev", guard_confidence=0.9)
