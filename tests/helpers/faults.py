"""Fault injection and artifact comparison, shared by tests/workflow/test_faults.py and
benchmarks/bad_inputs.py.

A kill is injected at the worst moment of a job: a stand-in ``neuron-ablation`` (first on PATH)
runs the real CLI, but when the subcommand named in ``$NEURON_ABLATION_KILL_AT`` commits its
first artifact (``os.replace`` of an ``atomic_output`` temporary) it sends itself SIGKILL: the
artifact is fully written to the temporary and nothing is in place yet.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.workflow import REPO, snakemake_command

KILL_AT = "NEURON_ABLATION_KILL_AT"

_KILLING_CLI = f'''#!{sys.executable}
"""neuron-ablation, killed with SIGKILL when ${KILL_AT} commits its first artifact."""
import os
import signal
import sys

if sys.argv[1:2] == [os.environ.get("{KILL_AT}")]:
    def _die_at_commit(src, dst, *args, **kwargs):
        name = os.path.basename(os.fspath(src))
        if name.startswith(".") and name.endswith(".tmp"):
            os.kill(os.getpid(), signal.SIGKILL)
        return _replace(src, dst, *args, **kwargs)

    _replace = os.replace
    os.replace = _die_at_commit

from neuron_ablation.cli import main

sys.exit(main())
'''


def killing_cli_bin(directory: Path) -> Path:
    """A bin directory with the killing ``neuron-ablation``; put it first on PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "neuron-ablation"
    script.write_text(_KILLING_CLI)
    script.chmod(0o755)
    return directory


def environment(kill_at: str | None = None, bin_dir: Path | None = None, **extra: str) -> dict:
    """The environment of a run: this checkout's package first, optionally the killing CLI."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
    )
    env.pop(KILL_AT, None)
    if kill_at is not None:
        assert bin_dir is not None, "the killing CLI needs its bin directory"
        env[KILL_AT] = kill_at
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env | extra


def run_snakemake(
    workdir: Path, configfile: Path, *args: str, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_command(workdir, configfile, *args),
        capture_output=True,
        text=True,
        env=env or environment(),
    )


def artifact_digests(results: Path) -> dict[str, str]:
    """sha256 of every artifact under ``results`` (logs, benchmarks and Snakemake's directory
    timestamps excluded: they record times, not results)."""
    digests = {}
    for path in sorted(results.rglob("*")):
        relative = path.relative_to(results)
        if not path.is_file() or relative.parts[0] in ("logs", "benchmarks"):
            continue
        if path.name == ".snakemake_timestamp":
            continue
        digests[relative.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def leftover_temporaries(root: Path) -> list[str]:
    """Temporaries of interrupted atomic writes (``.{name}.{id}.tmp``) anywhere under ``root``."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*.tmp"))


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def descendants(ancestor: int) -> set[int]:
    """Every process below ``ancestor`` in the process tree."""
    parents = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and (stat := _stat(int(proc.name))):
            parents[int(proc.name)] = stat[1]
    found, frontier = set(), {ancestor}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def processes_with(ancestor: int, *words: str) -> list[int]:
    """Live descendants of ``ancestor`` whose command line holds every word as one argument."""
    pids = []
    for pid in descendants(ancestor):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if alive(pid) and all(word in argv for word in words):
            pids.append(pid)
    return pids


def wait_for(condition, timeout_s: float, interval_s: float = 0.05):
    """Poll ``condition()`` until it returns something truthy; raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"condition not met within {timeout_s} s")


def kill_snakemake_during(
    command: list[str], env: dict, job_words: tuple[str, ...], timeout_s: float = 300
) -> list[int]:
    """Start Snakemake, SIGKILL it (only it) once a job matching ``job_words`` runs; wait until
    the jobs it had started are gone too. Returns the orphaned job pids."""
    snakemake = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        orphans = wait_for(lambda: processes_with(snakemake.pid, *job_words), timeout_s)
    finally:
        snakemake.send_signal(signal.SIGKILL)
        snakemake.wait()
    wait_for(lambda: not any(alive(pid) for pid in orphans), timeout_s)
    return orphans
