"""Precision that is never a trap: detection, auto, refusal (capabilities injected, any machine)."""

from __future__ import annotations

import logging

import pytest
import torch

from embtune import precision as P
from embtune.errors import EmbtuneError

NO_BF16 = P.cpu_support("AVX2", {"avx2", "fma"})
AVX512_BF16 = P.cpu_support("AVX512", {"avx2", "avx512f", "avx512_bf16"})
AMX = P.cpu_support("AVX512", {"avx512f", "amx_bf16", "amx_tile"})
CUDA_AMPERE = P.DeviceSupport("cuda", bf16=True, fp16=True, detail="A100")
CUDA_TURING = P.DeviceSupport("cuda", bf16=False, fp16=True, detail="T4")


def test_cpu_support_from_flags_and_capability():
    assert not NO_BF16.bf16 and AVX512_BF16.bf16 and AMX.bf16
    assert not AVX512_BF16.fp16  # fp16 is never native on a CPU
    assert "no bf16 instructions" in NO_BF16.detail and "avx512_bf16" in AVX512_BF16.detail
    # the flag without vector kernels (torch built/forced to DEFAULT) is not native
    assert not P.cpu_support("DEFAULT", {"avx512_bf16"}).bf16


def test_cpu_flags_reads_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n", encoding="utf-8")
    assert P.cpu_flags(f) == {"fpu", "avx2", "avx512_bf16"}
    assert P.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize("support,expected", [(NO_BF16, "fp32"), (AVX512_BF16, "bf16"), (AMX, "bf16"),
                                              (CUDA_AMPERE, "bf16"), (CUDA_TURING, "fp32")])
def test_auto_picks_bf16_only_where_native(support, expected, caplog):
    with caplog.at_level(logging.INFO, logger="embtune.precision"):
        assert P.resolve_precision("auto", "cpu", support=support) == expected
    assert f"auto: {expected}" in caplog.text and support.detail in caplog.text


@pytest.mark.parametrize("support,requested", [(NO_BF16, "bf16"), (NO_BF16, "fp16"), (AVX512_BF16, "fp16"),
                                               (CUDA_TURING, "bf16")])
def test_non_native_precision_refused_with_reason_and_alternative(support, requested):
    with pytest.raises(EmbtuneError) as e:
        P.resolve_precision(requested, "cpu", support=support)
    msg = str(e.value)
    assert f"no native {requested}" in msg and support.detail in msg and "--allow-slow-precision" in msg
    assert "fp32" in msg


def test_allow_slow_runs_anyway_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="embtune.precision"):
        assert P.resolve_precision("bf16", "cpu", allow_slow=True, support=NO_BF16) == "bf16"
    assert "not native" in caplog.text


@pytest.mark.parametrize("support", [NO_BF16, AVX512_BF16, CUDA_AMPERE])
def test_native_and_fp32_pass_through(support):
    assert P.resolve_precision("fp32", "cpu", support=support) == "fp32"
    if support.bf16:
        assert P.resolve_precision("bf16", "cpu", support=support) == "bf16"
    if support.fp16:
        assert P.resolve_precision("fp16", "cuda", support=support) == "fp16"


def test_unknown_precision():
    with pytest.raises(EmbtuneError, match="must be one of auto, fp32, bf16, fp16"):
        P.resolve_precision("fp8", "cpu", support=NO_BF16)


def test_detect_support_on_this_cpu_matches_its_flags():
    real = P.cpu_support(torch.backends.cpu.get_cpu_capability(), P.cpu_flags())
    assert real.bf16 == (bool({"avx512_bf16", "amx_bf16"} & P.cpu_flags())
                         and torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "NO AVX"))
