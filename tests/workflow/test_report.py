"""Snakemake craft: the HTML report, log and benchmark of every rule, lint, and the profiles."""

from __future__ import annotations

import re
import subprocess
import sys

import polars as pl
import yaml
import yte

from tests.helpers.workflow import REPO, run_snakemake

RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, for every named rule with a shell/run/script body."""
    blocks = {}
    for path in RULE_FILES:
        parts = re.split(r"^(?=rule \w+:)", path.read_text(), flags=re.MULTILINE)
        for part in parts:
            match = re.match(r"rule (\w+):", part)
            if match and re.search(r"^    (shell|run|script):", part, flags=re.MULTILINE):
                blocks[match[1]] = part
    return blocks


def test_inspection_and_comparison_outputs(pipeline_run):
    workdir, config = pipeline_run
    results = workdir / "results"
    assert (results / "figures/tiny_neurons.png").read_bytes()[:4] == b"\x89PNG"
    top = pl.read_csv(results / "tables/tiny_top_neurons.csv")
    assert top["rank"].to_list()[:3] == [1, 2, 3]
    assert top["score"].is_sorted(descending=True)
    comparison = pl.read_csv(results / "tables/comparison.csv")
    n_pairs = len(config["methods"]) * (len(config["methods"]) - 1) // 2
    assert comparison.height == 2 * len(config["fractions"]) * n_pairs
    focus = comparison["fraction"].is_in(config["eval"].get("focus", [0.5, 0.9]))
    expected_seeds = (
        pl.when(focus).then(config["eval"]["focus_seeds"]).otherwise(len(config["seeds"]))
    )
    assert comparison.select((pl.col("n_seeds") == expected_seeds).all()).item()
    summary = (results / "tables/comparison.md").read_text()
    assert "## tiny" in summary and "For tiny, the paper's claim" in summary
    assert "## What a decision costs" in summary
    plan = pl.read_csv(results / "tables/plan.csv")
    above_zero = comparison.filter(pl.col("fraction") > 0)
    assert plan.height == above_zero.height  # every pair at every fraction > 0
    assert (plan["current_cost"] == plan["n_seeds"] * plan["n_sequences"]).all()
    log = (results / "logs/neurons/tiny.log").read_text()
    assert "wrote results/figures/tiny_neurons.png" in log
    assert (results / "benchmarks/compare.tsv").exists()


def test_report_builds_with_figures_and_captions(pipeline_run, tmp_path):
    workdir, config = pipeline_run
    report = tmp_path / "report.html"
    run_snakemake(workdir, config, "--report", str(report))
    html = report.read_text()
    for name in ("tiny_neurons.png", "tiny.png", "comparison.md", "table2.csv"):
        assert name in html, name
    assert "bimodality coefficient" in html  # a caption, rendered


def test_every_rule_has_log_and_benchmark():
    blocks = rule_blocks()
    assert {"statistics", "evaluate", "tables", "neurons", "compare"} <= set(blocks)
    missing = [
        name
        for name, text in blocks.items()
        if not re.search(r"^    log:", text, flags=re.MULTILINE)
        or not re.search(r"^    benchmark:", text, flags=re.MULTILINE)
    ]
    assert missing == []


def test_lint_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True
    )
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_default_profile_limits_gpus_locally_only(monkeypatch):
    monkeypatch.delenv("SNAKEMAKE_PROFILE", raising=False)
    path = REPO / "profiles/default/config.yaml"
    monkeypatch.setattr(sys, "argv", ["snakemake", "--cores", "2"])
    local = yte.process_yaml(path.read_text(), require_use_yte=True)
    assert local["resources"]["gpu"] in (0, 1) and local["cores"] == "all"
    for argv in (["--profile", "profiles/slurm"], ["--executor", "slurm"], ["-e", "slurm"]):
        monkeypatch.setattr(sys, "argv", ["snakemake", *argv])
        remote = yte.process_yaml(path.read_text(), require_use_yte=True)
        assert "resources" not in remote and "cores" not in remote


def test_default_profile_is_picked_up(pipeline_run):
    workdir, config = pipeline_run
    result = run_snakemake(workdir, config, "--dry-run")  # no --cores: the profile gives them
    assert "workflow specific profile" in result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_slurm_profile_sets_resources_of_real_rules():
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    rules = set(rule_blocks())
    evaluations = {"evaluate", "evaluate_focus", "evaluate_optimal"}
    for rule, resources in profile["set-resources"].items():
        assert rule in rules | {"evaluate_focus", "evaluate_optimal"}, rule  # not `rule x:` blocks
        if rule in evaluations:  # the slot that runs a group's jobs in turn; gpu, mem_mb and
            assert set(resources) == {"evaluation_slots"}, rule  # runtime: the model's config
        else:
            assert {"gpu", "mem_mb", "runtime"} <= set(resources), rule
    # evaluate_focus: the threads of every evaluate_focus_<first>_<last> rule, one per block of
    # focus-only seeds (common.smk take_focus_settings), which no profile can name
    assert set(profile["set-threads"]) <= rules | {"evaluate_focus"}
