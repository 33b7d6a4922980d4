"""The CPU allocator setting that every forward pass of the pipeline runs under.

glibc hands each block at or above its mmap threshold (128 KiB, raised as large blocks are freed,
at most 32 MiB) to the kernel when it is freed, and trims the heap top above twice that. A
forward pass allocates and frees activations of several MiB each per layer, so on CPU every
batch took its memory as fresh, zero-filled pages: 600,000 page faults per SmolLM2-width body
forward of 4,096 tokens (docs/measurements.md, "Page faults, the allocator and the vocabulary
head").
:func:`keep_freed_memory` fixes the threshold at its maximum and stops trimming, so freed
activations are reused by the next batch; the process keeps its high-water mark instead of
returning it (flat in the token count, since a batch's footprint does not grow with them).

Users who tune glibc themselves (``GLIBC_TUNABLES``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``) or set ``NEURON_ABLATION_KEEP_FREED_MEMORY=0`` keep their setting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
LARGEST_MMAP_THRESHOLD = 32 * 2**20
"""glibc refuses a larger threshold on 64-bit systems (HEAP_MAX_SIZE / 2)."""
NEVER_TRIM = 2**31 - 1
"""mallopt takes an int; the heap top is trimmed only above 2 GiB of free memory."""

OPT_OUT = "NEURON_ABLATION_KEEP_FREED_MEMORY"
USER_TUNING = ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks of up to 32 MiB for reuse; True if the setting was applied.

    A no-op (False) on other C libraries, when the user tunes glibc's allocator, or with
    ``NEURON_ABLATION_KEEP_FREED_MEMORY=0``.
    """
    if os.environ.get(OPT_OUT, "1") == "0" or any(name in os.environ for name in USER_TUNING):
        return False
    if not glibc_available():
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # mallopt returns 1 on success; the threshold is set first so trimming never sees a smaller one.
    return bool(libc.mallopt(M_MMAP_THRESHOLD, LARGEST_MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)
    )


def glibc_available() -> bool:
    """Whether this process runs on glibc (whose allocator :func:`keep_freed_memory` tunes)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
