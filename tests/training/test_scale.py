"""Distributed data parallel, gradient caching, checkpoints and faults (CPU only)."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from embtune.config import make_config
from embtune.encoders.transformer import TransformerEncoder
from embtune.objectives import SupSimCSE, UnsupSimCSE
from embtune.training import checkpoint as ckpt
from embtune.training import grad_cache
from embtune.training.trainer import NonFiniteLossError, Trainer, train
from tests.conftest import SENTENCES

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: dict, gather: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from embtune.training.distributed import DistContext

    torch.set_num_threads(1)
    train(make_config(**cfg), progress=False, dist=DistContext.from_env(torch.device("cpu"), gather_embeddings=gather))


def write_files(tmp_path):
    """Unlabelled sentences, sup triples, scored pairs (CoSENT) and class-labelled texts (SupCon)."""
    n = len(SENTENCES)
    (tmp_path / "scored.tsv").write_text("sent0\tsent1\tscore\n" + "".join(
        f"{SENTENCES[i]}\t{SENTENCES[(i + 1) % n]}\t{i % 5}\n" for i in range(n)), encoding="utf-8")
    (tmp_path / "classes.tsv").write_text("text\tlabel\n" + "".join(
        f"{x}\tc{i % 3}\n" for i, x in enumerate(SENTENCES)), encoding="utf-8")
    u = tmp_path / "u.txt"
    u.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    s = tmp_path / "s.csv"
    # every text distinct, so duplicate-free batches of 8 exist
    s.write_text("\n".join(f"{x},{x[:-2]} here .,{x[:-2]} not there ." for x in SENTENCES) + "\n", encoding="utf-8")
    return u, s


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


def max_diff(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("objective", ["unsup-simcse", "sup-simcse", "cosent", "supcon"])
def test_ddp_two_processes_equal_one_process_with_the_global_batch(tiny_bert, tmp_path, objective):
    """The labelled objectives too: CoSENT's scores and SupCon's classes must follow the gathered batch."""
    import json

    u, s = write_files(tmp_path)
    files = {"unsup-simcse": u, "sup-simcse": s, "cosent": tmp_path / "scored.tsv", "supcon": tmp_path / "classes.tsv"}
    # A large Adam epsilon makes the first update ≈ lr·gradient (plain Adam's first step is lr·sign(g),
    # which would turn float noise in near-zero gradients into full-size differences).
    base = dict(model=str(tiny_bert), objective=objective, train_file=str(files[objective]),
                max_steps=1, lr=10.0 if objective == "supcon" else 1.0,  # SupCon's gradient is ~20x smaller here
                adam_epsilon=1.0, seed=3, dropout=False, max_seq_length=16,
                precision="fp32")  # explicit: the spawned processes do not see the tests' precision patch
    torch.set_num_threads(1)
    single = train(make_config(**base, batch_size=8, output=str(tmp_path / "one")), progress=False)
    initial = TransformerEncoder.load(tiny_bert)  # untrained weights, to see the update is real
    mp.spawn(_ddp_worker, args=(2, free_port(), {**base, "batch_size": 4, "output": str(tmp_path / "two")}, True), nprocs=2)
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["world_size"] == 2
    assert two["losses"][0] == pytest.approx(single["losses"][0], abs=1e-5)
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max_diff(w1, w2) < 1e-5
    moved = w1["embeddings.word_embeddings.weight"] - initial.backbone.embeddings.word_embeddings.weight.detach()
    assert moved.abs().max() > 1e-4  # the update is real, and well above the tolerance
    assert two["examples_seen"] == single["examples_seen"] == 8
    # without the gather each process sees only its own negatives: the test above would fail
    mp.spawn(_ddp_worker, args=(2, free_port(), {**base, "batch_size": 4, "output": str(tmp_path / "nog")}, False), nprocs=2)
    nog = json.loads((tmp_path / "nog" / "metrics.json").read_text())
    assert abs(nog["losses"][0] - single["losses"][0]) > 1e-3
    assert max_diff(w1, weights(tmp_path / "nog")) > 1e-5


@pytest.mark.parametrize("objective_cls,n_views", [(UnsupSimCSE, 2), (SupSimCSE, 3)])
def test_grad_cache_matches_the_full_batch_with_dropout_on(tiny_bert, objective_cls, n_views):
    """Loss and gradients with chunks of 2 equal those of one graph over the batch of 8, dropout on.

    The reference embeds the same chunks with their graphs kept (the same dropout masks as
    GradCache's first pass); GradCache must reproduce them in its second pass."""
    enc = TransformerEncoder.load(tiny_bert, pooler="cls", mlp_only_train=True).train()
    obj = objective_cls(temperature=0.1)
    ids = enc.tokenize_ids(SENTENCES[: 8 * (n_views if objective_cls is SupSimCSE else 1)])
    flat = ids + ids if n_views == 2 else ids[:8] + ids[8:16] + ids[16:24]
    loss_fn = lambda e: obj.loss(e.view(n_views, 8, -1))  # noqa: E731

    def grads():
        return {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}

    torch.manual_seed(0)
    ref = loss_fn(torch.cat([enc.embed_ids(flat[i:i + 2]) for i in range(0, len(flat), 2)]))
    ref.backward()
    ref_grads = grads()
    enc.zero_grad()
    torch.manual_seed(0)
    got = grad_cache.grad_cache_step(enc.embed_ids, flat, 2, loss_fn, torch.device("cpu"))
    assert got.item() == pytest.approx(ref.item(), abs=1e-6)
    gc_grads = grads()
    assert set(gc_grads) == set(ref_grads)
    assert max(float((gc_grads[k] - ref_grads[k]).abs().max()) for k in ref_grads) < 1e-5
    # without restoring the RNG the second pass draws new dropout masks: wrong gradients
    enc.zero_grad()
    torch.manual_seed(0)
    grad_cache.grad_cache_step(enc.embed_ids, flat, 2, loss_fn, torch.device("cpu"), restore_rng=False)
    assert max(float((grads()[k] - ref_grads[k]).abs().max()) for k in ref_grads) > 1e-4


@pytest.mark.parametrize("objective", ["unsup-simcse", "sup-simcse"])
def test_mini_batch_size_trains_like_the_full_batch(tiny_bert, tmp_path, objective):
    u, s = write_files(tmp_path)
    base = dict(model=str(tiny_bert), objective=objective, train_file=str(u if objective == "unsup-simcse" else s),
                batch_size=8, max_steps=2, lr=1.0, adam_epsilon=1.0, seed=5, dropout=False)
    a = train(make_config(**base, output=str(tmp_path / "full")), progress=False)
    b = train(make_config(**base, output=str(tmp_path / "gc"), mini_batch_size=2), progress=False)
    assert a["losses"] == pytest.approx(b["losses"], abs=1e-5)
    assert max_diff(weights(tmp_path / "full"), weights(tmp_path / "gc")) < 1e-5


def run_cli(args, sleep_per_step=None, wait=True):
    """``embtune train ARGS`` in a child process; with ``sleep_per_step`` a pause after every step
    (tests/training/slow_train.py) makes the run slow enough to interrupt."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    head = [sys.executable, "-m", "embtune"] if sleep_per_step is None else \
        [sys.executable, str(ROOT / "tests" / "training" / "slow_train.py"), str(sleep_per_step)]
    cmd = [*head, "train", *args, "--no-progress"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = p.communicate(timeout=300)
        return p.returncode, out
    return p


def test_resume_after_sigkill_gives_identical_weights(tiny_bert, tmp_path):
    u, _ = write_files(tmp_path)
    common = ["--model", str(tiny_bert), "--precision", "fp32", "--train-file", str(u), "--batch-size", "4", "--max-steps", "12",
              "--lr", "1e-3", "--seed", "11", "--save-steps", "3", "--save-total-limit", "2"]
    rc, out = run_cli([*common, "--output", str(tmp_path / "straight")])
    assert rc == 0, out
    p = run_cli([*common, "--output", str(tmp_path / "killed")], sleep_per_step=0.4, wait=False)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "checkpoints" / "checkpoint-6").exists():
        assert time.time() < deadline and p.poll() is None, "no checkpoint appeared"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()  # it really died mid-run
    # a half-written checkpoint (as a crash during saving leaves it) must be ignored
    half = tmp_path / "killed" / "checkpoints" / ".tmp-checkpoint-99-1"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"garbage")
    incomplete = tmp_path / "killed" / "checkpoints" / "checkpoint-100"
    incomplete.mkdir()
    assert ckpt.last_checkpoint(tmp_path / "killed").name in ("checkpoint-6", "checkpoint-9")
    rc, out = run_cli(["--resume", str(tmp_path / "killed")])
    assert rc == 0, out
    assert "resumed from" in out
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    kept = [c.name for c in ckpt.list_checkpoints(tmp_path / "killed")]
    assert len(kept) <= 3  # save-total-limit 2 (+ the fake incomplete one is not listed)


def test_sigterm_saves_a_checkpoint_and_exits(tiny_bert, tmp_path):
    u, _ = write_files(tmp_path)
    p = run_cli(["--model", str(tiny_bert), "--train-file", str(u), "--batch-size", "4", "--max-steps", "200",
                 "--output", str(tmp_path / "o")], sleep_per_step=0.2, wait=False)
    deadline = time.time() + 120
    while not (tmp_path / "o" / "train_config.json").exists():
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.05)
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 2, out
    assert "interrupted at step" in out
    last = ckpt.last_checkpoint(tmp_path / "o")
    assert int(last.name.split("-")[1]) >= 1


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tiny_bert, tmp_path, monkeypatch):
    u, _ = write_files(tmp_path)
    real = Trainer.loss_and_backward

    def nan_at_step_5(self, batch):  # fault injection from the test side
        value = real(self, batch)
        return math.nan if self.step + 1 == 5 else value

    monkeypatch.setattr(Trainer, "loss_and_backward", nan_at_step_5)
    cfg = make_config(model=str(tiny_bert), train_file=str(u), output=str(tmp_path / "o"), batch_size=4,
                      max_steps=10, save_steps=2)
    with pytest.raises(NonFiniteLossError, match="step 5: the loss is nan"):
        train(cfg, progress=False)
    last = ckpt.last_checkpoint(tmp_path / "o")
    assert last.name == "checkpoint-4"
    state = load_file(str(last / "model.safetensors"))
    assert any(k.startswith("encoder.backbone.") for k in state)
    assert all(torch.isfinite(v).all() for v in state.values())
    assert torch.load(last / "optimizer.pt", weights_only=True)["state"]
