"""Where a finished run's job time went: seconds by rule, and what evaluation jobs pay besides
scoring.

    python benchmarks/job_seconds.py                 # in a finished run's directory
    python benchmarks/job_seconds.py path/to/run

Job-seconds by rule come from the Snakemake `benchmark:` files (results/benchmarks/<rule>/*.tsv
or results/benchmarks/<rule>.tsv; column ``s``: the job's wall seconds, measured by Snakemake
around the shell command). For the evaluation jobs (results/benchmarks/evaluate/, which holds the
optimal method's jobs too), the overhead of a job is its wall seconds less the seconds its log
(results/logs/evaluate/<same name>.log) says it spent scoring: Python and torch imports, reading
and checking inputs, loading the model and tokens, writing the results. Snakemake's own start-up
and, on Slurm, the submission and the status polls come on top (in the run's wall time, not in
a benchmark file).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = Path("results/benchmarks")
LOGS = Path("results/logs")
EVALUATION_RULES = ("evaluate", "evaluate_focus", "evaluate_optimal")
"""The rules that run `neuron-ablation evaluate` (a block of focus-only seeds logs under
evaluate_focus whatever its rule is named)."""
# The line run_evaluation_job logs (neuron_ablation.evaluation).
PHASES = re.compile(
    r"loaded model and inputs in (?P<load>[\d.]+) s; "
    r"scored (?P<fractions>\d+) fractions \((?P<tokens>\d+) tokens\) in (?P<score>[\d.]+) s"
)


@dataclass(frozen=True)
class Job:
    rule: str
    name: str  # the benchmark file's path under its rule's folder, without .tsv
    seconds: float


@dataclass(frozen=True)
class Phases:
    load: float
    fractions: int
    tokens: int
    score: float


def benchmark_seconds(tsv: Path) -> float:
    """Wall seconds (column ``s``) of a Snakemake benchmark file, summed over its repeats."""
    with tsv.open(newline="") as handle:
        return sum(float(row["s"]) for row in csv.DictReader(handle, delimiter="\t"))


def benchmark_jobs(run: Path) -> list[Job]:
    """Every job with a benchmark file under ``run``/results/benchmarks, sorted by path."""
    root = run / BENCHMARKS
    jobs = []
    for tsv in sorted(root.rglob("*.tsv")):
        relative = tsv.relative_to(root).with_suffix("")
        rule = relative.parts[0] if len(relative.parts) > 1 else relative.name
        jobs.append(Job(rule, "/".join(relative.parts[1:]), benchmark_seconds(tsv)))
    return jobs


def log_phases(log: Path) -> Phases | None:
    """The phases an evaluation job's log states, or None (no such line: e.g. an older log)."""
    match = PHASES.search(log.read_text(errors="replace")) if log.is_file() else None
    if match is None:
        return None
    return Phases(
        float(match["load"]), int(match["fractions"]), int(match["tokens"]), float(match["score"])
    )


def by_rule(jobs: list[Job]) -> dict[str, tuple[int, float]]:
    """Rule -> (jobs, summed seconds), the most seconds first."""
    totals: dict[str, tuple[int, float]] = {}
    for job in jobs:
        count, seconds = totals.get(job.rule, (0, 0.0))
        totals[job.rule] = (count + 1, seconds + job.seconds)
    return dict(sorted(totals.items(), key=lambda item: -item[1][1]))


def evaluation_overheads(run: Path, jobs: list[Job]) -> list[tuple[Job, Phases]]:
    """The evaluation jobs whose log states its phases, each with them."""
    pairs = []
    for job in jobs:
        if job.rule not in EVALUATION_RULES:
            continue
        phases = log_phases(run / LOGS / job.rule / f"{job.name}.log")
        if phases is not None:
            pairs.append((job, phases))
    return pairs


def report(run: Path) -> str:
    """The tables this script prints for the finished run in ``run``."""
    jobs = benchmark_jobs(run)
    if not jobs:
        raise SystemExit(f"no benchmark files under {run / BENCHMARKS}: not a finished run?")
    lines = [f"{'rule':<20} {'jobs':>5} {'seconds':>10}"]
    for rule, (count, seconds) in by_rule(jobs).items():
        lines.append(f"{rule:<20} {count:>5} {seconds:>10.1f}")
    total = sum(job.seconds for job in jobs)
    lines.append(f"{'total':<20} {len(jobs):>5} {total:>10.1f}")
    pairs = evaluation_overheads(run, jobs)
    evaluations = sum(job.rule in EVALUATION_RULES for job in jobs)
    lines.append("")
    if not pairs:
        lines.append(f"evaluation jobs: {evaluations}, none with its phases in its log")
        return "\n".join(lines)
    wall = sum(job.seconds for job, _ in pairs)
    scoring = sum(phases.score for _, phases in pairs)
    overhead = wall - scoring
    loading = sum(phases.load for _, phases in pairs)
    lines += [
        f"evaluation jobs: {len(pairs)} of {evaluations} with phases in their logs",
        f"  wall {wall:.1f} s, scoring {scoring:.1f} s, "
        f"{sum(p.fractions for _, p in pairs)} fractions, {sum(p.tokens for _, p in pairs)} tokens",
        f"  overhead (wall - scoring): {overhead:.1f} s in all, {overhead / len(pairs):.2f} s "
        f"per job ({100 * overhead / wall:.0f} % of the wall)"
        if wall
        else "  overhead: -",
        f"  of which loading model and inputs: {loading:.1f} s in all, "
        f"{loading / len(pairs):.2f} s per job",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, default=Path("."), help="run directory")
    args = parser.parse_args(argv)
    print(report(args.run))


if __name__ == "__main__":
    sys.exit(main())
