"""docs/examples/quickstart.py, the Python API's example notebook, runs end to end on the tiny
pipeline's run and writes its figures."""

from __future__ import annotations

import os
import subprocess
import sys

from neuron_ablation.integrity import check_png
from tests.helpers.workflow import REPO

EXAMPLE = REPO / "docs" / "examples" / "quickstart.py"
FIGURES = ("neuron_histogram.png", "loss_by_fraction.png")


def test_quickstart_example_runs_on_a_finished_run(pipeline_run, tmp_path):
    workdir, _ = pipeline_run
    env = os.environ | {
        "NEURON_ABLATION_RUN": str(workdir),
        "NEURON_ABLATION_FIGURES": str(tmp_path / "figures"),
        "MPLBACKEND": "Agg",
    }
    # A fresh process in a directory of its own: the notebook needs nothing but the run.
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for figure in FIGURES:
        check_png(tmp_path / "figures" / figure)
    out = done.stdout
    assert "models of the run: ('tiny',)" in out
    assert "peak-ablated (32 neurons):" in out  # 50 % of 2 layers x 32 neurons
    lines = {line.split(":", 1)[0].strip(): line for line in out.splitlines() if ":" in line}
    assert lines["clean"].split(":", 1)[1] == lines["after"].split(":", 1)[1]
