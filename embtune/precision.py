"""Which precision runs natively where, and the choice behind ``--precision auto``.

bf16 halves memory traffic and, on hardware with bf16 units, doubles or quadruples matmul
throughput; on hardware without them it is emulated and far *slower* than fp32 (on an AVX2-only CPU
torch's bf16 matmul is more than 100x slower). So embtune never runs a precision the device lacks
without being told to:

* CPU: bf16 is native when the CPU has AVX512-BF16 or AMX-BF16 instructions (``/proc/cpuinfo`` flags
  ``avx512_bf16`` / ``amx_bf16``; oneDNN uses them for bf16 GEMMs) and torch's kernels are built for at
  least AVX2 (``torch.backends.cpu.get_cpu_capability()``). fp16 is never native on a CPU here.
* CUDA: bf16 where ``torch.cuda.is_bf16_supported(including_emulation=False)`` (Ampere and newer);
  fp16 on every CUDA GPU.
* ``auto``: bf16 where native, fp32 elsewhere.

:func:`resolve_precision` turns a requested precision into the one to run, raising
:class:`~embtune.errors.EmbtuneError` for a non-native one unless ``allow_slow`` is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class DeviceSupport:
    """What a device runs natively, and in words why (for messages and logs)."""

    device_type: str
    bf16: bool
    fp16: bool
    detail: str

    def native(self, precision: str) -> bool:
        return precision == "fp32" or (precision == "bf16" and self.bf16) or (precision == "fp16" and self.fp16)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags (empty where ``/proc/cpuinfo`` is not readable, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_support(capability: str, flags: set[str]) -> DeviceSupport:
    """CPU support from torch's kernel capability (``AVX512``, ``AVX2``, ``DEFAULT``...) and the CPU flags."""
    have = [f for f in CPU_BF16_FLAGS if f in flags]
    bf16 = bool(have) and capability not in ("DEFAULT", "NO AVX")
    detail = f"CPU, torch capability {capability}, " + (
        f"bf16 instructions: {', '.join(have)}" if have else "no bf16 instructions (no avx512_bf16 / amx_bf16 flag)")
    return DeviceSupport("cpu", bf16=bf16, fp16=False, detail=detail)


def detect_support(device: torch.device | str) -> DeviceSupport:
    """Detect what ``device`` runs natively."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_support(torch.backends.cpu.get_cpu_capability(), cpu_flags())
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(idx)
        major, minor = torch.cuda.get_device_capability(idx)
        try:
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch without the argument
            bf16 = torch.cuda.is_bf16_supported()
        return DeviceSupport("cuda", bf16=bool(bf16), fp16=True,
                             detail=f"{name} (compute capability {major}.{minor}){'' if bf16 else ', no native bf16'}")
    # mps and others: fp16 is native; bf16 is not assumed
    return DeviceSupport(device.type, bf16=False, fp16=True, detail=f"{device.type} device")


def resolve_precision(
    precision: str,
    device: torch.device | str,
    allow_slow: bool = False,
    support: DeviceSupport | None = None,
    what: str = "--precision",
) -> str:
    """The precision to run: ``auto`` -> bf16 where native else fp32; a non-native bf16/fp16 is an
    :class:`EmbtuneError` naming the device and the alternative, unless ``allow_slow``.

    ``support`` defaults to :func:`detect_support` of ``device``.
    """
    if precision not in PRECISIONS:
        raise EmbtuneError(f"{what} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return "fp32"
    support = support or detect_support(device)
    if precision == "auto":
        chosen = "bf16" if support.bf16 else "fp32"
        logger.info("%s auto: %s (%s)", what, chosen, support.detail)
        return chosen
    if support.native(precision):
        return precision
    if allow_slow:
        logger.warning("%s %s is not native on this device (%s) and runs emulated, usually far slower than fp32; "
                       "running it because slow precision was allowed", what, precision, support.detail)
        return precision
    instead = "fp32" if precision == "bf16" or not support.bf16 else "bf16 or fp32"
    raise EmbtuneError(
        f"{what} {precision}: this device has no native {precision} ({support.detail}); it would run emulated, "
        f"usually many times slower than fp32. Use {what} {instead} (or auto), or pass --allow-slow-precision "
        f"(Python: allow_slow_precision=True) to run it anyway")
