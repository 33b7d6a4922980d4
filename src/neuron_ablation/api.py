"""The Python API: open a finished run, ablate a live model, collect statistics in a notebook.

Everything here is a thin layer over the pipeline's own functions, so a notebook sees exactly
what the Snakemake stages computed:

- :func:`open_run` reads a run directory (``results/`` and its config) through the same checked
  readers the stages and ``neuron-ablation verify`` use: a damaged artifact raises
  :class:`~neuron_ablation.integrity.DamagedArtifact` naming the file and the command that
  rebuilds it; a missing one raises :class:`FileNotFoundError` with that command
  (:mod:`neuron_ablation.api_run`).
- :func:`ablated` folds a constant ablation into a model's attention output projections with
  :func:`neuron_ablation.ablation.folded_constant_ablation`, the fold the ``evaluate`` stage
  scores with, and restores the weights bit for bit on exit; :func:`evaluate` scores a model as
  that stage does (:mod:`neuron_ablation.api_model`).
- :func:`collect_statistics` runs the ``statistics`` stage's pass and store writer on the
  user's own batches and returns the store as an ``xarray.Dataset``
  (:mod:`neuron_ablation.api_statistics`).

A *neuron* is one input feature of a layer's attention output projection: TransformerLens'
``hook_z`` with heads flattened, index = head * d_head + dim (:func:`to_heads` unflattens).

Only torch-free modules are imported by these modules at module level; torch, transformers and
zarr load when a function needs them, so ``import neuron_ablation`` stays cheap for the CLI.
"""

from __future__ import annotations

from neuron_ablation.api_model import Ablation, ablated, evaluate
from neuron_ablation.api_run import Run, open_run, to_heads
from neuron_ablation.api_statistics import collect_statistics

__all__ = [
    "Ablation",
    "Run",
    "ablated",
    "collect_statistics",
    "evaluate",
    "open_run",
    "to_heads",
]
