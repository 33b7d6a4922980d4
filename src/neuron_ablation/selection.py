"""Random, nested neuron selection: one rank per neuron, per layer and seed.

A neuron is ablated at fraction ``f`` iff ``rank < round(f * n_neurons_in_layer)``, so the ablated
set grows monotonically with ``f`` (nested), each layer loses the same share of its neurons, and
``f = 1`` ablates every neuron. Ranks come from ``numpy.random.default_rng(seed)``, one permutation
per layer in layer order, independent of any global RNG.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

from neuron_ablation.integrity_zarr import (
    CHECKABLE_CHUNKS,
    INTEGRITY_ATTR,
    create_checkable_array,
    read_selection_ranks,
)
from neuron_ablation.io import atomic_output
from neuron_ablation.provenance import PROVENANCE_KEY

if TYPE_CHECKING:
    import torch

log = logging.getLogger("neuron_ablation")


def neuron_ranks(widths: Sequence[int], seed: int) -> np.ndarray:
    """int64 [layer, neuron]: a random permutation of 0..width-1 in every layer."""
    if len(set(widths)) != 1:
        raise ValueError(f"layers of different widths are not supported: {sorted(set(widths))}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(width) for width in widths]).astype(np.int64)


def n_ablated_per_layer(fraction: float, width: int) -> int:
    """``round(fraction * width)``, Python's round (half to even)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return round(fraction * width)


def ablation_masks(ranks: np.ndarray, fraction: float) -> list[torch.Tensor]:
    """Per layer bool [neuron]: the neurons ablated at ``fraction``."""
    import torch

    return [torch.from_numpy(row < n_ablated_per_layer(fraction, len(row))) for row in ranks]


def write_selection(
    path: str | Path, ranks: np.ndarray, seed: int, provenance: dict | None = None
) -> None:
    """Write the ranks int64 [layer, neuron] of ``seed`` with their provenance record."""
    with atomic_output(path) as tmp:
        group = zarr.open_group(
            str(tmp),
            mode="w",
            attributes={
                "seed": seed,
                "rule": "ablated at fraction f iff rank < round(f * n_neurons_in_layer)",
                "rng": "numpy.random.default_rng(seed).permutation(width), one per layer in order",
                INTEGRITY_ATTR: CHECKABLE_CHUNKS,
                PROVENANCE_KEY: provenance,
            },
        )
        create_checkable_array(group, "rank", ranks, ranks.shape, ["layer", "neuron"])
        zarr.consolidate_metadata(str(tmp))


def read_ranks(path: str | Path) -> np.ndarray:
    """int64 [layer, neuron], checked: every chunk present, a permutation in every layer."""
    return read_selection_ranks(path)


def write_model_selection(
    model_source: str, task: str, seed: int, out: str, model_digest: str | None = None
) -> None:
    """Stage 3: the nested random order of the model's neurons for ``seed`` -> Zarr ``out``.

    The widths come from ``config.json`` where it states them (no torch, no transformers: a
    job of milliseconds after Python starts); the evaluation checks them against the model."""
    from neuron_ablation.model_shapes import config_neuron_widths
    from neuron_ablation.provenance import make_record, model_input

    provenance = make_record({"model": model_input(model_source, model_digest)}, {"seed": seed})
    widths = config_neuron_widths(model_source)
    if widths is None:
        from neuron_ablation.models import neuron_widths_of

        widths = neuron_widths_of(model_source, task)
    ranks = neuron_ranks(widths, seed)
    write_selection(out, ranks, seed, provenance)
    log.info("wrote %s", out)
