"""Snakemake runs the pre-flight check before any job, and not for a dry run (split from
tests/unit/test_preflight.py)."""

from __future__ import annotations

import copy

import pytest

from neuron_ablation.config import validate_config
from tests.helpers.workflow import run_snakemake


@pytest.fixture
def good(good) -> dict:
    """The tiny config (tests/conftest.py) validated: defaults filled in, as the pre-flight
    sees it."""
    return validate_config(good)


def test_snakemake_stops_before_any_job(tmp_path, good):
    config = copy.deepcopy(good)
    config["models"]["tiny"]["seq_len"] = 512
    result = run_snakemake(tmp_path, config, "--cores", "1", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "pre-flight check failed, nothing was run" in output
    assert "models.tiny.seq_len: 512" in output
    assert not (tmp_path / "results").exists()


def test_dry_run_does_not_preflight(tmp_path, good):
    """A dry run, --lint, --unlock and --report only read the config (see common.smk)."""
    config = copy.deepcopy(good)
    config["models"]["tiny"]["seq_len"] = 512
    assert run_snakemake(tmp_path, config, "-n", "--cores", "1").returncode == 0
