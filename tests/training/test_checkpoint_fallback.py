"""A corrupt newest checkpoint: resume falls back to the previous complete one and says so."""

from __future__ import annotations

import logging

import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.training import checkpoint as ckpt


def _save(root, step: int, module, opt, sched):
    with torch.no_grad():
        module.weight.fill_(float(step))
    return ckpt.save_checkpoint(root, step, model_state=module.state_dict(), optimizer=opt, scheduler=sched,
                                scaler=None, trainer_state={"step": step}, best_state=None, total_limit=None)


@pytest.fixture
def run(tmp_path):
    module = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(module.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    paths = [_save(tmp_path, s, module, opt, sched) for s in (2, 4, 6)]
    return tmp_path, paths, module, opt, sched


@pytest.mark.parametrize("victim,damage", [("model.safetensors", "truncate"), ("optimizer.pt", "truncate"),
                                           ("rng.pt", "garbage"), ("trainer_state.json", "truncate"),
                                           ("scheduler.pt", "delete")])
def test_corrupt_newest_falls_back_to_the_previous(run, caplog, victim, damage):
    root, paths, module, opt, sched = run
    f = paths[-1] / victim
    if damage == "delete":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 3)] if damage == "truncate" else b"\x00garbage")
    with caplog.at_level(logging.WARNING):
        chosen = ckpt.last_checkpoint(root)
    assert chosen == paths[1]
    assert "checkpoint-6" in caplog.text and "checkpoint-4" in caplog.text and victim in caplog.text
    state, _ = ckpt.load_checkpoint(chosen, module=module, optimizer=opt, scheduler=sched, scaler=None)
    assert state["step"] == 4 and float(module.weight[0, 0]) == 4.0


def test_intact_newest_is_used_without_warning(run, caplog):
    root, paths, *_ = run
    with caplog.at_level(logging.WARNING):
        assert ckpt.last_checkpoint(root) == paths[-1]
    assert "unusable" not in caplog.text


def test_no_usable_checkpoint_is_an_error(run):
    root, paths, *_ = run
    for p in paths:
        (p / "model.safetensors").write_bytes(b"")
    with pytest.raises(EmbtuneError, match="no usable checkpoint.*checkpoint-6.*model.safetensors"):
        ckpt.last_checkpoint(root)
