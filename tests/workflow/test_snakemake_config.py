"""Snakemake reads the config through validate_config: a bad config stops it before any compute,
and a model's own counts reach the commands it plans (split from tests/unit/test_config.py)."""

import copy

from neuron_ablation.config import input_count, validate_config
from tests.helpers.workflow import run_snakemake


def test_snakemake_stops_before_any_compute(tmp_path, good):
    config = copy.deepcopy(good)
    config["methods"] = ["zero", "median"]
    result = run_snakemake(tmp_path, config, "--cores", "1", check=False)
    assert result.returncode != 0
    assert "median" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_a_model_can_set_its_own_counts(good, tmp_path):
    config = copy.deepcopy(good)
    config["models"]["other"] = {**config["models"]["tiny"], "eval": {"n_tokens": 48}}
    validate_config(config)
    assert input_count(config, "other", "eval") == 48
    assert input_count(config, "other", "stats") == config["stats"]["n_tokens"]
    assert input_count(config, "tiny", "eval") == config["eval"]["n_tokens"]
    dry = run_snakemake(tmp_path, config, "-n", "-p", "--cores", "1").stdout
    assert "--part eval --n 48 " in dry
    assert f"--part eval --n {config['eval']['n_tokens']} " in dry
