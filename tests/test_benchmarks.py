"""Smoke runs of the speed benchmarks on a tiny model: they run and print every figure (the
figures themselves are measurements, made by hand on an idle machine, never asserted here)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.workflow import REPO

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
        "cpu_defaults.py", "--model", str(tiny_llama), "--tokens", "32", "--seq-len", "16",
        "--batch-sizes", "1", "2", "--threads", "1", "--repeats", "1",
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 2, out
    assert "| sdpa |" in out and "| eager |" in out


def test_evaluation_speed_checks_and_prints_both_scorings(tiny_llama):
    out = run_benchmark(
        "evaluation_speed.py", "--model", str(tiny_llama), "--tokens", "96", "--seq-len", "16",
        "--batch-size", "2", "--threads", "1",
    )  # fmt: skip
    for label in ("full logits", "chunked", "body", "chunked / full logits", "peak RSS"):
        assert label in out, out
