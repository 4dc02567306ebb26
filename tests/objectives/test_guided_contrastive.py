"""Guided (GISTEmbed) contrastive loss: InfoNCE with the candidates the guide ranks at least near the
positive left out, against the formula computed by hand with plain Python math."""

from __future__ import annotations

import math

import pytest
import torch

from embtune.config import make_config
from embtune.errors import EmbtuneError
from embtune.objectives import GuidedContrastive
from embtune.objectives.guided_contrastive import guided_info_nce
from embtune.objectives.infonce import info_nce
from embtune.training import train
from tests.conftest import SENTENCES


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def hand_guided(q, c, gq, gc, tau, margin):
    """(loss, masked): mean_i -log softmax over the unmasked candidates of query i, at its positive i."""
    total, masked = 0.0, 0
    for i in range(len(q)):
        own = _cos(gq[i], gc[i])
        keep = [j for j in range(len(c)) if j == i or not _cos(gq[i], gc[j]) > own - margin]
        masked += len(c) - len(keep)
        den = sum(math.exp(_cos(q[i], c[j]) / tau) for j in keep)
        total += -math.log(math.exp(_cos(q[i], c[i]) / tau) / den)
    return total / len(q), masked


Q = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
P = [[0.8, 0.6], [0.0, 1.0], [-1.0, 1.0]]
# the guide: query 2's positive (guide cosine 0.614) is below candidate 0 (0.894), which the student also
# finds close to query 2 (a false negative that matters) -> exactly (2, 0) is masked; queries 0 and 1 have
# guide cosine 1 to their positives, so nothing can exceed it
GQ = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.5]]
GC = [[1.0, 0.0], [0.0, 1.0], [0.2, 1.0]]


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0])
def test_guided_info_nce_masks_exactly_one_known_candidate(tau):
    want, want_masked = hand_guided(Q, P, GQ, GC, tau, 0.0)
    assert want_masked == 1
    loss, masked = guided_info_nce(_t(Q), _t(P), _t(GQ), _t(GC), tau, 0.0)
    assert masked == 1
    assert loss.item() == pytest.approx(want, rel=1e-6)
    # the mask matters: plain InfoNCE over the same candidates is another value
    assert loss.item() != pytest.approx(info_nce(_t(Q), _t(P), tau).item(), rel=1e-4)


def test_guided_info_nce_with_a_margin_masks_candidates_just_below_the_positive():
    # guide cosines: query 0 -> (1 own, 0, 0.196), query 1 -> (0, 1 own, 0.981),
    # query 2 -> (0.894, 0.447, 0.614 own): each margin step brings in the next candidates below the positive
    for margin, want_masked in [(-0.5, 0), (0.0, 1), (0.05, 2), (0.2, 3), (0.9, 4), (1.5, 6)]:
        want, hm = hand_guided(Q, P, GQ, GC, 0.5, margin)
        loss, masked = guided_info_nce(_t(Q), _t(P), _t(GQ), _t(GC), 0.5, margin)
        assert masked == hm == want_masked, margin
        assert loss.item() == pytest.approx(want, rel=1e-6)


def test_guided_info_nce_with_nothing_masked_is_plain_infonce():
    # a very negative margin: own − margin > 1 >= every guide cosine, so no candidate is masked
    loss, masked = guided_info_nce(_t(Q), _t(P), _t(GQ), _t(GC), 0.5, margin=-10.0)
    assert masked == 0
    assert loss.item() == pytest.approx(info_nce(_t(Q), _t(P), 0.5, hard_negatives=None).item(), rel=1e-9)
    # the same with a guide that agrees with the student's own ranking exactly (the student as guide)
    loss2, masked2 = guided_info_nce(_t(Q), _t(Q), _t(Q), _t(Q), 0.5, margin=0.0)
    assert masked2 == 0
    assert loss2.item() == pytest.approx(info_nce(_t(Q), _t(Q), 0.5).item(), rel=1e-9)


def test_guided_info_nce_with_a_huge_margin_masks_every_other_candidate():
    loss, masked = guided_info_nce(_t(Q), _t(P), _t(GQ), _t(GC), 0.5, margin=10.0)
    assert masked == 3 * 2
    assert loss.item() == pytest.approx(0.0, abs=1e-9)  # only the positive is left in each softmax
    # and with hard negatives: N x (M − 1) masked
    loss, masked = guided_info_nce(_t(Q), _t(P + Q), _t(GQ), _t(GC + GQ), 0.5, margin=10.0)
    assert masked == 3 * 5 and loss.item() == pytest.approx(0.0, abs=1e-9)


def test_the_positive_is_never_masked_even_when_another_candidate_ties_it():
    gc = [[1.0, 1.0], [1.0, 1.0], [1.0, 0.1]]  # candidate 1 is, for the guide, candidate 0 itself
    gq = [[1.0, 1.0], [0.0, 1.0], [1.0, 0.1]]  # query 0's guide cosine 1 to both 0 and 1
    # margin 0: a tie is not *above* the positive, nothing is masked for query 0
    loss, masked = guided_info_nce(_t(Q), _t(P), _t(gq), _t(gc), 0.5, 0.0)
    want, want_masked = hand_guided(Q, P, gq, gc, 0.5, 0.0)
    assert masked == want_masked == 0 and loss.item() == pytest.approx(want, rel=1e-6)
    # a small margin: candidate 1 is removed for query 0, and candidate 0 for query 1 (the guide's twin of
    # query 1's positive); the positives themselves stay, so the loss is finite
    loss, masked = guided_info_nce(_t(Q), _t(P), _t(gq), _t(gc), 0.5, 0.01)
    want, want_masked = hand_guided(Q, P, gq, gc, 0.5, 0.01)
    assert masked == want_masked == 2 and math.isfinite(loss.item())
    assert loss.item() == pytest.approx(want, rel=1e-6)
    # a guide that scores every candidate the same as the positive: everything else masked, loss 0
    same = [[1.0, 0.0]] * 3
    loss, masked = guided_info_nce(_t(Q), _t(P), _t(same), _t(same), 0.5, 0.01)
    assert masked == 6 and loss.item() == pytest.approx(0.0, abs=1e-9)


def test_guided_info_nce_gradient_is_finite_with_masked_candidates():
    q = _t(Q).requires_grad_()
    c = _t(P).requires_grad_()
    loss, masked = guided_info_nce(q, c, _t(GQ), _t(GC), 0.5, 0.3)
    loss.backward()
    assert masked == 3 and torch.isfinite(q.grad).all() and torch.isfinite(c.grad).all()


def test_guided_info_nce_errors():
    with pytest.raises(EmbtuneError, match="2 candidates for 3 queries"):
        guided_info_nce(_t(Q), _t(P[:2]), _t(GQ), _t(GC[:2]), 0.5)


# ------------------------------------------------------------------------------------------- the objective


class _Batch:
    def __init__(self, texts):
        self.texts = texts


def test_objective_loss_on_triples_uses_positives_then_hard_negatives():
    # rows (q_i, p_i, n_i); for the guide, n1 is the same text as q1 (a false negative), so it is masked
    neg = [[0.0, -1.0], [0.1, 1.0], [1.0, -1.0]]
    g_neg = [[0.0, -1.0], [0.0, 1.0], [1.0, -2.0]]
    obj = GuidedContrastive("t", temperature=0.5, guide_margin=0.0)
    names = ["q0", "q1", "q2", "p0", "p1", "p2", "n0", "n1", "n2"]
    obj.targets = torch.tensor(GQ + GC + g_neg)
    obj.row = {t: i for i, t in enumerate(names)}
    batch = _Batch([("q0", "p0", "n0"), ("q1", "p1", "n1"), ("q2", "p2", "n2")])
    emb = _t([Q, P, neg])  # (V=3, N=3, d): the query, positive and hard-negative views
    want, want_masked = hand_guided(Q, P + neg, GQ, GC + g_neg, 0.5, 0.0)
    got = obj.loss(emb, batch).item()
    assert got == pytest.approx(want, rel=1e-6)
    # (2, 0) as in the pairs test; n1's guide cosine to q1 is 1, tied with p1: not above it, kept
    assert obj.masked == want_masked == 1
    obj.margin = 0.01
    obj.loss(emb, batch)
    assert obj.masked == 1 + 2 == 1 + hand_guided(Q, P + neg, GQ, GC + g_neg, 0.5, 0.01)[1]  # + (2, 0), (1, n1)
    # the candidates are not interleaved: the hand loss with (p0, n0, p1, n1, ...) differs
    inter = [P[0], neg[0], P[1], neg[1], P[2], neg[2]]
    assert got != pytest.approx(hand_guided(Q, inter, GQ, [GC[0], g_neg[0], GC[1], g_neg[1], GC[2], g_neg[2]],
                                            0.5, 0.0)[0], rel=1e-4)


def test_objective_loss_on_pairs_and_views():
    obj = GuidedContrastive("t", temperature=0.5)
    obj.targets = torch.tensor(GQ + GC)
    obj.row = {t: i for i, t in enumerate(["q0", "q1", "q2", "p0", "p1", "p2"])}
    got = obj.loss(_t([Q, P]), _Batch([("q0", "p0"), ("q1", "p1"), ("q2", "p2")])).item()
    assert got == pytest.approx(hand_guided(Q, P, GQ, GC, 0.5, 0.0)[0], rel=1e-6) and obj.masked == 1
    fake = type("B", (), {"ids": [([1], [2], [3]), ([4], [5], [6])],
                          "column": lambda self, c: [ex[c] for ex in self.ids]})()
    assert obj.views(fake) == [[[1], [4]], [[2], [5]], [[3], [6]]]


def test_objective_setup_caches_each_distinct_text_once():
    from types import SimpleNamespace

    obj = GuidedContrastive("t")
    seen = []
    obj.cache.embeddings = lambda texts: (seen.append(list(texts)), torch.randn(len(texts), 4))[1]
    obj.setup(None, SimpleNamespace(path="f.tsv", examples=[("a", "b"), ("b", "c"), ("c", "a")]))
    assert seen == [["a", "b", "c"]] and obj.row == {"a": 0, "b": 1, "c": 2} and obj.targets.shape == (3, 4)


def test_objective_bad_inputs():
    with pytest.raises(EmbtuneError, match="--teacher"):
        GuidedContrastive(None)
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(EmbtuneError, match="--guide-margin"):
            GuidedContrastive("t", guide_margin=bad)
    with pytest.raises(EmbtuneError, match="temperature"):
        GuidedContrastive("t", temperature=0)


@pytest.fixture
def pair_file(tmp_path):
    p = tmp_path / "pairs.tsv"
    rows = [f"{SENTENCES[i]}\t{SENTENCES[(i + 1) % len(SENTENCES)]}" for i in range(len(SENTENCES))]
    p.write_text("sent0\tsent1\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return p


def test_training_smoke(tiny_bert, tiny_st, pair_file, tmp_path):
    cfg = make_config(model=str(tiny_bert), objective="guided", teacher=str(tiny_st), train_file=str(pair_file),
                      output=str(tmp_path / "o"), batch_size=4, max_steps=2, guide_margin=0.05, lr=1e-3,
                      max_seq_length=16, seed=0, precision="fp32")
    m = train(cfg, progress=False)
    assert m["steps"] == 2 and len(m["losses"]) == 2
    assert all(math.isfinite(v) and v >= 0 for v in m["losses"])


def test_training_rejects_a_single_text_file(tiny_st, tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    cfg = make_config(model=str(tiny_st), objective="guided", teacher=str(tiny_st), train_file=str(p),
                      output=str(tmp_path / "o"), batch_size=4, max_steps=2, precision="fp32")
    with pytest.raises(EmbtuneError, match=r"u\.txt.*'guided' expects columns"):
        train(cfg, progress=False)
