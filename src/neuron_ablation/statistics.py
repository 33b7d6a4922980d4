"""Stage 2: per-neuron mean and aligned histograms of attention pre-out activations -> Zarr.

One pass over the statistics sequences with a forward pre-hook on every attention output
projection. Every position of every sequence counts (BOS/CLS included, as in the paper).

Store layout (``results/{model}/stats.zarr``; open with ``xarray.open_zarr``):

====================  ====================  =====================================================
array                 dims                  meaning
====================  ====================  =====================================================
mean                  layer, neuron         float64 mean over all positions
count                 layer, neuron         int64 number of activations seen
hist                  layer, neuron, bin    int64 counts of tracked bins
underflow, overflow   layer, neuron         int64 counts below / at or above the tracked range
peak                  layer, neuron         float64 (k_max + 0.5) * bin_width
layer, neuron, bin    (coordinates)         int indices; ``bin`` holds the integer k of each bin
====================  ====================  =====================================================

Bin ``k`` covers ``[k * bin_width, (k + 1) * bin_width)``; the left edge of the bin at position j
is ``bin[j] * bin_width`` computed in float64 (``bin[j] == bin_index_offset + j``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from torch import nn
from tqdm import tqdm

from neuron_ablation.architectures import attention_output_projections, neuron_widths
from neuron_ablation.finite import located, of_model, require_finite
from neuron_ablation.histogram import (
    Backend,
    BinGrid,
    NeuronHistogram,
    layer_histograms,
    peak_values,
)
from neuron_ablation.hooks import hooks_installed
from neuron_ablation.integrity_zarr import (
    CHECKABLE_CHUNKS,
    INTEGRITY_ATTR,
    create_checkable_array,
    open_statistics_store,
    read_array,
)
from neuron_ablation.io import atomic_output
from neuron_ablation.provenance import PROVENANCE_KEY

log = logging.getLogger("neuron_ablation")

HOOK_POINT = "input of the attention output projection (TransformerLens hook_z, heads flattened)"


def forward_kwargs(batch: dict[str, np.ndarray], model: nn.Module) -> dict[str, torch.Tensor]:
    """numpy columns of one batch -> the keyword arguments of the model's forward: ``input_ids``
    long [sequence, position] and/or ``pixel_values`` [image, channel, height, width] in the
    model's dtype, on its device (other columns, e.g. labels, are left out)."""
    parameter = next(model.parameters())
    inputs = {}
    if "input_ids" in batch:
        inputs["input_ids"] = as_tensor(batch["input_ids"], parameter.device, torch.long)
    if "pixel_values" in batch:
        inputs["pixel_values"] = as_tensor(batch["pixel_values"], parameter.device, parameter.dtype)
    return inputs


def as_tensor(values: np.ndarray, device: torch.device, dtype: torch.dtype | None = None):
    """Copy a (possibly read-only, memory-mapped) numpy array to a tensor on ``device``."""
    return torch.from_numpy(np.array(values)).to(device=device, dtype=dtype)


def iter_batches(
    columns: dict[str, np.ndarray], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    n = len(next(iter(columns.values())))
    for start in range(0, n, batch_size):
        yield {name: values[start : start + batch_size] for name, values in columns.items()}


@torch.inference_mode()
def collect_statistics(
    model: nn.Module,
    columns: dict[str, np.ndarray],
    grid: BinGrid,
    batch_size: int = 8,
    progress: bool = True,
    backend: Backend = "auto",
    histograms: Sequence[NeuronHistogram] | None = None,
) -> list[NeuronHistogram]:
    """Run the model over ``columns`` and histogram every layer's z.

    Raises:
        NonFiniteError: a layer's z or the body's output holds NaN or infinity; the message
            names the first module whose output is not finite (nothing is histogrammed).

    Args:
        columns: model inputs, e.g. ``{"input_ids": int [sequence, position]}``.
        progress: show a progress bar (stderr).
        backend: the histogram update (:mod:`neuron_ablation.histogram`); ``auto`` is exact and
            fastest everywhere, the others are for comparisons.
        histograms: per layer, histograms to add to (over ``grid``); new ones when omitted.
    """
    device = next(model.parameters()).device
    if histograms is None:
        histograms = layer_histograms(neuron_widths(model), grid, device, backend)
    projections = attention_output_projections(model)
    hooks = [
        (projection, _update_hook(h, layer))
        for layer, (projection, h) in enumerate(zip(projections, histograms, strict=True))
    ]
    n_items = len(next(iter(columns.values())))
    batch: dict[str, torch.Tensor] = {}

    def body() -> Any:
        # z does not depend on the task head: skipping it saves the vocabulary projection.
        return model.base_model(**batch)

    # located() runs the failed batch again after the histogram hooks are gone.
    with (
        located(model, body),
        hooks_installed(hooks),
        tqdm(total=n_items, unit="seq", desc="statistics", disable=not progress) as bar,
    ):
        for columns_batch in iter_batches(columns, batch_size):
            batch = forward_kwargs(columns_batch, model)
            # Later layers' damage never reaches a hooked z of the last layer: check the output.
            require_finite(body()[0], "the model body's outputs (last hidden states)")
            bar.update(len(next(iter(columns_batch.values()))))
            bar.set_postfix(tokens=histograms[0].count)
    return list(histograms)


def _update_hook(histogram: NeuronHistogram, layer: int):
    what = f"layer {layer}'s activations at the input of its attention output projection"

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        histogram.update(args[0], what)

    return hook


def write_statistics(
    path: str | Path,
    histograms: Sequence[NeuronHistogram],
    attrs: dict[str, Any],
) -> None:
    """Write the Zarr store described in the module docstring (atomically)."""
    grid = histograms[0].grid
    parts = [h.histogram() for h in histograms]
    hist, underflow, overflow = (np.stack([p[i] for p in parts]) for i in range(3))
    mean = np.stack([h.mean() for h in histograms])
    count = np.stack([np.full(h.n_neurons, h.count, dtype=np.int64) for h in histograms])
    n_layers, n_neurons = mean.shape
    arrays = {
        "layer": (np.arange(n_layers), ["layer"]),
        "neuron": (np.arange(n_neurons), ["neuron"]),
        "bin": (grid.bin_indices(), ["bin"]),
        "mean": (mean, ["layer", "neuron"]),
        "count": (count, ["layer", "neuron"]),
        "hist": (hist, ["layer", "neuron", "bin"]),
        "underflow": (underflow, ["layer", "neuron"]),
        "overflow": (overflow, ["layer", "neuron"]),
        "peak": (peak_values(hist, grid), ["layer", "neuron"]),
    }
    store_attrs = {
        "bin_width": grid.bin_width,
        "bin_index_offset": grid.k_lo,
        "n_bins": grid.n_bins,
        "bin_edges": (
            "bin k covers [k * bin_width, (k + 1) * bin_width); the coordinate 'bin' holds k, so "
            "the left edge at position j is float64(bin[j]) * bin_width with "
            "bin[j] == bin_index_offset + j"
        ),
        "peak_definition": "(k_max + 0.5) * bin_width, k_max the fullest bin, ties to lowest k",
        "hook_point": HOOK_POINT,
        "neuron_index": "head * d_head + dim",
        INTEGRITY_ATTR: CHECKABLE_CHUNKS,
        **attrs,
    }
    with atomic_output(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", attributes=store_attrs)
        for name, (data, dims) in arrays.items():
            chunks = (1, *data.shape[1:]) if name == "hist" else data.shape
            create_checkable_array(group, name, data, chunks, dims)
        zarr.consolidate_metadata(str(tmp))


def open_statistics(path: str | Path, counts: bool = False) -> zarr.Group:
    """The store after its integrity check
    (:func:`neuron_ablation.integrity_zarr.open_statistics_store`: every chunk present; with
    ``counts``, histogram counts and peaks consistent)."""
    return open_statistics_store(path, counts)


def ablation_constants(path: str | Path, method: str) -> list[torch.Tensor]:
    """Per layer float [neuron] constants of a constant method from a statistics store."""
    if method == "zero":
        raise ValueError("zero ablation needs no statistics")
    store = open_statistics(path)
    values = read_array(path, store, method)
    return [torch.from_numpy(row) for row in values]


def run_statistics(
    model_source: str,
    task: str,
    tokens: str,
    out: str,
    bin_width: float,
    value_range: tuple[float, float] = (-10.0, 10.0),
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "float32",
    model_name: str = "",
    dataset_name: str = "",
    model_digest: str | None = None,
) -> None:
    """Stage 2: per-neuron histograms of bin width ``bin_width`` over ``value_range`` (and the
    moments and constants derived from them) of the model on ``tokens`` -> the Zarr store ``out``.
    """
    from neuron_ablation.histogram import BinGrid
    from neuron_ablation.models import load_model_and_inputs
    from neuron_ablation.provenance import check_artifact, make_record, model_input

    grid = BinGrid.covering(bin_width, *value_range)
    model_record = model_input(model_source, model_digest)
    check_artifact(tokens, {"inputs.model": model_record["id"]})  # this model's tokenizer
    settings = {"bin_width": bin_width, "range": list(value_range), "dtype": dtype}
    provenance = make_record({"model": model_record, "tokens": tokens}, settings)
    model, columns = load_model_and_inputs(model_source, task, tokens, device, dtype)
    started = time.perf_counter()
    with of_model(model_name or model_source, "statistics"):
        histograms = collect_statistics(model, columns, grid, batch_size)
    attrs = {
        "model": model_name,
        "model_source": model_source,
        "dataset": dataset_name,
        "n_tokens": histograms[0].count,
        "dtype": dtype,
        PROVENANCE_KEY: provenance,
    }
    seconds = time.perf_counter() - started  # logged, not stored: equal runs give equal stores
    write_statistics(out, histograms, attrs)
    log.info(
        "wrote %s (%d tokens, %d bins, %.1f s)", out, histograms[0].count, grid.n_bins, seconds
    )
