"""Listwise distillation (in-batch KL of the teacher's and the student's rankings) and its cluster batches,
against the formulas computed by hand with plain Python math."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embtune.config import make_config
from embtune.errors import EmbtuneError
from embtune.objectives import ListwiseDistill
from embtune.objectives.listwise_distill import cluster_batches, listwise_kl, teacher_neighbours
from embtune.training import train
from tests.conftest import SENTENCES


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def hand_kl(s, t, tau_s, tau_t, include_diagonal=False):
    """mean_i KL(p_i || q_i), p from the teacher's cosines / τ_t, q from the student's / τ_s, over j != i."""
    total = 0.0
    for i in range(len(s)):
        others = [j for j in range(len(s)) if include_diagonal or j != i]
        q = _softmax([_cos(s[i], s[j]) / tau_s for j in others])
        p = _softmax([_cos(t[i], t[j]) / tau_t for j in others])
        total += sum(pk * (math.log(pk) - math.log(qk)) for pk, qk in zip(p, q))
    return total / len(s)


S4 = [[1.0, 0.0], [0.6, 0.8], [-0.2, 1.0], [1.0, -0.5]]
T4 = [[1.0, 0.2], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.3]]


def _deg(*angles, norms=None):
    norms = norms or [1.0] * len(angles)
    return [[r * math.cos(math.radians(a)), r * math.sin(math.radians(a))] for a, r in zip(angles, norms)]


# ---------------------------------------------------------------------------------------------- listwise_kl


@pytest.mark.parametrize("tau_s,tau_t", [(0.5, 0.2), (0.1, 1.0), (1.0, 1.0)])
def test_listwise_kl_matches_hand_computation(tau_s, tau_t):
    got = listwise_kl(torch.tensor(S4, dtype=torch.float64), torch.tensor(T4, dtype=torch.float64), tau_s, tau_t)
    assert got.item() == pytest.approx(hand_kl(S4, T4, tau_s, tau_t), rel=1e-5)


def test_listwise_kl_student_of_other_width():
    # a 3-d student and a 2-d teacher of the same 4 texts: only the B x B similarities meet
    s3 = [[1.0, 0.0, 0.5], [0.2, 1.0, 0.0], [0.0, 0.3, 1.0], [1.0, 1.0, 1.0]]
    got = listwise_kl(torch.tensor(s3), torch.tensor(T4), 0.3, 0.7).item()
    assert got == pytest.approx(hand_kl(s3, T4, 0.3, 0.7), rel=1e-5)


def test_listwise_kl_is_zero_when_student_equals_teacher():
    t = torch.tensor(T4)
    assert listwise_kl(t, t.clone(), 0.2, 0.2).item() == pytest.approx(0.0, abs=1e-6)
    # the same cosines but other temperatures: the distributions differ, so the loss does too
    assert listwise_kl(t, t.clone(), 0.2, 1.0).item() > 1e-3


def test_listwise_kl_positive_when_student_ranking_is_reversed():
    teacher = _deg(0, 30, 90)  # row 0: 1 nearer than 2
    student = _deg(0, 90, 30)  # row 0: 2 nearer than 1 (every row's order of its two others reversed)
    same = listwise_kl(torch.tensor(teacher), torch.tensor(teacher), 0.1, 0.1).item()
    rev = listwise_kl(torch.tensor(student), torch.tensor(teacher), 0.1, 0.1).item()
    assert same == pytest.approx(0.0, abs=1e-6)
    assert rev > 0.1 and rev != pytest.approx(same, abs=1e-3)
    assert rev == pytest.approx(hand_kl(student, teacher, 0.1, 0.1), rel=1e-5)


def test_listwise_kl_leaves_the_diagonal_out_and_depends_on_cosines_only():
    s, t = torch.tensor(S4), torch.tensor(T4)
    base = listwise_kl(s, t, 0.5, 0.2).item()
    # the value is the off-diagonal formula, not the one with the self-similarity (1/τ) in both softmaxes
    assert base == pytest.approx(hand_kl(S4, T4, 0.5, 0.2), rel=1e-5)
    assert base != pytest.approx(hand_kl(S4, T4, 0.5, 0.2, include_diagonal=True), rel=1e-3)
    # scaling rows changes no cosine: the same loss
    scale = torch.tensor([[3.0], [0.25], [7.0], [1.5]])
    assert listwise_kl(s * scale, t * scale.flip(0), 0.5, 0.2).item() == pytest.approx(base, rel=1e-5)


def test_listwise_kl_changes_when_the_teachers_order_of_two_neighbours_flips():
    # control for the test above: what the loss *does* see is the teacher's order of the other texts
    teacher = _deg(0, 20, 60, 150)       # row 0: 1 (20°) before 2 (60°)
    flipped = _deg(0, 60, 20, 150)       # the same angles, 1 and 2 swapped
    student = torch.tensor(teacher)
    assert listwise_kl(student, torch.tensor(teacher), 0.1, 0.1).item() == pytest.approx(0.0, abs=1e-6)
    got = listwise_kl(student, torch.tensor(flipped), 0.1, 0.1).item()
    assert got > 0.05
    assert got == pytest.approx(hand_kl(teacher, flipped, 0.1, 0.1), rel=1e-5)


def test_listwise_kl_gradient_is_finite_and_only_the_student_gets_one():
    s = torch.tensor(S4, requires_grad=True)
    t = torch.tensor(T4, requires_grad=True)
    loss = listwise_kl(s, t.detach(), 0.05, 0.05)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


def test_listwise_kl_errors():
    with pytest.raises(EmbtuneError, match="at least 3"):
        listwise_kl(torch.randn(2, 4), torch.randn(2, 4), 0.1, 0.1)
    with pytest.raises(EmbtuneError, match="4 student rows for 5 teacher rows"):
        listwise_kl(torch.randn(4, 4), torch.randn(5, 4), 0.1, 0.1)
    listwise_kl(torch.randn(3, 4), torch.randn(3, 8), 0.1, 0.1)  # 3 rows, other widths: fine


# --------------------------------------------------------------------------------------- teacher_neighbours


def test_teacher_neighbours_by_hand():
    # angles 0, 10, 25, 90, 95, 200 degrees with other norms (cosine: the norms do not matter)
    emb = torch.tensor(_deg(0, 10, 25, 90, 95, 200, norms=[1.0, 5.0, 0.3, 2.0, 1.0, 9.0]))
    nb = teacher_neighbours(emb, 2)
    assert nb.shape == (6, 2) and nb.dtype == np.int64
    assert nb.tolist() == [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2], [4, 3]]
    for i, row in enumerate(nb):
        assert i not in row


def test_teacher_neighbours_never_include_the_row_itself_even_with_duplicates():
    # rows 0, 1, 2 identical: row 2's top scores tie with row 0 and 1 (ties by the lower index, itself last)
    emb = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.1]])
    nb = teacher_neighbours(emb, 2)
    assert sorted(nb[2].tolist()) == [0, 1] and sorted(nb[0].tolist()) == [1, 2] and sorted(nb[1].tolist()) == [0, 2]
    for i, row in enumerate(nb):
        assert i not in row and len(set(row.tolist())) == 2


def test_teacher_neighbours_k_is_cut_to_the_other_rows():
    nb = teacher_neighbours(torch.tensor(_deg(0, 40, 100)), 10)
    assert nb.shape == (3, 2)
    assert nb.tolist() == [[1, 2], [0, 2], [1, 0]]


# ----------------------------------------------------------------------------------------- cluster_batches


def _groups(n_groups=4, size=4):
    """neighbours of n_groups disjoint groups: each text's neighbours are the other texts of its group."""
    nb = []
    for i in range(n_groups * size):
        g = i // size
        nb.append([j for j in range(g * size, (g + 1) * size) if j != i])
    return np.array(nb, dtype=np.int64)


def _random_neighbours(n=64, d=8, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return teacher_neighbours(torch.randn(n, d, generator=g), k)


def _co_occurrence(batches, nb):
    """Fraction of (text, one of its neighbours) pairs of a batch whose neighbour is in the same batch."""
    hit = total = 0
    for b in batches:
        members = set(b)
        for i in b:
            hit += sum(int(j) in members for j in nb[i])
            total += len(nb[i])
    return hit / total


@pytest.mark.parametrize("make_nb,batch_size,cluster_size", [(_groups, 8, 4), (_random_neighbours, 16, 4),
                                                            (_random_neighbours, 10, 3)])
def test_cluster_batches_structure(make_nb, batch_size, cluster_size):
    nb = make_nb()
    n = len(nb)
    batches = cluster_batches(nb, batch_size, cluster_size, seed=3, epoch=0)
    assert batches
    for b in batches:
        assert len(set(b)) == len(b)  # distinct texts: in-batch negatives are other texts
        assert all(0 <= i < n for i in b)
    assert all(len(b) == batch_size for b in batches[:-1])
    assert 3 <= len(batches[-1]) <= batch_size
    assert set().union(*map(set, batches)) == set(range(n))  # every text was an anchor (or in a batch) this epoch
    # a batch's first text is an anchor, started in an empty batch: all its neighbours are there with it
    for b in batches:
        assert set(nb[b[0]][: cluster_size - 1].tolist()) <= set(b)


def test_cluster_batches_keep_whole_clusters_together():
    nb = _groups(4, 4)
    batches = cluster_batches(nb, 8, 4, seed=0, epoch=0)
    for b in batches:  # disjoint groups of 4, batches of 8: every batch is exactly two whole groups
        groups = {i // 4 for i in b}
        assert len(b) == 8 and len(groups) == 2
        assert sorted(b) == sorted(j for g in groups for j in range(4 * g, 4 * g + 4))
    assert _co_occurrence(batches, nb) == 1.0


def test_cluster_batches_cut_the_cluster_to_the_batch_size():
    nb = _groups(4, 4)
    for b in cluster_batches(nb, 6, 4, seed=1, epoch=0)[:-1]:
        assert len(b) == 6
        assert len({i // 4 for i in b[:4]}) == 1  # the first cluster whole, the next one cut to 2


def test_cluster_batches_are_reproducible_and_reshuffled_per_epoch():
    nb = _random_neighbours()
    a = cluster_batches(nb, 16, 4, seed=5, epoch=2)
    assert a == cluster_batches(nb, 16, 4, seed=5, epoch=2)
    assert a != cluster_batches(nb, 16, 4, seed=5, epoch=3)
    assert a != cluster_batches(nb, 16, 4, seed=6, epoch=2)
    assert [sorted(b) for b in a] != [sorted(b) for b in cluster_batches(nb, 16, 4, seed=5, epoch=3)]


def test_cluster_batches_bring_neighbours_together_more_than_random_batches():
    nb = _random_neighbours(n=64, k=3)
    clustered = cluster_batches(nb, 16, 4, seed=0, epoch=0)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(nb), generator=g).tolist()
    shuffled = [order[i : i + 16] for i in range(0, len(order), 16)]  # plain shuffled batches of 16
    c, r = _co_occurrence(clustered, nb), _co_occurrence(shuffled, nb)
    assert r < 0.35 and c > 0.5 and c > 2 * r  # random: about 15/63 of the neighbours share a batch


def test_cluster_batches_drop_a_final_batch_of_fewer_than_3_texts():
    nb = np.zeros((10, 0), dtype=np.int64)  # no neighbours: every cluster is its anchor alone
    batches = cluster_batches(nb, 4, 2, seed=0, epoch=0)
    assert [len(b) for b in batches] == [4, 4]  # 4 + 4 + 2: the last two texts make no batch
    nb = np.zeros((11, 0), dtype=np.int64)
    assert [len(b) for b in cluster_batches(nb, 4, 2, seed=0, epoch=0)] == [4, 4, 3]


# ------------------------------------------------------------------------------------------- the objective


class _Batch:
    def __init__(self, texts):
        self.texts = texts


def test_objective_loss_uses_the_teachers_rows_of_the_batch_texts():
    obj = ListwiseDistill("t", temperature=0.5, teacher_temperature=0.2, cluster_size=2, student_neighbours=0)
    obj.targets = torch.tensor(T4)
    obj.row = {"a": 0, "b": 1, "c": 2, "d": 3}
    batch = _Batch([("c",), ("a",), ("d",), ("b",)])  # another order than the teacher's rows
    order = [2, 0, 3, 1]
    got = obj.loss(torch.tensor(S4).unsqueeze(0), batch).item()
    assert got == pytest.approx(hand_kl(S4, [T4[i] for i in order], 0.5, 0.2), rel=1e-5)
    fake = type("B", (), {"ids": [([1],), ([2],), ([3],)], "column": lambda self, c: [ex[c] for ex in self.ids]})()
    assert obj.views(fake) == [[[1], [2], [3]]]


def test_objective_bad_inputs():
    from types import SimpleNamespace

    with pytest.raises(EmbtuneError, match="--teacher"):
        ListwiseDistill(None)
    for bad in (1, True, 2.5):
        with pytest.raises(EmbtuneError, match="--cluster-size"):
            ListwiseDistill("t", cluster_size=bad)
    with pytest.raises(EmbtuneError, match="temperature"):
        ListwiseDistill("t", teacher_temperature=0)
    with pytest.raises(EmbtuneError, match="setup"):
        ListwiseDistill("t").make_batches(None, 8, 0, 0)
    for bad in (-1, 2, 1.5):
        with pytest.raises(EmbtuneError, match="--student-neighbours"):
            ListwiseDistill("t", cluster_size=2, student_neighbours=bad)
    obj = ListwiseDistill("t", cluster_size=2, student_neighbours=0)
    obj.cache.embeddings = lambda texts: torch.randn(len(texts), 4)
    with pytest.raises(EmbtuneError, match="f.txt: 2 text"):
        obj.setup(None, SimpleNamespace(path="f.txt", examples=[("a",), ("b",)]))
    obj.setup(None, SimpleNamespace(path="f.txt", examples=[("a",), ("b",), ("c",)]))
    assert obj.neighbours.shape == (3, 1) and obj.row == {"a": 0, "b": 1, "c": 2}


@pytest.fixture
def unsup_file(tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return p


def test_training_smoke(tiny_bert, tiny_st, unsup_file, tmp_path):
    cfg = make_config(model=str(tiny_bert), objective="listwise-distill", teacher=str(tiny_st),
                      train_file=str(unsup_file), output=str(tmp_path / "o"), batch_size=8, max_steps=2,
                      cluster_size=4, teacher_temperature=0.1, lr=1e-3, max_seq_length=16, seed=0,
                      precision="fp32")
    m = train(cfg, progress=False)
    assert m["steps"] == 2 and len(m["losses"]) == 2
    assert all(math.isfinite(v) and v >= 0 for v in m["losses"])
    assert (tmp_path / "o").is_dir()


def test_training_rejects_a_repeated_text(tiny_st, tmp_path):
    p = tmp_path / "dup.txt"
    p.write_text("\n".join(SENTENCES + [SENTENCES[3]]) + "\n", encoding="utf-8")
    cfg = make_config(model=str(tiny_st), objective="listwise-distill", teacher=str(tiny_st), train_file=str(p),
                      output=str(tmp_path / "o"), batch_size=8, max_steps=2, cluster_size=4, precision="fp32")
    with pytest.raises(EmbtuneError, match=r"dup\.txt.*distinct texts.*1 repeat"):
        train(cfg, progress=False)


def test_merge_neighbours_takes_distinct_indices_in_order():
    from embtune.objectives.listwise_distill import merge_neighbours

    teacher = np.array([[1, 2, 3, 4], [0, 2, 3, 4]])
    student = np.array([[2, 5, 6, 7], [3, 4, 5, 6]])
    # 2 of the teacher's, then the student's, then the teacher's next ones fill in where the two overlap
    out = merge_neighbours([teacher[:, :2], student, teacher[:, 2:]], 4)
    assert out.tolist() == [[1, 2, 5, 6], [0, 2, 3, 4]]


class _Own:
    """A starting model whose neighbours differ from the teacher's: text i is nearest to text i+1 (mod n)."""

    def encode(self, texts, batch_size=128, normalize=True, precision="fp32"):
        n = len(texts)
        ang = np.arange(n) * (2 * np.pi / n)
        return np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)


def test_clusters_hold_the_starting_models_own_neighbours():
    from types import SimpleNamespace

    texts = [f"t{i}" for i in range(12)]
    obj = ListwiseDistill("t", cluster_size=4, student_neighbours=2, precision="fp32")
    g = torch.Generator().manual_seed(0)
    obj.cache.embeddings = lambda t: torch.randn(len(t), 8, generator=g)
    obj.setup(_Own(), SimpleNamespace(path="f.txt", examples=[(t,) for t in texts]))
    teacher_nn = teacher_neighbours(obj.targets, 3)
    for i, row in enumerate(obj.neighbours):
        assert row[0] == teacher_nn[i][0]  # the teacher's nearest first
        assert {(i + 1) % 12, (i - 1) % 12} <= set(row.tolist())  # then the starting model's two nearest
    # negative control: without student neighbours the clusters are the teacher's alone
    plain = ListwiseDistill("t", cluster_size=4, student_neighbours=0)
    plain.cache.embeddings = lambda t: obj.targets
    plain.setup(None, SimpleNamespace(path="f.txt", examples=[(t,) for t in texts]))
    assert plain.neighbours.tolist() == teacher_nn.tolist()
