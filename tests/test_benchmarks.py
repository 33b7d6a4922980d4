"""Smoke runs of the speed benchmarks on a tiny model: they run and print every figure (the
figures themselves are measurements, made by hand on an idle machine, never asserted here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.workflow import REPO

pytestmark = pytest.mark.benchmark  # left out of the fast run: -m "not workflow and not benchmark"

BENCHMARKS = REPO / "benchmarks"


def run_benchmark(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_ablation_speed_quick_prints_every_ratio(tiny_llama):
    out = run_benchmark(
        "ablation_speed.py", "--quick", "--model", str(tiny_llama), "--seq-len", "16",
        "--batch-size", "2", "--threads", "1",
    )  # fmt: skip
    for label in (
        "statistics / body forward",
        "statistics / full forward",
        "ablated / clean",
        "resampled / clean",
        "histogram updates",
        "statistics peak RSS",
        "load average",
        "--quick: smoke run, not a measurement",
    ):
        assert label in out, out


def test_fold_parts_split_the_ablated_step(tiny_llama):
    out = run_benchmark(
        "ablation_speed.py", "--quick", "--model", str(tiny_llama), "--seq-len", "16",
        "--batch-size", "2", "--threads", "1", "--ratios", "fold-parts",
    )  # fmt: skip
    for label in ("clean / clean", "zero bias / clean", "fold of zeros / clean"):
        assert label in out, out
    assert "statistics / body forward" not in out


def test_cpu_defaults_prints_the_throughput_tables(tiny_llama):
    out = run_benchmark(
        "cpu_defaults.py", "--model", str(tiny_llama), "--tokens", "64", "--seq-len", "16",
        "--batch-sizes", "1", "2", "--threads", "1", "--rounds", "2",
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| 1 thread, batch")]
    assert len(rows) == 2, out
    assert all(len(row.split("|")) == 6 for row in rows), out  # setting + 3 passes
    assert "| 1 thread, batch 2 | " in out and "1.000 [1.000, 1.000]" in out  # the reference
    assert "| sdpa |" in out and "| eager |" in out
    assert "1 job x 1 threads" in out and "side by side" in out


def test_cpu_defaults_refuses_a_unit_the_batch_sizes_do_not_divide(tiny_llama):
    result = subprocess.run(
        [sys.executable, "cpu_defaults.py", "--model", str(tiny_llama), "--tokens", "48",
         "--seq-len", "16", "--batch-sizes", "2"],
        cwd=BENCHMARKS, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--tokens 48 must be --seq-len 16 times a multiple of every batch size (2)" in (
        result.stderr
    )


def test_evaluation_speed_checks_and_prints_both_scorings(tiny_llama):
    out = run_benchmark(
        "evaluation_speed.py", "--model", str(tiny_llama), "--tokens", "96", "--seq-len", "16",
        "--batch-size", "2", "--threads", "1",
    )  # fmt: skip
    for label in ("full logits", "chunked", "body", "chunked / full logits", "peak RSS"):
        assert label in out, out
