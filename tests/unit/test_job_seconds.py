"""benchmarks/job_seconds.py on hand-written benchmark files and logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.job_seconds import benchmark_jobs, by_rule, log_phases, main, report

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
PHASES_LINE = (
    "2026-12-06 23:30:01,123 INFO loaded model and inputs in {load} s; "
    "scored {n} fractions ({tokens} tokens) in {score} s\n"
)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def benchmark(run: Path, name: str, seconds: float) -> None:
    write(
        run / "results/benchmarks" / f"{name}.tsv",
        f"{HEADER}{seconds}\t0:00:01\t1\t2\t3\t4\t0\t0\t5\t0.1\n",
    )


def evaluation_log(run: Path, name: str, load: float, n: int, tokens: int, score: float) -> None:
    write(
        run / "results/logs/evaluate" / f"{name}.log",
        "2026-12-06 23:30:00,000 INFO fraction 0 ablates nothing: reusing a for b\n"
        + PHASES_LINE.format(load=load, n=n, tokens=tokens, score=score)
        + "2026-12-06 23:30:02,000 INFO top1 0.5 loss 2.0 -> out.json\n",
    )


@pytest.fixture
def run(tmp_path) -> Path:
    benchmark(tmp_path, "evaluate/tiny/zero_seed0", 10.0)
    evaluation_log(tmp_path, "tiny/zero_seed0", 3.5, 3, 384, 4.0)
    benchmark(tmp_path, "evaluate/tiny/mean_seed0", 12.0)
    evaluation_log(tmp_path, "tiny/mean_seed0", 4.5, 3, 384, 6.0)
    benchmark(tmp_path, "evaluate/tiny/peak_seed0", 9.0)  # no phases line: an older log
    write(tmp_path / "results/logs/evaluate/tiny/peak_seed0.log", "INFO top1 0.5\n")
    benchmark(tmp_path, "statistics/tiny", 30.0)
    benchmark(tmp_path, "tables", 1.5)  # a rule of one job: results/benchmarks/<rule>.tsv
    return tmp_path


def test_jobs_by_rule_count_and_sum_the_benchmark_seconds(run):
    jobs = benchmark_jobs(run)
    assert {(j.rule, j.name) for j in jobs} == {
        ("evaluate", "tiny/zero_seed0"),
        ("evaluate", "tiny/mean_seed0"),
        ("evaluate", "tiny/peak_seed0"),
        ("statistics", "tiny"),
        ("tables", ""),
    }
    assert by_rule(jobs) == {"evaluate": (3, 31.0), "statistics": (1, 30.0), "tables": (1, 1.5)}


def test_benchmark_repeats_are_summed(tmp_path):
    write(tmp_path / "results/benchmarks/tables.tsv", f"{HEADER}1.25\tx\n2.5\tx\n")
    assert benchmark_jobs(tmp_path)[0].seconds == 3.75


def test_log_phases_reads_the_evaluation_line(run):
    phases = log_phases(run / "results/logs/evaluate/tiny/mean_seed0.log")
    assert (phases.load, phases.fractions, phases.tokens, phases.score) == (4.5, 3, 384, 6.0)
    assert log_phases(run / "results/logs/evaluate/tiny/peak_seed0.log") is None
    assert log_phases(run / "results/logs/evaluate/missing.log") is None


def test_report_gives_overhead_of_the_jobs_with_phases(run, capsys):
    text = report(run)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:5]}
    assert rows == {
        "evaluate": ["3", "31.0"],
        "statistics": ["1", "30.0"],
        "tables": ["1", "1.5"],
        "total": ["5", "62.5"],
    }
    # zero and mean: wall 22 s, scoring 10 s -> 12 s overhead, 6 s per job, 8 s loading
    assert "evaluation jobs: 2 of 3 with phases in their logs" in text
    assert "wall 22.0 s, scoring 10.0 s, 6 fractions, 768 tokens" in text
    assert "overhead (wall - scoring): 12.0 s in all, 6.00 s per job (55 % of the wall)" in text
    assert "loading model and inputs: 8.0 s in all, 4.00 s per job" in text
    main([str(run)])
    assert capsys.readouterr().out.strip() == text


def test_a_directory_without_benchmarks_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="no benchmark files"):
        report(tmp_path)
