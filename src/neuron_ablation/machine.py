"""What machine and code computed an artifact: CPU, speed-relevant ISA flags, torch, git commit.

Results may move between machines (thread counts, vector units, library versions change the
order of float sums), so the demo training (``training.json``) and the optimal stage (its
store's attributes) record where they ran. Standard library only at import; torch is read only
if something has already imported it.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

SPEED_FLAGS = (
    "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve",
)  # fmt: skip
"""CPU flags (Linux ``/proc/cpuinfo`` names) that decide which torch kernels run, and how fast."""


def cpu_facts(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU model name and which of ``SPEED_FLAGS`` it has (``platform`` where
    ``cpuinfo`` cannot be read; flags None then)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return {"cpu": platform.processor() or platform.machine(), "isa_flags": None}
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
            model = value.strip()
        elif key.strip() in ("flags", "Features"):  # x86, ARM
            flags |= set(value.split())
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "isa_flags": [flag for flag in SPEED_FLAGS if flag in flags],
    }


def git_commit(directory: str | Path | None = None) -> str | None:
    """The commit checked out where this package's source lies (None outside a git checkout,
    e.g. an installed wheel, or without git)."""
    directory = Path(directory) if directory else Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def machine_record(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """CPU, ISA flags, OS, Python, torch version and threads (None where torch is not loaded)."""
    torch = sys.modules.get("torch")
    return {
        **cpu_facts(cpuinfo),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": str(torch.__version__) if torch is not None else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        # The vector kernels torch picked (AVX2, AVX512, ...; ATEN_CPU_CAPABILITY overrides it):
        # with the threads, they decide float sums' order, hence a trained demo model's weights
        # (docs/measurements.md, "What moves between machines"). The flags alone do not say it.
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()
        if torch is not None
        else None,
    }
