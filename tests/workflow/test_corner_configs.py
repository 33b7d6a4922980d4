"""Every valid config finishes: the tiny workflow over corner configs (one method, one seed, one
fraction, only a resampling method, only fraction 0, two methods at one fraction).

The property checked for each: Snakemake exits 0; every table exists; ablation.csv has one row
per (method, seed, fraction); comparison.csv has one row per (metric, fraction, pair of methods),
so none with a single method, and comparison.md then says why; ``neuron-ablation verify`` finds
nothing damaged. The configs share one working directory, so the token files and statistics of
the first run serve the others (the tables are removed before each run and rebuilt from its own
results).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from neuron_ablation import metrics
from tests.helpers.workflow import run_snakemake, tiny_config

CORNERS = {
    "one resampling method, one seed, one fraction": {
        "methods": ["resample-tokens"],
        "seeds": [0],
        "fractions": [0.5],
    },
    "one method, only fraction 0": {"methods": ["mean"], "seeds": [0, 1], "fractions": [0.0]},
    "two methods, one seed, one fraction": {
        "methods": ["zero", "mean"],
        "seeds": [3],
        "fractions": [1.0],
    },
    "one method, one seed, fractions 0 and 1": {
        "methods": ["peak"],
        "seeds": [0],
        "fractions": [0.0, 1.0],
    },
}
TABLES = (
    "ablation.csv",
    "table2.csv",
    "table2.md",
    "comparison.csv",
    "comparison.md",
    "plan.csv",
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corners")


@pytest.mark.parametrize("name", list(CORNERS))
def test_corner_config_finishes_and_writes_what_exists(name, workdir, tiny_llama, corpus_file):
    corner = CORNERS[name]
    config = tiny_config(tiny_llama, corpus_file, **corner)
    shutil.rmtree(workdir / "results/tables", ignore_errors=True)
    result = run_snakemake(workdir, config, "--cores", "2", check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    tables = workdir / "results/tables"
    assert all((tables / table).is_file() for table in TABLES)
    ablation = pl.read_csv(tables / "ablation.csv")
    expected_rows = set(itertools.product(corner["methods"], corner["seeds"], corner["fractions"]))
    assert set(ablation.select("method", "seed", "fraction").iter_rows()) == expected_rows
    assert len(ablation) == len(expected_rows)

    comparison = pl.read_csv(tables / "comparison.csv")
    n_pairs = len(corner["methods"]) * (len(corner["methods"]) - 1) // 2
    assert len(comparison) == len(metrics.METRICS) * len(corner["fractions"]) * n_pairs
    assert {"method_a", "method_b", "mean_diff", "best_method"} <= set(comparison.columns)
    plan = pl.read_csv(tables / "plan.csv")
    above_zero = (comparison["fraction"].cast(pl.Float64) > 0).sum()  # empty: read as strings
    assert len(plan) == above_zero  # nothing to plan at fraction 0
    summary = (tables / "comparison.md").read_text()
    assert "## What a decision costs" in summary
    if n_pairs == 0:
        assert f"Nothing to compare for tiny: only {corner['methods'][0]} was run" in summary
    else:
        assert "## tiny" in summary and "claim peak >= mean >= zero" in summary
        assert all(f"| {fraction * 100:.0f} % |" in summary for fraction in corner["fractions"])

    verify = subprocess.run(
        [sys.executable, "-m", "neuron_ablation.cli", "verify", "results"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_report_builds_for_a_single_method(workdir, tiny_llama, corpus_file):
    """``--report`` failed when compare crashed on one method."""
    config = tiny_config(tiny_llama, corpus_file, **CORNERS["one method, only fraction 0"])
    run_snakemake(workdir, config, "--cores", "2")
    report = workdir / "report.html"
    run_snakemake(workdir, config, "--report", str(report))
    assert "comparison.md" in report.read_text()
