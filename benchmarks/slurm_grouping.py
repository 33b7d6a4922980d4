"""Submissions and wall time of the tiny pipeline on Slurm, with and without grouped evaluations.

    python benchmarks/slurm_grouping.py --focus-seeds 8 --out /tmp/slurm-grouping

Needs a running Slurm cluster (e.g. ../shared/tools/single-node-slurm.sh, as root). Builds the
tiny model and corpus of the tests, then runs the tiny config (methods zero, mean, peak; seeds
0 and 1 at every fraction, seeds 2 .. N-1 at the focus fractions, N = --focus-seeds) three
times, each in a fresh directory under --out:

- local: `snakemake --cores 2` with profiles/default, the reference results;
- slurm-ungrouped: profiles/slurm without its grouping keys and with
  `eval.focus_seeds_per_job: 1`: one job, and one sbatch job, per (method, seed), as before the
  grouping and the blocks of seeds;
- slurm-grouped: profiles/slurm as it is.

(`--runs` picks some of them; without local the results are not compared.)

Each run is timed with /usr/bin/time -v (wall clock of the whole Snakemake run). For each it
prints the jobs Snakemake planned (evaluation jobs among them), the sbatch submissions (the
plugin's "has been submitted with SLURM jobid" lines), the wall time, and whether every
results/tiny/eval/**/*.json equals the local run's byte for byte; then benchmarks/job_seconds.py
for each run. The figures depend on the cluster's load and polling: compare runs made on the
same machine in one call.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
import yte

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.job_seconds import report  # noqa: E402
from tests.helpers.tiny_models import corpus, save_causal_lm, write_jsonl  # noqa: E402
from tests.helpers.workflow import job_stats, snakemake_command, tiny_config  # noqa: E402

PROFILE = REPO / "profiles/slurm/config.yaml"
# The profile keys of the grouping: what the ungrouped run leaves out.
GROUPING_KEYS = ("groups", "group-components", "resources", "set-resource-scopes")
EVALUATION_RULES = ("evaluate", "evaluate_focus", "evaluate_optimal")
RUNS = ("local", "slurm-ungrouped", "slurm-grouped")
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")
WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)")


@dataclass(frozen=True)
class Run:
    label: str
    jobs: dict[str, int]
    submissions: int
    wall_s: float
    identical: bool | None  # None: not compared (the local run itself, or none to compare with)


def ungrouped_profile(folder: Path) -> Path:
    """profiles/slurm rendered (its cluster probes answered now), without the grouping keys."""
    profile = yte.process_yaml(PROFILE.read_text(), require_use_yte=True)
    for key in GROUPING_KEYS:
        profile.pop(key, None)
    for rule in EVALUATION_RULES:
        profile["set-resources"].pop(rule, None)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def planned_jobs(command: list[str]) -> dict[str, int]:
    """Rule -> jobs of Snakemake's dry run of ``command`` (without `all`)."""
    output = subprocess.run([*command, "--dry-run"], cwd=REPO, capture_output=True, text=True)
    text = output.stdout + output.stderr
    if output.returncode != 0:
        raise SystemExit(f"dry run failed:\n{text[-3000:]}")
    return job_stats(text)


def timed(command: list[str], log: Path) -> tuple[str, float]:
    """Run ``command`` under /usr/bin/time -v; its output (also written to ``log``) and wall."""
    result = subprocess.run(
        ["/usr/bin/time", "-v", *command], cwd=REPO, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    log.write_text(output)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}; see {log}")
    hours, minutes, seconds = WALL.search(output).groups()
    return output, 3600 * int(hours or 0) + 60 * int(minutes) + float(seconds)


def evaluation_results(workdir: Path) -> dict[Path, bytes]:
    tree = workdir / "results/tiny/eval"
    return {p.relative_to(tree): p.read_bytes() for p in sorted(tree.rglob("*.json"))}


def run_once(label: str, command: list[str], workdir: Path, reference: Path | None) -> Run:
    jobs = planned_jobs(command)
    output, wall = timed(command, workdir / "snakemake.log")
    identical = None
    if reference is not None:
        identical = evaluation_results(workdir) == evaluation_results(reference)
    return Run(label, jobs, len(SUBMITTED.findall(output)), wall, identical)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--focus-seeds", type=int, default=8, help="eval.focus_seeds")
    parser.add_argument("--out", type=Path, default=None, help="runs' folder (default: a temp)")
    parser.add_argument("--keep", action="store_true", help="keep --out afterwards")
    parser.add_argument(
        "--runs", nargs="+", choices=RUNS, default=list(RUNS),
        help="which runs (without local, the results are not compared)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="slurm-grouping-"))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model = save_causal_lm(out / "model", "llama")
    data = write_jsonl(out / "corpus.jsonl", corpus())
    config = tiny_config(model, data, eval={"n_tokens": 128, "focus_seeds": args.focus_seeds})
    config["models"]["tiny"]["resources"] = {"mem_mb": 1000, "runtime": 10}  # as the Slurm test

    def command(name: str, *extra: str) -> tuple[list[str], Path]:
        workdir = out / name
        workdir.mkdir()
        configfile = workdir / "config.yaml"
        settings = copy.deepcopy(config)
        if name == "slurm-ungrouped":  # one job per focus-only seed, as before the blocks
            settings["eval"]["focus_seeds_per_job"] = 1
        configfile.write_text(yaml.safe_dump(settings))
        return snakemake_command(workdir, configfile, *extra), workdir

    slurm = ("--slurm-init-seconds-before-status-checks", "5")
    profiles = {"slurm-ungrouped": ungrouped_profile(out / "profile-ungrouped"),
                "slurm-grouped": PROFILE.parent}  # fmt: skip
    reference = out / "local" if "local" in args.runs else None
    runs, workdirs = [], []
    for name in args.runs:
        if name == "local":
            extra = ("--cores", "2")
        else:
            extra = ("--workflow-profile", str(profiles[name]), *slurm)
        run_command, workdir = command(name, *extra)
        runs.append(run_once(name, run_command, workdir, None if name == "local" else reference))
        workdirs.append(workdir)
    print(f"tiny config, focus_seeds {args.focus_seeds}; runs in {out}")
    print(f"{'run':<16} {'jobs':>5} {'eval jobs':>9} {'sbatch':>6} {'wall s':>7}  same results")
    for run in runs:
        evaluations = sum(n for rule, n in run.jobs.items() if rule.startswith(EVALUATION_RULES))
        same = {None: "-", True: "yes", False: "NO"}[run.identical]
        print(
            f"{run.label:<16} {sum(run.jobs.values()):>5} {evaluations:>9} "
            f"{run.submissions if run.label != 'local' else '-':>6} {run.wall_s:>7.1f}  {same}"
        )
    for run, workdir in zip(runs, workdirs, strict=True):
        print(f"\n== {run.label}: benchmarks/job_seconds.py {workdir}\n{report(workdir)}")
    if not args.keep and args.out is None:
        shutil.rmtree(out)
    if any(run.identical is False for run in runs):
        raise SystemExit("a Slurm run's evaluation results differ from the local run's")


if __name__ == "__main__":
    main()
