"""Smoke runs of the speed benchmarks on a tiny model: they run and print every figure (the
figures themselves are measurements, made by hand on an idle machine, never asserted here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

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


# --- benchmarks/gpu_check.py on the CPU (what a GPU machine runs with --device cuda)

GPU_CHECK_CANDIDATES = {"cpu-float32-batch2", "cpu-bfloat16"}
RATIOS = ("statistics / body forward", "statistics / full forward", "ablated / clean eval")


def run_gpu_check(out, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def gpu_check_on_cpu(tmp_path_factory):
    """One --quick run on the CPU: the reference against a float32 run at another batch size and
    a bfloat16 run. Returns (OUT_DIR, the finished process)."""
    out = tmp_path_factory.mktemp("gpu_check")
    return out, run_gpu_check(out, "--device", "cpu", "--quick", "--cores", "2")


@pytest.mark.workflow
def test_gpu_check_on_cpu_compares_every_candidate_and_passes(gpu_check_on_cpu):
    out, result = gpu_check_on_cpu
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("PASSED")
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["passed"] and summary["device"] == "cpu"
    checks = summary["checks"]
    assert {c["candidate"] for c in checks} == GPU_CHECK_CANDIDATES
    assert {c["family"] for c in checks} == {"causal"}
    quantities = {
        candidate: {(c["artifact"], c["quantity"]) for c in checks if c["candidate"] == candidate}
        for candidate in GPU_CHECK_CANDIDATES
    }
    shared = {
        ("statistics", "neurons with another count"),
        ("statistics", "mean abs diff"),
        ("scores", "scored predictions differ"),
        ("scores", "loss rel diff"),
        ("scores", "top-1 diff"),
    }
    assert quantities["cpu-float32-batch2"] == shared | {
        ("statistics", "moved share"),
        ("statistics", "bins per moved observation"),
        ("statistics", "peaks differing where histograms are equal"),
    }
    assert quantities["cpu-bfloat16"] == shared | {
        ("statistics", "wasserstein-1"),
        ("statistics", "peak far share"),
    }
    # A real comparison: bfloat16 statistics and scores differ from float32 ones, within limits.
    bf16_means = [c for c in checks if c["candidate"] == "cpu-bfloat16" and c["quantity"] in (
        "mean abs diff", "wasserstein-1")]  # fmt: skip
    assert all(0 < c["value"] <= c["limit"] for c in bf16_means), bf16_means
    ratios = {(r["dtype"], r["ratio"]) for r in summary["ratios"]}
    assert ratios == {
        (dtype, ratio)
        for dtype in ("float32", "bfloat16")
        for ratio in (
            "statistics / body forward",
            "statistics / full forward",
            "ablated / clean eval",
        )
    }
    markdown = (out / "gpu_check.md").read_text()
    assert markdown.startswith("# GPU check: PASSED")
    assert "## Tolerances" in markdown and "| cpu-bfloat16 |" in markdown


def plant_score(workdir) -> str:
    """Raise one candidate's loss by 1 %: far beyond the float32 limit."""
    path = workdir / "results/causal-cpu-float32-batch2/eval/peak/seed0/frac0.50.json"
    result = json.loads(path.read_text())
    result["loss"] *= 1.01
    path.write_text(json.dumps(result))
    return "loss rel diff"


def plant_histogram(workdir) -> str:
    """Move one observation of one neuron three bins up, keeping the store consistent (counts
    add up, the peak stays the fullest bin): a float32 observation may cross one edge only."""
    import zarr

    store = zarr.open_group(workdir / "results/causal-cpu-float32-batch2/stats.zarr", mode="r+")
    hist = store["hist"][:]
    layer, neuron = 0, 0
    row = hist[layer, neuron]
    peak = int(np.argmax(row))
    source = next(k for k in range(len(row) - 3) if row[k] > 0 and k != peak and k + 3 != peak
                  and row[k + 3] + 1 < row[peak])  # fmt: skip
    row[source] -= 1
    row[source + 3] += 1
    store["hist"][layer] = hist[layer]
    return "bins per moved observation"


@pytest.mark.workflow
@pytest.mark.parametrize("plant", [plant_score, plant_histogram])
def test_gpu_check_exits_nonzero_on_a_planted_mismatch(gpu_check_on_cpu, tmp_path, plant):
    out, result = gpu_check_on_cpu
    assert result.returncode == 0, result.stdout[-3000:]
    copied = tmp_path / "out"
    shutil.copytree(out, copied)
    quantity = plant(copied / "work")
    planted = run_gpu_check(copied, "--compare-only")  # the run's devices, not cuda
    assert planted.returncode == 1, planted.stdout[-3000:] + planted.stderr[-3000:]
    assert "FAILED: 1 mismatches" in planted.stdout
    summary = json.loads((copied / "gpu_check.json").read_text())
    failed = [c for c in summary["checks"] if not c["passed"]]
    assert [(c["candidate"], c["quantity"]) for c in failed] == [
        ("cpu-float32-batch2", quantity)
    ], failed


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_check_refuses_cuda_without_cuda_before_writing(tmp_path):
    result = run_gpu_check(tmp_path / "out", "--device", "cuda")
    assert result.returncode == 2
    assert "--device cuda: CUDA is not available on this machine" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.workflow
def test_gpu_check_reports_a_stage_that_raised_and_still_writes_the_summary(
    gpu_check_on_cpu, tmp_path
):
    out, _ = gpu_check_on_cpu
    copied = tmp_path / "out"
    shutil.copytree(out, copied)
    shutil.rmtree(copied / "work/results/causal-cpu-bfloat16/stats.zarr/peak")
    result = run_gpu_check(copied, "--compare-only")
    assert result.returncode == 1
    assert result.stdout.rstrip().endswith("FAILED: 0 mismatches, 1 failed stages")
    summary = json.loads((copied / "gpu_check.json").read_text())
    assert not summary["passed"] and summary["checks"] == []
    assert summary["errors"][0].startswith("compare:\nTraceback")
    assert "causal-cpu-bfloat16/stats.zarr" in summary["errors"][0]


@pytest.mark.workflow
def test_job_seconds_reads_every_evaluation_log_of_the_tiny_run(pipeline_run):
    """The phases line of the real `neuron-ablation evaluate` logs is the one the script parses."""
    workdir, _ = pipeline_run
    benchmarks = workdir / "results/benchmarks"
    # evaluate, evaluate_focus (blocks of focus-only seeds) and evaluate_optimal, where run
    evaluations = len(list(benchmarks.glob("evaluate*/**/*.tsv")))
    out = run_benchmark("job_seconds.py", str(workdir))
    assert evaluations > 1
    assert f"evaluation jobs: {evaluations} of {evaluations} with phases in their logs" in out
    for rule in ("evaluate", "statistics", "baseline", "total"):
        assert f"\n{rule} " in out, out
