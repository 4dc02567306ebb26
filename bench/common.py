"""Shared helpers for the benchmarks: machine description, peak memory, Markdown output."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from embtune.precision import CPU_BF16_FLAGS, cpu_flags

    flags = cpu_flags()
    bf16 = [f for f in CPU_BF16_FLAGS if f in flags]
    isa = (f"bf16 instructions: {', '.join(bf16)}" if bf16 else "no bf16 instructions") + \
        f", torch kernels {torch.backends.cpu.get_cpu_capability()}"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu} ({isa}), {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads)")


def md_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
