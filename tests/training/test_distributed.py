"""DistContext without a cluster: where collectives' tensors live, shards, and the logged DDP loss."""

from __future__ import annotations

import logging
import random

import pytest
import torch

import embtune.training.distributed as d
from embtune.config import TrainConfig
from embtune.errors import EmbtuneError
from embtune.objectives.base import Batch
from embtune.training.distributed import DistContext
from embtune.training.trainer import Trainer, embed_views
from tests.conftest import SENTENCES


class _Stop(Exception):
    pass


@pytest.fixture
def spy(monkeypatch):
    """Replace the collectives by spies that record their tensors' devices, then stop the caller
    (a tensor on the meta device has no value to read back)."""
    seen: list[torch.device] = []

    def record(*args, **kwargs):
        for a in args:
            for t in a if isinstance(a, list) else [a]:
                if isinstance(t, torch.Tensor):
                    seen.append(t.device)
        raise _Stop

    monkeypatch.setattr(d.dist, "all_reduce", record)
    monkeypatch.setattr(d.dist, "all_gather", record)
    return seen


@pytest.mark.parametrize("call", ["all_reduce_mean", "any", "gather", "all_reduce_grads"])
def test_every_collective_gets_tensors_on_the_context_device(spy, call):
    # The meta device stands for "the training device, not the CPU" (NCCL rejects CPU tensors with
    # "No backend type associated with device type cpu").
    ctx = DistContext(rank=0, world=2, device=torch.device("meta"))
    p = torch.nn.Parameter(torch.zeros(3, device="meta"))
    args = {"all_reduce_mean": (1.5,), "any": (True,), "gather": (torch.zeros(2, 3, 4, device="meta"),),
            "all_reduce_grads": ([p],)}[call]
    with pytest.raises(_Stop):
        getattr(ctx, call)(*args)
    assert seen_devices(spy) == {"meta"}


def seen_devices(seen):
    assert seen, "no collective was called"
    return {dev.type for dev in seen}


def test_from_env_single_process_keeps_the_device():
    assert DistContext.from_env(torch.device("cpu")).device == torch.device("cpu")
    assert not DistContext.from_env(torch.device("cpu")).enabled


def test_shard_splits_and_never_gives_an_empty_shard(caplog):
    ctxs = [DistContext(rank=r, world=3) for r in range(3)]
    assert [c.shard(list(range(7))) for c in ctxs] == [[0, 1, 2], [3, 4], [5, 6]]
    with pytest.raises(EmbtuneError, match="fewer examples than processes"):
        ctxs[2].shard([0, 1])
    # batches too small to give every process an example are dropped, counted and logged
    with caplog.at_level(logging.WARNING):
        kept = ctxs[0].drop_short_batches([[0, 1, 2, 3], [4, 5], [6, 7, 8]])
    assert kept == [[0, 1, 2, 3], [6, 7, 8]]
    assert "dropped 1 batch(es) (2 example(s))" in caplog.text
    assert DistContext().drop_short_batches([[0, 1]]) == [[0, 1]]  # one process: nothing to drop


class _TwoRanks(DistContext):
    """Rank 0 of two whose peer holds the very same examples: gather duplicates the local part,
    and the mean over processes of any value equals the local value."""

    def gather(self, local):
        return torch.cat([local, local.detach()], dim=1)

    def all_reduce_mean(self, value: float) -> float:
        return value

    def all_reduce_grads(self, params) -> None:
        pass


class _ConstantMLM(torch.nn.Module):
    """Stands for the auxiliary MLM: a fixed loss value that keeps a graph; records its input."""

    def __init__(self, param: torch.nn.Parameter, value: float):
        super().__init__()
        self.param, self.value, self.calls = param, value, []

    def forward(self, sentences):
        self.calls.append(sentences)
        return self.param.sum() * 0.0 + self.value


def test_logged_loss_under_ddp_with_mlm_is_contrastive_plus_mlm(tiny_bert, tmp_path):
    u = tmp_path / "u.txt"
    u.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    tr = Trainer(TrainConfig(model=str(tiny_bert), train_file=str(u), output=str(tmp_path / "o"), batch_size=4,
                             max_steps=1, dropout=False, max_seq_length=16), progress=False)
    tr.dist = _TwoRanks(rank=0, world=2)
    mlm_value = 0.75
    tr.mlm = _ConstantMLM(next(tr.encoder.parameters()), mlm_value)
    idx = [0, 1, 2, 3]
    batch = Batch([tr.data.examples[i] for i in idx], [tr.examples[i] for i in idx], tr.tokenize, random.Random(0))
    logged = tr.loss_and_backward(batch)
    with torch.no_grad():
        views = tr.objective.views(batch)
        emb = embed_views(tr.encoder, views, tr.device, "fp32")
        contrastive = float(tr.objective.loss(tr.dist.gather(emb), batch))
    # each process adds its MLM loss / world; summed over the 2 processes that is the mean MLM loss
    assert logged == pytest.approx(contrastive + mlm_value, abs=1e-5)
    assert abs(logged - (2 * contrastive + mlm_value)) > 1e-3  # the old arithmetic (negative control)
    # the MLM sees every sentence fed to the encoder (both views of unsup SimCSE), as in the official code
    assert len(tr.mlm.calls[0]) == 2 * len(idx)
