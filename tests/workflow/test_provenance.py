"""Provenance in the workflow: a model's files changed in place rerun exactly what was computed
from that model, and another model's statistics store put in place stops the jobs that read it.

Two models, ``a`` (the tiny Llama) and ``b`` (the same architecture, other weights), methods
zero and mean (which reads the statistics), one seed, one fraction.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from neuron_ablation.provenance import read_model_digest, read_provenance
from neuron_ablation.verify import verify_results
from tests.helpers.faults import artifact_digests
from tests.helpers.tiny_models import save_causal_lm
from tests.helpers.workflow import run_snakemake, tiny_config


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, tiny_llama, corpus_file) -> tuple[Path, dict]:
    """A finished run of models a and b; returns (workdir, config)."""
    workdir = tmp_path_factory.mktemp("provenance")
    a = shutil.copytree(tiny_llama, workdir / "models/a")
    b = save_causal_lm(workdir / "models/b", "llama", seed=1)
    config = tiny_config(a, corpus_file, methods=["zero", "mean"], seeds=[0], fractions=[0.5])
    config["models"]["b"] = config["models"]["tiny"] | {"source": str(b)}
    config["models"]["a"] = config["models"].pop("tiny")
    run_snakemake(workdir, config, "--cores", "2")
    return workdir, config


def planned_jobs(dry_run_output: str) -> list[tuple[str, str | None]]:
    """(rule, model wildcard or None) of every job a ``snakemake -n`` listing plans."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", dry_run_output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, flags=re.MULTILINE)
        if rule:
            model = re.search(r"wildcards: .*?\bmodel=([^,\s]+)", block)
            jobs.append((rule.group(1), model.group(1) if model else None))
    return jobs


def test_weights_overwritten_in_place_rerun_exactly_that_models_jobs(two_models, tmp_path):
    workdir, config = two_models
    assert run_snakemake(workdir, config, "-n").stdout.count("rule ") == 0  # up to date
    b_before = {k: v for k, v in artifact_digests(workdir / "results").items() if k[:2] == "b/"}
    other = save_causal_lm(tmp_path / "other", "llama", seed=7)
    shutil.copyfile(other / "model.safetensors", workdir / "models/a/model.safetensors")

    dry = run_snakemake(workdir, config, "-n")
    jobs = sorted(planned_jobs(dry.stdout), key=str)
    # every job of model a (no fraction 0, so no baseline), the tables over both, none of b's
    per_model = ["model_digest", "tokenize", "tokenize", "statistics", "select_neurons",
                 "evaluate", "evaluate", "neurons", "figure"]  # fmt: skip
    expected = [(rule, "a") for rule in per_model] + [
        ("all", None), ("compare", None), ("tables", None),
    ]  # fmt: skip
    assert jobs == sorted(expected, key=str), dry.stdout[-3000:]
    assert "Updated input files: " in dry.stdout and "models/a/model.safetensors" in dry.stdout

    run_snakemake(workdir, config, "--cores", "2")
    new_digest = read_model_digest(workdir / "results/a/model.digest.json")
    for artifact in ("stats.zarr", "selection/seed0.zarr", "eval/mean/seed0/frac0.50.json"):
        record = read_provenance(workdir / "results/a" / artifact)
        assert record["inputs"]["model"]["id"] == new_digest
    after = artifact_digests(workdir / "results")
    assert {k: v for k, v in after.items() if k[:2] == "b/"} == b_before  # b untouched
    assert verify_results(workdir / "results").ok


def test_another_models_statistics_put_in_place_stops_the_readers(two_models, tmp_path):
    source, config = two_models
    workdir = tmp_path / "work"
    shutil.copytree(source, workdir, symlinks=True)
    shutil.rmtree(workdir / "results/a/stats.zarr")
    shutil.copytree(  # like `cp -r`: new file times, so Snakemake reruns the readers
        workdir / "results/b/stats.zarr",
        workdir / "results/a/stats.zarr",
        copy_function=shutil.copyfile,
    )

    report = verify_results(workdir / "results")
    stale = {error.path.relative_to(workdir).as_posix() for error in report.damaged}
    assert "results/a/stats.zarr" in stale  # its record names b's model digest
    assert "results/a/eval/mean/seed0/frac0.50.json" in stale  # read another store

    run = run_snakemake(workdir, config, "--cores", "2", "--keep-going", check=False)
    assert run.returncode != 0
    logs = workdir / "results/logs"
    for log in (logs / "evaluate/a/mean_seed0.log", logs / "neurons/a.log"):
        text = log.read_text()
        assert "results/a/stats.zarr: its provenance says inputs.model = 'sha256:" in text
        assert "snakemake --cores all --forcerun results/a/stats.zarr" in text
