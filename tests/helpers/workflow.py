"""The repository root, the tiny pipeline's config, and running the repository's Snakefile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def tiny_config(model_dir: Path, corpus_path: Path, **overrides) -> dict:
    config = {
        "models": {
            "tiny": {
                "source": str(model_dir),
                "task": "causal-lm",
                "dataset": "corpus",
                "seq_len": 16,
                "batch_size": 4,
                "device": "cpu",
            }
        },
        "datasets": {"corpus": {"source": str(corpus_path), "eval_share": 0.25}},
        "methods": ["zero", "mean", "peak"],
        "seeds": [0, 1],
        "fractions": [0.0, 0.5, 0.9, 1.0],
        "stats": {"n_tokens": 512, "bin_width": 0.01, "range": [-4.0, 4.0]},
        "eval": {"n_tokens": 128},
    }
    config.update(overrides)
    return config


def snakemake_command(workdir: Path, configfile: Path, *args: str) -> list[str]:
    """The command that runs the repository's Snakefile in ``workdir`` with ``configfile``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]


def run_snakemake(workdir: Path, config: dict, *args: str, check: bool = True):
    """Run the repository's Snakefile in ``workdir`` with ``config`` written next to it."""
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    cmd = snakemake_command(workdir, configfile, *args)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def job_stats(output: str) -> dict[str, int]:
    """Rule -> jobs of the "Job stats" table Snakemake prints (a dry run's plan), without `all`
    (it has no action: nothing runs or is submitted for it); {} where nothing is to be done."""
    if "Nothing to be done" in output:
        return {}
    rows = output.split("Job stats:")[1].strip().splitlines()[2:]
    jobs = {}
    for row in rows:
        parts = row.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    jobs.pop("all", None)
    return jobs
