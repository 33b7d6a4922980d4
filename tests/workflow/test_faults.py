"""Faults: kill -9 of Snakemake itself and of a statistics, an evaluation and an aggregation job
at the moment they commit their artifact, and a disk that fills up mid-write. After each, the
documented resume gives the same bytes as a clean run, and nothing half-written is left for a
rerun to trust. Two clean runs give identical artifacts.

The runs build one small branch of the pipeline: one method, one seed, two fractions, up to the
tables (no baseline job: fraction 0 is not asked for).
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neuron_ablation.io import temporaries_of
from tests.helpers.faults import (
    artifact_digests,
    environment,
    kill_snakemake_during,
    killing_cli_bin,
    leftover_temporaries,
    run_snakemake,
    snakemake_command,
)
from tests.helpers.workflow import tiny_config

TARGETS = ("results/tables/table2.md",)
CORES = ("--cores", "2")


@pytest.fixture(scope="module")
def fault_config(tmp_path_factory, tiny_llama, corpus_file) -> Path:
    config = tiny_config(tiny_llama, corpus_file, methods=["mean"], seeds=[0])
    config["fractions"] = [0.5, 1.0]
    path = tmp_path_factory.mktemp("fault-config") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def clean_run(workdir: Path, configfile: Path) -> dict[str, str]:
    result = run_snakemake(workdir, configfile, *CORES, *TARGETS)
    assert result.returncode == 0, result.stderr[-3000:]
    return artifact_digests(workdir / "results")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fault_config) -> tuple[Path, dict[str, str]]:
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, clean_run(workdir, fault_config)


def test_two_clean_runs_give_identical_artifacts(pipeline_run, reference):
    """The session's full run (more methods, seeds and fractions, same model, data and stats
    settings) and this module's run share every upstream artifact: byte for byte."""
    full_run, _ = pipeline_run
    _, expected = reference
    full = artifact_digests(full_run / "results")
    # Tables summarise different grids; everything else both runs wrote must be equal.
    shared = sorted(n for n in expected.keys() & full.keys() if not n.startswith("tables/"))
    assert {
        "tiny/tokens/stats.arrow",
        "tiny/tokens/eval.arrow",
        "tiny/stats.zarr/zarr.json",
        "tiny/stats.zarr/hist/c/1/0/0",
        "tiny/selection/seed0.zarr/rank/c/0/0",
        "tiny/eval/mean/seed0/frac0.50.json",
        "tiny/eval/mean/seed0/frac1.00.json",
    } <= set(shared)
    assert {name: full[name] for name in shared} == {name: expected[name] for name in shared}


def test_kill_9_at_every_stage_then_resume(tmp_path, fault_config, reference):
    """Snakemake is killed while statistics run, then each stage's job dies at its commit point;
    after each, the documented resume works, and the end result is a clean run's bytes."""
    _, expected = reference
    workdir = tmp_path / "work"
    results = workdir / "results"

    # kill -9 of Snakemake: its jobs finish as orphans, the directory stays locked.
    command = snakemake_command(workdir, fault_config, *CORES, *TARGETS)
    kill_snakemake_during(command, environment(), job_words=("statistics",))
    refused = run_snakemake(workdir, fault_config, *CORES, *TARGETS)
    assert refused.returncode != 0
    assert "--unlock" in refused.stdout + refused.stderr  # Snakemake names the fix itself
    unlocked = run_snakemake(workdir, fault_config, "--unlock")
    assert unlocked.returncode == 0, unlocked.stderr[-2000:]

    # kill -9 of one job per stage while it commits; the same command resumes each time
    # (--rerun-incomplete in profiles/default redoes the statistics the orphan wrote).
    bin_dir = killing_cli_bin(tmp_path / "bin")
    killed_artifacts = {
        "statistics": results / "tiny/stats.zarr",
        "evaluate": results / "tiny/eval/mean/seed0/frac0.50.json",
        "aggregate": results / "tables/ablation.csv",
    }
    for stage, artifact in killed_artifacts.items():
        env = environment(kill_at=stage, bin_dir=bin_dir)
        result = run_snakemake(workdir, fault_config, *CORES, *TARGETS, env=env)
        assert result.returncode != 0, f"{stage} was not killed"
        assert not artifact.exists(), f"{stage}: a half-written {artifact.name} was left"
        # The killed job had written everything to its temporary: the kill came mid-commit.
        assert temporaries_of(artifact), f"{stage} was not killed while writing {artifact.name}"

    assert clean_run(workdir, fault_config) == expected
    assert leftover_temporaries(results) == []


def _limit_file_size(max_bytes: int):
    """RLIMIT_FSIZE: a write past ``max_bytes`` fails with EFBIG, as on a full disk (Python
    ignores SIGXFSZ, so the write raises OSError instead of killing the process)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


def _largest_file(path: Path) -> int:
    return max(p.stat().st_size for p in [path, *path.rglob("*")] if p.is_file())


def _cli(args: list[str], cwd: Path, max_bytes: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neuron_ablation.cli", *args],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size(max_bytes) if max_bytes else None,
    )


@pytest.mark.parametrize("stage", ["statistics", "aggregate"])
def test_disk_full_mid_write_leaves_nothing(tmp_path, reference, tiny_llama, stage):
    """A write that fails half-way leaves neither the artifact nor its temporary."""
    workdir, _ = reference
    results = workdir / "results"
    if stage == "statistics":
        done = results / "tiny/stats.zarr"
        out = tmp_path / "stats.zarr"
        args = ["statistics", f"--model-source={tiny_llama}", "--task", "causal-lm"]
        args += ["--tokens", str(results / "tiny/tokens/stats.arrow"), "--device", "cpu"]
        args += ["--bin-width", "0.01", "--range", "-4", "4", "--out", str(out)]
        written = [out]
    else:
        done = results / "tables/ablation.csv"
        out = tmp_path / "tables"
        evals = sorted(str(p) for p in results.glob("tiny/eval/mean/seed0/*.json"))
        args = ["aggregate", "--tables", str(out), *evals]
        written = [out / name for name in ("ablation.csv", "table2.csv", "table2.md")]
    full = _cli(args, tmp_path, max_bytes=_largest_file(done) // 2)
    assert full.returncode != 0
    assert "File too large" in full.stderr  # EFBIG, what a full disk's ENOSPC also ends in
    for path in written:
        assert not path.exists() and temporaries_of(path) == []
