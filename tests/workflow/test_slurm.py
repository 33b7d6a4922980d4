"""The pipeline on Slurm through profiles/slurm, with the commands the README documents.

The profile's cluster probes (node size, accounting) are tested with fake `scontrol`/`sinfo`.
The end-to-end test (marker `slurm`) runs on a real single-node cluster that
../shared/tools/single-node-slurm.sh starts from Debian's packages (munge, slurmctld, slurmd,
no accounting); it needs root and apt-get and skips with the reason where they are missing.
The cluster is left running afterwards: with Slurm's commands installed but no controller, the
Slurm plugin makes every later `snakemake` start wait ~9 s in `scontrol show config`. Stop it
with single-node-slurm-stop.sh.
"""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
import yte

from tests.helpers.workflow import REPO, job_stats, tiny_config

PROFILE = REPO / "profiles/slurm/config.yaml"
SLURM_SCRIPT_ENV = "NEURON_ABLATION_SLURM_SCRIPT"
MACHINE_RULES = ("statistics", "train_vit", "train_mlm")
# The rules whose jobs profiles/slurm bundles into the model's group evaluate_<model>.
EVALUATION_GROUP = {"evaluate": "evaluate_{model}", "evaluate_focus": "evaluate_{model}"}


# --- the profile's probes, without a cluster


def write_executable(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def fake_slurm(bin_dir: Path, accounting: str, cpus: str, mem_mb: str) -> Path:
    """`scontrol show config` and `sinfo --Node --format %c|%m` answering like a cluster."""
    bin_dir.mkdir()
    write_executable(bin_dir / "scontrol", f'echo "AccountingStorageType   = {accounting}"')
    write_executable(
        bin_dir / "sinfo",
        f"case \"$*\" in *%c*) printf '{cpus}' ;; *%m*) printf '{mem_mb}' ;; esac",
    )
    return bin_dir


def profile_with_path(monkeypatch, *path: Path) -> dict:
    monkeypatch.setenv("PATH", os.pathsep.join(str(p) for p in path))
    return yte.process_yaml(PROFILE.read_text(), require_use_yte=True)


def test_profile_fits_smallest_node_and_polls_squeue_without_accounting(monkeypatch, tmp_path):
    bin_dir = fake_slurm(tmp_path / "bin", "accounting_storage/none", "4\n2+\n16\n", "8000\n3000\n")
    profile = profile_with_path(monkeypatch, bin_dir)
    assert profile["executor"] == "slurm"
    assert profile["max-threads"] == 2
    assert profile["slurm-status-command"] == "squeue"
    assert profile["slurm-keep-successful-logs"] is True
    assert profile["default-resources"]["mem_mb"] == 3000
    assert profile["set-resources"]["neurons"]["mem_mb"] == 3000
    assert profile["set-resources"]["tables"]["mem_mb"] == 2000
    assert set(MACHINE_RULES) <= set(profile["set-threads"])


def test_profile_bundles_each_models_evaluations_to_run_in_turn(monkeypatch, tmp_path):
    profile = profile_with_path(monkeypatch, tmp_path)
    groups = dict(entry.split("=") for entry in profile["groups"])
    assert {rule: groups[rule] for rule in EVALUATION_GROUP} == EVALUATION_GROUP
    assert groups["evaluate_optimal"] == "evaluate_optimal_{model}"  # one model per group
    assert all("{model}" in group for group in groups.values())
    assert set(group_sizes(profile)) == set(groups.values())
    assert all(size > 1 for size in group_sizes(profile).values())
    # one slot per evaluation job, one per group and local to it: a group's jobs run in turn
    assert profile["resources"] == ["evaluation_slots=1"]
    assert profile["set-resource-scopes"] == ["evaluation_slots=local"]
    for rule in groups:
        assert profile["set-resources"][rule] == {"evaluation_slots": 1}


def group_sizes(profile: dict) -> dict[str, int]:
    """Group -> components per submission, from the profile's group-components."""
    return {name: int(n) for name, n in (e.split("=") for e in profile["group-components"])}


def test_profile_keeps_sacct_where_accounting_works(monkeypatch, tmp_path):
    bin_dir = fake_slurm(tmp_path / "bin", "accounting_storage/slurmdbd", "64\n", "256000\n")
    profile = profile_with_path(monkeypatch, bin_dir)
    assert "slurm-status-command" not in profile
    assert profile["max-threads"] == 64
    assert profile["set-resources"]["neurons"]["mem_mb"] == 16000


def test_profile_without_slurm_commands_sets_no_cluster_limits(monkeypatch, tmp_path):
    profile = profile_with_path(monkeypatch, tmp_path)  # an empty PATH: no scontrol, no sinfo
    assert "max-threads" not in profile and "slurm-status-command" not in profile
    assert profile["set-resources"]["neurons"]["mem_mb"] == 16000


# --- a real single-node cluster


def slurm_start_script() -> Path:
    """single-node-slurm.sh: $NEURON_ABLATION_SLURM_SCRIPT, else <repo>/../shared/tools/."""
    override = os.environ.get(SLURM_SCRIPT_ENV)
    return Path(override) if override else REPO.parent / "shared/tools/single-node-slurm.sh"


def why_no_slurm(script: Path) -> str | None:
    if not script.is_file():
        return f"{script} not found (set {SLURM_SCRIPT_ENV} to single-node-slurm.sh)"
    if os.geteuid() != 0:
        return "starting munged, slurmctld and slurmd needs root"
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e .)"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    script = slurm_start_script()
    reason = why_no_slurm(script)
    if reason:
        pytest.skip(reason)
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        message = f"{script} exited {result.returncode}:\n{(result.stdout + result.stderr)[-3000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI is root on Debian: a cluster that cannot start is a failure
        pytest.skip(message)


def snakemake_command(workdir: Path, config: dict) -> list[str]:
    """The README's `snakemake --workflow-profile profiles/slurm`, run from the repository root on
    a config and working directory of the test; the status checks start after 5 s, not 40 s."""
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    return [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(configfile),
        "--workflow-profile", "profiles/slurm",
        "--slurm-init-seconds-before-status-checks", "5",
    ]  # fmt: skip


def run(command: list[str], timeout: float = 120) -> str:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def planned_jobs(command: list[str]) -> dict[str, int]:
    """Rule -> jobs of the dry run (`all` left out: Snakemake submits no job for it)."""
    return job_stats(run([*command, "--dry-run"]))


def run_id(output: str) -> str:
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, output[-4000:]
    return match[1]


def submitted_ids(output: str) -> list[str]:
    return re.findall(r"has been submitted with SLURM jobid (\d+)", output)


def submitted_groups(output: str, group: str) -> list[str]:
    """Slurm ids of the group jobs of ``group`` (the plugin logs them to slurm_logs/group_...)."""
    return re.findall(
        rf"has been submitted with SLURM jobid (\d+) \(log: \S*/group_{re.escape(group)}_", output
    )


def slurm_jobs(run_uuid: str) -> dict[str, dict[str, str]]:
    """Every job of a Snakemake run that slurmctld knows (MinJobAge keeps finished ones 10 min):
    id -> state, CPUs, time limit and the plugin's comment (rule_<rule>_wildcards_<values>; for
    a group job rule_<group>_<rules>)."""
    listing = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--name={run_uuid}", "--format=%i|%T|%C|%l|%k"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = {}
    for line in listing.splitlines():
        job_id, state, cpus, limit, comment = line.strip().split("|", 4)
        jobs[job_id] = {"state": state, "cpus": cpus, "limit": limit, "comment": comment}
    return jobs


def chunk_sizes(total: int, size: int) -> list[int]:
    """Jobs per group when Snakemake cuts ``total`` components into groups of ``size``."""
    return sorted([size] * (total // size) + ([total % size] if total % size else []))


def minutes(limit: str) -> int:
    """squeue's time limit ([days-]hours:minutes:seconds, or minutes:seconds) in minutes."""
    days, _, clock = limit.rpartition("-")
    seconds = 0
    for part in clock.split(":"):
        seconds = 60 * seconds + int(part)
    return int(days or 0) * 1440 + seconds // 60


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(1)


def smallest_node_cpus() -> int:
    listing = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format", "%c"], capture_output=True, text=True
    ).stdout
    return min(int(v.rstrip("+")) for v in listing.split())


def assert_same_results(local: Path, slurm: Path) -> None:
    """ablation.csv, every evaluation JSON and every file of stats.zarr byte for byte."""
    table = "results/tables/ablation.csv"
    assert (slurm / table).read_bytes() == (local / table).read_bytes()
    for tree in ("results/tiny/eval", "results/tiny/stats.zarr"):
        files = {
            p.relative_to(local / tree)
            for p in (local / tree).rglob("*")
            if p.is_file() and p.name != ".snakemake_timestamp"
        }
        assert files == {
            p.relative_to(slurm / tree)
            for p in (slurm / tree).rglob("*")
            if p.is_file() and p.name != ".snakemake_timestamp"
        }
        for name in files:
            expected, actual = (
                (local / tree / name).read_bytes(),
                (slurm / tree / name).read_bytes(),
            )
            assert actual == expected, f"{tree}/{name}"


@pytest.mark.slurm
def test_pipeline_on_slurm_equals_local_run_and_resumes(slurm_cluster, pipeline_run, tmp_path):
    local_dir, local_config = pipeline_run
    config = copy.deepcopy(local_config)
    config["models"]["tiny"]["resources"] = {"mem_mb": 1000, "runtime": 10}  # results unchanged
    workdir = tmp_path / "slurm"
    command = snakemake_command(workdir, config)
    all_jobs = planned_jobs(command)

    # 1. The README's command, stopped hard once an evaluation that needs the statistics runs:
    # Snakemake killed (a lost login session), then its jobs cancelled with scancel.
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(lambda: "SLURM run ID" in log.read_text(), 120, "SLURM run ID", log)
        first_id = run_id(log.read_text())
        # the group job of the tiny model's evaluations: it starts once the statistics exist
        evaluation = re.compile(r"rule_evaluate_tiny_evaluate")

        def evaluation_runs() -> bool:
            assert first.poll() is None, f"Snakemake ended early:\n{log.read_text()[-3000:]}"
            jobs = slurm_jobs(first_id).values()
            return any(evaluation.match(j["comment"]) and j["state"] == "RUNNING" for j in jobs)

        wait_for(evaluation_runs, 600, "running mean/peak evaluation job", log)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    subprocess.run(["scancel", f"--name={first_id}"], check=True)
    ended = ("COMPLETED", "CANCELLED", "FAILED")
    wait_for(
        lambda: all(j["state"] in ended for j in slurm_jobs(first_id).values()),
        120,
        "end of the cancelled jobs",
        log,
    )
    first_jobs = slurm_jobs(first_id)
    assert set(submitted_ids(log.read_text())) <= set(first_jobs)  # killed: the last unlogged
    assert "CANCELLED" in {j["state"] for j in first_jobs.values()}
    statistics = [j for j in first_jobs.values() if j["comment"].startswith("rule_statistics")]
    # set-threads asks 8 CPUs; the profile caps them at the smallest node's (2 on a 2-CPU node)
    assert [j["cpus"] for j in statistics] == [str(min(8, smallest_node_cpus()))]
    assert not (workdir / "results/tables/ablation.csv").exists()

    # 2. Resume as the README says: unlock (Snakemake was killed), the same command again, here
    # with --max-threads 1 so that the 2-CPU node runs two jobs at a time.
    run([*command, "--unlock"])
    resumed = [*command, "--max-threads", "1"]
    remaining = planned_jobs(resumed)
    assert 0 < sum(remaining.values()) < sum(all_jobs.values())
    output = run(resumed, timeout=900)
    submitted = submitted_ids(output)
    # squeue forgets a job MinJobAge (600 s) after its end: on a loaded machine the first jobs of
    # a long resumed run are gone; the group jobs end just before the last three jobs, so stay.
    second_jobs = slurm_jobs(run_id(output))
    assert set(second_jobs) <= set(submitted)
    # every job went through sbatch, the evaluations in groups of up to group-components
    evaluations = sum(remaining.pop(rule, 0) for rule in EVALUATION_GROUP)
    size = group_sizes(yte.process_yaml(PROFILE.read_text()))["evaluate_{model}"]
    group_ids = submitted_groups(output, "evaluate_tiny")
    groups = [second_jobs[i] for i in group_ids]
    assert all(evaluation.match(j["comment"]) for j in groups)
    assert evaluations >= 2  # the first run was stopped before its group job could end
    assert len(groups) == math.ceil(evaluations / size) < evaluations
    assert len(submitted) == sum(remaining.values()) + len(groups)
    # a group runs its jobs in turn: it asks for one job's CPUs and the sum of their runtimes
    runtime = config["models"]["tiny"]["resources"]["runtime"]
    assert sorted(minutes(j["limit"]) for j in groups) == [
        runtime * n for n in chunk_sizes(evaluations, size)
    ]
    assert {j["state"] for j in second_jobs.values()} == {"COMPLETED"}
    assert {j["cpus"] for j in second_jobs.values()} == {"1"}
    assert planned_jobs(command) == {}

    # 3. The same bytes as the local run of the same config.
    assert_same_results(local_dir, workdir)


@pytest.mark.slurm
def test_cluster_run_without_thread_counts_stops_before_any_job(
    slurm_cluster, tiny_llama, corpus_file, tmp_path
):
    workdir = tmp_path / "no-threads"
    command = snakemake_command(workdir, tiny_config(tiny_llama, corpus_file))
    command[command.index("--workflow-profile") + 1] = "none"  # no profile: no set-threads
    command += ["--executor", "slurm", "--jobs", "1", "--slurm-status-command", "squeue"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "--set-threads statistics=N" in output and "profiles/slurm" in output, output[-3000:]
    assert submitted_ids(output) == []
    assert not (workdir / "results").exists()
