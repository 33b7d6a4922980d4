"""Ablation of attention pre-out neurons: zero, mean, peak and resampling, after Pochinkov et al.

The Python API (docs/python-api.md)::

    import neuron_ablation as na

    run = na.open_run("path/to/run")              # a finished pipeline run
    ds = run.statistics("smollm2")                # xarray.Dataset: mean, peak, hist, ...
    model = run.load_model("smollm2")
    with na.ablated(model, run, "smollm2", method="peak", fraction=0.5, seed=0):
        ...                                       # the ablated model; weights restored after

The names below load on first use (PEP 562), so ``import neuron_ablation`` (and with it every
``neuron-ablation`` command) imports neither torch nor xarray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Ablation",
    "Run",
    "__version__",
    "ablated",
    "collect_statistics",
    "evaluate",
    "open_run",
    "to_heads",
]

if TYPE_CHECKING:
    from neuron_ablation.api import (
        Ablation,
        Run,
        ablated,
        collect_statistics,
        evaluate,
        open_run,
        to_heads,
    )


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        return getattr(importlib.import_module("neuron_ablation.api"), name)
    raise AttributeError(f"module 'neuron_ablation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
