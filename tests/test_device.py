"""--device: a device that is not there is a clear error, not a traceback at the first tensor."""

from __future__ import annotations

import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.utils import resolve_device


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")


@pytest.mark.parametrize("dev", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_a_gpu(monkeypatch, dev):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EmbtuneError, match=f"--device {dev}: no CUDA GPU is available"):
        resolve_device(dev)


def test_cuda_index_beyond_the_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(EmbtuneError, match="--device cuda:3: .*1 CUDA GPU"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_mps_without_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(EmbtuneError, match="--device mps: .*not available"):
        resolve_device("mps")


@pytest.mark.parametrize("dev", ["gpu", "cuda:x", "tpu"])
def test_unknown_device_names(dev):
    with pytest.raises(EmbtuneError, match=f"--device {dev}: expected"):
        resolve_device(dev)
