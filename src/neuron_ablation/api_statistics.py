"""The Python API, statistics without Snakemake: :func:`collect_statistics` runs the
``statistics`` stage's pass and store writer on the user's own batches and returns the store as
an ``xarray.Dataset``.

Only torch-free modules are imported at module level (see :mod:`neuron_ablation.api`).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuron_ablation.api_model import eval_mode

if TYPE_CHECKING:
    import numpy as np
    import torch
    import xarray as xr
    from torch import nn

MODEL_INPUT_COLUMNS = ("input_ids", "pixel_values")
"""What the statistics pass feeds the model (:func:`neuron_ablation.statistics.forward_kwargs`)."""

Batch = Mapping[str, Any]


def collect_statistics(
    model: nn.Module,
    batches: Iterable[Batch | np.ndarray | torch.Tensor],
    bin_width: float = 0.01,
    range: tuple[float, float] = (-10.0, 10.0),  # noqa: A002 (the name of the config field)
    *,
    out: str | Path | None = None,
    name: str = "",
    progress: bool = False,
) -> xr.Dataset:
    """The ``statistics`` stage on your own batches: per-neuron mean and aligned histograms.

    The pass (:func:`neuron_ablation.statistics.collect_statistics`) and the store writer
    (:func:`neuron_ablation.statistics.write_statistics`) are the stage's; the Dataset is read
    back from the store like :meth:`Run.statistics`, with the same variables and attrs.

    Args:
        batches: each an int tensor/array ``input_ids`` [batch, position], or a mapping with
            ``input_ids`` (text) or ``pixel_values`` float [batch, channel, height, width]
            (vision). Every position counts, so no padding: no ``attention_mask``.
        bin_width: width of the aligned bins (bin k covers [k * bin_width, (k + 1) * bin_width)).
        range: the tracked interval; values outside count in ``underflow`` / ``overflow``.
        out: write the store there (a ``.zarr`` directory) and return it lazily; by default it is
            written to a temporary directory and returned loaded in memory.
        name: the model name recorded in the store's attrs.
    """
    from neuron_ablation.histogram import BinGrid

    if not isinstance(range, Sequence) or len(range) != 2:
        raise ValueError(f"range: a pair (low, high), got {range!r}")
    grid = BinGrid.covering(bin_width, *range)
    histograms = None
    with eval_mode(model):
        for batch in batches:
            histograms = _add_batch(model, _batch_columns(batch), grid, histograms, progress)
    if histograms is None:
        raise ValueError("batches: no batch given")
    attrs = _statistics_attrs(model, name, histograms[0].count)
    if out is not None:
        return _written_statistics(Path(out), histograms, attrs)
    with tempfile.TemporaryDirectory(prefix="neuron-ablation-stats-") as tmp:
        dataset = _written_statistics(Path(tmp) / "stats.zarr", histograms, attrs).load()
        dataset.close()
    return dataset


def _add_batch(model, columns, grid, histograms, progress: bool):
    from neuron_ablation.statistics import collect_statistics as statistics_pass

    n_rows = len(next(iter(columns.values())))
    return statistics_pass(
        model, columns, grid, batch_size=n_rows, progress=progress, histograms=histograms
    )


def _batch_columns(batch: Batch | np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """One user batch as the pass's numpy columns; bad keys and shapes stop before its forward."""
    if not isinstance(batch, Mapping):
        batch = {"input_ids": batch}
    unknown = sorted(set(batch) - set(MODEL_INPUT_COLUMNS))
    if unknown:
        raise ValueError(
            f"batches: unsupported keys {unknown}; a batch holds one of "
            f"{list(MODEL_INPUT_COLUMNS)} (every position counts, so no attention_mask: pass "
            "unpadded sequences of one length)"
        )
    if len(batch) != 1:
        raise ValueError(
            f"batches: one of {list(MODEL_INPUT_COLUMNS)} per batch, got {list(batch)}"
        )
    key, values = next(iter(batch.items()))
    array = _as_numpy(values)
    expected = 2 if key == "input_ids" else 4
    if array.ndim != expected or len(array) == 0:
        raise ValueError(
            f"batches: {key} must be a non-empty array of {expected} dimensions, got shape "
            f"{array.shape}"
        )
    return {key: array}


def _as_numpy(values: Any) -> np.ndarray:
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _statistics_attrs(model: nn.Module, name: str, n_tokens: int) -> dict[str, Any]:
    parameter = next(model.parameters())
    source = getattr(getattr(model, "config", None), "name_or_path", "") or ""
    return {
        "model": name or source,
        "model_source": source,
        "dataset": "batches passed to neuron_ablation.collect_statistics",
        "n_tokens": n_tokens,
        "dtype": str(parameter.dtype).removeprefix("torch."),
    }


def _written_statistics(path: Path, histograms, attrs: dict[str, Any]) -> xr.Dataset:
    from neuron_ablation.inspection import open_store
    from neuron_ablation.statistics import write_statistics

    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not yet part of the v3 spec; the stage's too.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        write_statistics(path, histograms, attrs)
    return open_store(path)
