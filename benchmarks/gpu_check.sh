#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on a machine that holds a copy of this repository but
# perhaps not its install, e.g. a bare GPU machine with a CUDA build of torch and no internet:
#
#     bash benchmarks/gpu_check.sh OUT_DIR [options of python -m benchmarks.gpu_check]
#
# It installs the project without replacing the machine's torch (editable, --no-deps, offline
# where the build backend is there), installs only the dependencies `pip check` reports missing
# (this needs an index; without one it names them and stops), then runs the check: device cuda
# unless the options say otherwise. Exit status: the check's (0 passed, 1 mismatch or failure,
# 2 bad arguments), 3 when the install is incomplete.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: bash benchmarks/gpu_check.sh OUT_DIR [options of python -m benchmarks.gpu_check]" >&2
  exit 2
fi
python=${PYTHON:-python}

command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L || echo "note: no nvidia-smi on this machine"

if "$python" -c "import torch, transformers" 2>/dev/null; then
  # Keep the installed (CUDA) torch: a dependency resolution could swap it for another build.
  "$python" -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null ||
    "$python" -m pip install --quiet --no-deps -e .
  # `pip check` lines: "neuron-ablation 0.1.0 requires zarr, which is not installed." and
  # "neuron-ablation 0.1.0 has requirement zarr>=3.0, but you have zarr 2.18."
  missing=$("$python" -m pip check 2>/dev/null |
    sed -n -e 's/^neuron-ablation [^ ]* requires \([^,]*\), which is not installed\./\1/p' \
      -e 's/^neuron-ablation [^ ]* has requirement \([^,]*\), but you have .*/\1/p' || true)
  if [ -n "$missing" ]; then
    echo "installing the missing dependencies: $missing"
    # shellcheck disable=SC2086 # one requirement per word
    "$python" -m pip install --quiet $missing || {
      echo "error: these dependencies of neuron-ablation are missing and could not be installed:" \
        "$missing (install them, then rerun)" >&2
      exit 3
    }
  fi
else
  "$python" -m pip install --quiet -e .
fi

# The pipeline's jobs call the `neuron-ablation` script: where pip put it must be on PATH.
scripts=$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$scripts:$HOME/.local/bin:$PATH"
command -v neuron-ablation >/dev/null || { echo "error: neuron-ablation is not on PATH" >&2; exit 3; }

exec "$python" -m benchmarks.gpu_check "$@"
