"""The documentation is a contract: every command of the ```bash and ```console blocks of
README.md, CONTRIBUTING.md, config/README.md and docs/**/*.md runs as written.

Each command is either run verbatim in a bash shell (in a copy of the finished tiny pipeline run,
whose ``config.yaml`` is the tiny config), run verbatim with ``-n`` added (a dry run: real
configs whose jobs need the real models, a GPU or the hub), or listed in ``NOT_RUN`` with the
reason. A command added to any of these files fails ``test_every_readme_command_is_classified``
until it is classified here; a classified command that left them all fails it too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.workflow import REPO

README = REPO / "README.md"
CI_SCRIPT = REPO / ".ci/run"


def documents() -> list[Path]:
    """Every file whose commands are a contract: the README, CONTRIBUTING, the config reference
    and every page of the documentation site."""
    pages = sorted((REPO / "docs").glob("**/*.md"))
    return [README, REPO / "CONTRIBUTING.md", REPO / "config/README.md", *pages]


BLOCK = re.compile(r"^```(bash|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class ReadmeCommand:
    text: str
    block: str  # "bash" or "console"
    output: tuple[str, ...]  # console blocks: the output shown after the command
    source: str = "README.md"  # the document it is written in, relative to the repository


def _join_continuations(lines: list[str]) -> list[str]:
    joined, pending = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].rstrip() + " "
        else:
            joined.append(pending + line.strip())
            pending = ""
    return joined


def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


def documented_commands() -> list[ReadmeCommand]:
    """The commands of every document's bash and console blocks, document by document."""
    return [
        command
        for path in documents()
        for command in readme_commands(path.read_text(), str(path.relative_to(REPO)))
    ]


def readme_commands(text: str | None = None, source: str = "README.md") -> list[ReadmeCommand]:
    """The commands of a document's bash and console blocks (the README's by default), in
    order, comments dropped."""
    commands = []
    for kind, body in BLOCK.findall(text if text is not None else README.read_text()):
        lines = body.splitlines()
        if kind == "bash":
            for line in _join_continuations(lines):
                if _strip_comment(line):
                    commands.append(ReadmeCommand(_strip_comment(line), kind, (), source))
            continue
        # console: "$ command" (continued with a trailing backslash), then its output
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            command_lines = [lines[i][2:]]
            while command_lines[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                command_lines.append(lines[i])
            i += 1
            output = []
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i])
                i += 1
            text_ = _strip_comment(" ".join(_join_continuations(command_lines)))
            commands.append(ReadmeCommand(text_, kind, tuple(output), source))
    return commands


# --- how each command is exercised ----------------------------------------------------------

FINISHED = "finished tiny run"  # verbatim, in a copy of the finished tiny pipeline run
DRY = "dry run in the repository"  # verbatim plus -n, with the repository's configs


@dataclass(frozen=True)
class Plan:
    where: str
    setup: Callable[[Path], None] | None = None  # prepares the working directory first
    expect_rc: int = 0


def _delete_peak_chunk(workdir: Path) -> None:
    """The damage the README's verify example shows."""
    (workdir / "results/tiny/stats.zarr/peak/c/0/0").unlink()


PLANS: dict[str, Plan] = {
    "snakemake --cores all": Plan(FINISHED),
    # Real config, real target: only smollm2's branch is planned (no Fashion-MNIST needed).
    "snakemake --cores all smollm2": Plan(DRY),
    "snakemake --cores all --configfile=config/paper.yaml": Plan(DRY),
    "snakemake --cores all --configfile=config/paper.yaml opt-1.3b": Plan(DRY),
    "snakemake -n": Plan(FINISHED),
    "snakemake --report report.html": Plan(FINISHED),
    # results/smollm2 is a link to the tiny model's results in the finished run.
    "neuron-ablation inspect smollm2": Plan(FINISHED),
    "neuron-ablation verify": Plan(FINISHED, setup=_delete_peak_chunk, expect_rc=1),
    "snakemake --unlock": Plan(FINISHED),
    "neuron-ablation inspect tiny": Plan(FINISHED),
    "neuron-ablation inspect tiny --layer 1 --neuron 2 --rows 12": Plan(FINISHED),
}

SLURM = (
    "needs a Slurm cluster: tests/workflow/test_slurm.py runs the profile's commands (plan, run, "
    "kill, --unlock, resume with --max-threads 1) on a real single-node cluster"
)
CI = "CI runs it: .ci/run calls it as written (test_ci_commands_are_what_ci_runs)"
NOT_RUN: dict[str, str] = {
    "apt-get install -y dataset-fashion-mnist": "needs root and the Debian mirror; .ci/run "
    "installs it, and tests needing it skip without it",
    'pip install torch==2.13.0 && pip install -e ".[dev]"': "installs this environment; .ci/run "
    "runs the same two installs before the tests",
    "python -m pytest -q --durations=15": "the test suite itself (this test is part of it); " + CI,
    'python -m pytest -q -m "not workflow and not benchmark"': "the test suite without "
    "tests/workflow/ (this test is part of it) and the benchmark smoke runs",
    "ruff check .": CI,
    "snakemake --lint --configfile config.yaml": CI,
    "mkdocs build --strict": CI,
    "huggingface-cli login": "needs a hub account and network",
    # tests/workflow/test_slurm.py runs these against a real single-node cluster (marker slurm).
    "snakemake --workflow-profile profiles/slurm -n": SLURM,
    "snakemake --workflow-profile profiles/slurm": SLURM,
    "snakemake --workflow-profile profiles/slurm --max-threads 1": SLURM,
    "snakemake --workflow-profile profiles/slurm --unlock": SLURM,
    "snakemake --workflow-profile profiles/slurm --default-resources "
    "slurm_account=<account> slurm_partition=<partition>": "placeholders for a site's account "
    "and partition",
}


def test_readme_parser_reads_bash_and_console_blocks():
    text = (
        "```bash\nsnakemake --cores all   # comment\n\nfoo \\\n  --bar\n```\n"
        "```console\n$ neuron-ablation inspect x   # note\nout 1\nout 2\n$ a \\\n    b\n```\n"
        "```yaml\nnot: a command\n```\n"
    )
    commands = readme_commands(text)
    assert [c.text for c in commands] == [
        "snakemake --cores all",
        "foo --bar",
        "neuron-ablation inspect x",
        "a b",
    ]
    assert commands[2].output == ("out 1", "out 2")


def test_the_contract_covers_every_documentation_page():
    names = [str(path.relative_to(REPO)) for path in documents()]
    assert names[:3] == ["README.md", "CONTRIBUTING.md", "config/README.md"]
    assert "docs/troubleshooting.md" in names and "docs/clusters.md" in names
    sources = {c.source for c in documented_commands()}
    assert {"README.md", "CONTRIBUTING.md", "docs/clusters.md"} <= sources


def test_every_readme_command_is_classified():
    commands = documented_commands()
    documented = {c.text for c in commands}
    classified = set(PLANS) | set(NOT_RUN)
    assert not set(PLANS) & set(NOT_RUN)
    unclassified = sorted({f"{c.source}: {c.text}" for c in commands if c.text not in classified})
    assert not unclassified, (
        f"documented commands not exercised by tests/workflow/test_readme.py: {unclassified}. "
        "Add each to PLANS (how it runs on CI) or NOT_RUN (why it cannot)."
    )
    stale = sorted(classified - documented)
    assert not stale, f"classified commands no longer in any document: {stale}"


def runs(command: str, line: str) -> bool:
    """Whether a shell line runs ``command`` as written (at most redirected, piped or commented)."""
    return re.match(re.escape(command) + r"(\s*$|\s+[|&>#])", line) is not None


def test_runs_matches_the_command_as_written_only():
    assert runs("ruff check .", "ruff check .")
    assert runs("snakemake --lint", "snakemake --lint >/dev/null || snakemake --lint")
    assert not runs("python -m pytest -q", "python -m pytest -q --durations=15")
    assert runs("mkdocs build --strict", "mkdocs build --strict   # the site")
    assert not runs("python -m pytest -q", "# python -m pytest -q")


def test_ci_commands_are_what_ci_runs():
    """A command the documentation says CI runs is a line of .ci/run as written (the README's
    test command among them)."""
    ci_lines = [line.strip() for line in CI_SCRIPT.read_text().splitlines()]
    claimed = [command for command, reason in NOT_RUN.items() if reason.endswith(CI)]
    assert "python -m pytest -q --durations=15" in claimed
    readme_tests = [c.text for c in readme_commands() if c.text.startswith("python -m pytest")]
    assert "python -m pytest -q --durations=15" in readme_tests
    missing = [c for c in claimed if not any(runs(c, line) for line in ci_lines)]
    assert not missing, f"documented as run by .ci/run, but not a line of it: {missing}"


# --- running them ---------------------------------------------------------------------------


def shell_env() -> dict[str, str]:
    """This interpreter's console scripts first on PATH, and this checkout's package first."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def run_verbatim(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=shell_env(), capture_output=True, text=True
    )


def as_dry_run(command: str) -> str:
    """The command with ``-n`` right after ``snakemake``, so the rest parses as written."""
    assert command.startswith("snakemake "), command
    return "snakemake -n " + command.removeprefix("snakemake ")


def link_workflow(workdir: Path, *extra: str) -> None:
    """Make ``workdir`` look like a checkout: Snakefile, rules, profiles (and ``extra``)."""
    for name in ("Snakefile", "workflow", "profiles", *extra):
        (workdir / name).symlink_to(REPO / name)


@pytest.fixture(scope="module")
def finished_run(pipeline_run, tmp_path_factory) -> Path:
    """A copy of the finished tiny run laid out as a checkout, ``results/smollm2`` -> tiny."""
    source, _ = pipeline_run
    workdir = tmp_path_factory.mktemp("readme") / "finished"
    shutil.copytree(source, workdir, symlinks=True)  # copy2 keeps times: nothing is outdated
    link_workflow(workdir)
    (workdir / "results/smollm2").symlink_to("tiny", target_is_directory=True)
    return workdir


@pytest.fixture(scope="module")
def repository_copy(tmp_path_factory) -> Path:
    """The repository's Snakefile and configs in a scratch directory (dry runs write
    .snakemake/ there, not in the checkout)."""
    workdir = tmp_path_factory.mktemp("readme") / "repository"
    workdir.mkdir()
    link_workflow(workdir, "config", "config.yaml")
    return workdir


def normalised(line: str) -> str:
    """A line of output with its numbers, bars and spacing abstracted: the README shows the
    format of an output; the values come from a tiny model."""
    line = re.sub(r"[█▏▎▍▌▋▊▉]+", "#", line)
    line = re.sub(r"[-+]?\d+(\.\d+)?", "0", line)
    return " ".join(line.split())


def assert_shows_readme_output(command: ReadmeCommand, stdout: str) -> None:
    produced = {normalised(line) for line in stdout.splitlines()}
    for line in command.output:
        if line.strip() in ("", "..."):
            continue
        assert normalised(line) in produced, (
            f"{command.source}: output line of `{command.text}` not produced:\n{line}\n"
            f"produced:\n{stdout}"
        )


def runnable_commands() -> list[ReadmeCommand]:
    """One run per documented command: a command written in several documents runs once, with
    the output one of them shows; only documents showing different outputs add runs."""
    unique = {(c.text, c.output): c for c in documented_commands() if c.text in PLANS}
    shown = {text for text, output in unique if output}
    return [c for (text, output), c in unique.items() if output or text not in shown]


@pytest.mark.parametrize("command", runnable_commands(), ids=lambda c: f"{c.source}: {c.text}")
def test_readme_command_runs_as_written(command, request, tmp_path):
    plan = PLANS[command.text]
    if plan.where == DRY:
        cwd = request.getfixturevalue("repository_copy")
        text = as_dry_run(command.text)
    else:
        finished = request.getfixturevalue("finished_run")
        cwd = finished
        if plan.setup is not None:  # damage a private copy, not the shared one
            cwd = tmp_path / "run"
            shutil.copytree(finished, cwd, symlinks=True)
            plan.setup(cwd)
        text = command.text
    result = run_verbatim(text, cwd)
    assert result.returncode == plan.expect_rc, (
        f"`{text}` in {cwd} exited {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    assert "Traceback" not in result.stderr
    assert_shows_readme_output(command, result.stdout)
    if command.text == "snakemake --report report.html":
        assert "tiny.png" in (cwd / "report.html").read_text()
    if command.text == "snakemake -n":
        assert "Nothing to be done" in result.stdout + result.stderr  # the run is cached


def test_target_after_space_separated_configfile_is_read_as_a_config(repository_copy):
    """Why the README writes ``--configfile=FILE``: the old form fails (and the test sees it)."""
    result = run_verbatim(
        "snakemake -n --cores all --configfile config/paper.yaml opt-1.3b", repository_copy
    )
    assert result.returncode != 0
    assert "No such file or directory: 'opt-1.3b'" in result.stdout + result.stderr


def test_documented_unlock_clears_a_stale_lock(finished_run, tmp_path):
    """A lock left by a killed run stops every rerun until the README's `snakemake --unlock`."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)
    locks = workdir / ".snakemake/locks"
    locks.mkdir(parents=True, exist_ok=True)
    # What a killed Snakemake leaves behind: its output lock (the files it was creating).
    (locks / "0.output.lock").write_text("results/tables/ablation.csv\n")
    (workdir / "results/tables/ablation.csv").unlink()  # something to do, so it locks
    stopped = run_verbatim("snakemake --cores all", workdir)
    assert stopped.returncode != 0 and "LockException" in stopped.stdout + stopped.stderr
    assert run_verbatim("snakemake --unlock", workdir).returncode == 0
    resumed = run_verbatim("snakemake --cores all", workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (workdir / "results/tables/ablation.csv").exists()


def test_the_rebuild_command_verify_prints_repairs_the_damage(finished_run, tmp_path):
    """`neuron-ablation verify` names a damaged result and a command; running it repairs it."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)
    damaged = "results/tiny/eval/zero/seed1/frac0.90.json"
    (workdir / damaged).write_bytes(b"")
    report = run_verbatim("neuron-ablation verify", workdir)
    assert report.returncode == 1 and f"DAMAGED {damaged}: the JSON file is empty" in report.stdout
    (rebuild,) = re.findall(r"^  rebuild: (.+)$", report.stdout, flags=re.MULTILINE)
    assert rebuild == f"snakemake --cores all --forcerun {damaged}"
    repaired = run_verbatim(rebuild, workdir)
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert run_verbatim("neuron-ablation verify", workdir).returncode == 0
