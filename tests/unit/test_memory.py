import os
import subprocess
import sys

import pytest

from neuron_ablation import memory

# A forward pass in miniature: four 20 MiB activations live at once, then freed, 40 times; prints
# the page faults of the last four rounds (glibc's heap takes a few rounds to settle).
REUSE = """
import resource, sys, torch
from neuron_ablation.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
faults = []
for _ in range(40):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.empty(5 * 2**20, dtype=torch.float32).fill_(1.0) for _ in range(4)]
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, sum(faults[-4:]))
"""
PAGES = 4 * 4 * 20 * 2**20 // 4096  # four rounds of four 20 MiB blocks, in 4 KiB pages


def reuse_faults(mode: str, **env: str) -> tuple[bool, int]:
    environ = {k: v for k, v in os.environ.items() if k not in memory.USER_TUNING}
    result = subprocess.run(
        [sys.executable, "-c", REUSE, mode],
        env=environ | env,
        capture_output=True,
        text=True,
        check=True,
    )
    applied, faults = result.stdout.split()
    return applied == "True", int(faults)


def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    if not memory.glibc_available():
        pytest.skip("glibc's allocator only")
    applied, faults = reuse_faults("keep")
    assert applied and faults < PAGES / 100
    # The same rounds where the user tunes glibc to give memory back at once: every page faults
    # again, and the setting leaves the user's tuning alone.
    applied, returned_faults = reuse_faults("keep", MALLOC_TRIM_THRESHOLD_="0")
    assert not applied and returned_faults > PAGES * 0.9


def test_opt_out_and_user_tuning_keep_the_system_setting(monkeypatch):
    monkeypatch.setenv(memory.OPT_OUT, "0")
    assert memory.keep_freed_memory() is False
    monkeypatch.delenv(memory.OPT_OUT)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert memory.keep_freed_memory() is False
