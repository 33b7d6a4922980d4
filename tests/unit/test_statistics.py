"""Stage 2: the statistics pass (what it hooks, how it batches) and its store (the layout of the
module docstring, the constants the evaluation reads), against numpy references."""

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from neuron_ablation.histogram import BinGrid, NeuronHistogram
from neuron_ablation.models import load_model
from neuron_ablation.statistics import (
    ablation_constants,
    collect_statistics,
    forward_kwargs,
    iter_batches,
    open_statistics,
    write_statistics,
)


def numpy_statistics(values: np.ndarray, grid: BinGrid) -> dict[str, np.ndarray]:
    """The store's arrays for one layer, from values float64 [observation, neuron] with numpy:
    the mean, np.histogram over the float64 edges k * bin_width, what falls outside them, and
    the peak (the centre of the fullest bin, ties to the lowest k as np.argmax has them)."""
    edges = np.append(grid.left_edges(), grid.k_hi * grid.bin_width)
    inside = (values >= edges[0]) & (values < edges[-1])
    hist = np.stack(
        [np.histogram(v[keep], bins=edges)[0] for v, keep in zip(values.T, inside.T, strict=True)]
    )
    return {
        "mean": values.mean(axis=0),
        "hist": hist,
        "underflow": (values < edges[0]).sum(axis=0),
        "overflow": (values >= edges[-1]).sum(axis=0),
        "peak": (grid.bin_indices()[hist.argmax(axis=1)] + 0.5) * grid.bin_width,
    }


def histograms_of(layers: list[np.ndarray], grid: BinGrid) -> list[NeuronHistogram]:
    """One histogram per layer of values [observation, neuron], fed in uneven chunks."""
    histograms = []
    for values in layers:
        h = NeuronHistogram(values.shape[1], grid)
        for chunk in np.array_split(values, 3):
            h.update(torch.from_numpy(chunk))
        histograms.append(h)
    return histograms


GRID = BinGrid.covering(0.25, -2.0, 2.0)


@pytest.fixture
def random_store(tmp_path):
    """A store of two layers of four neurons (each around its own centre, some values outside
    the grid), and the values it was made from."""
    rng = np.random.default_rng(0)
    centres = np.array([-1.0, -0.3, 0.4, 1.2])
    layers = [rng.normal(centres, 0.6, size=(400, 4)) for _ in range(2)]
    path = tmp_path / "stats.zarr"
    write_statistics(path, histograms_of(layers, GRID), {"model": "m", "dataset": "d"})
    return path, layers


def test_store_holds_numpy_mean_histogram_and_peak(random_store):
    path, layers = random_store
    store = open_statistics(path, counts=True)  # its own consistency check passes
    for layer, values in enumerate(layers):
        expected = numpy_statistics(values, GRID)
        np.testing.assert_allclose(store["mean"][layer], expected["mean"], rtol=1e-12)
        for name in ("hist", "underflow", "overflow"):
            np.testing.assert_array_equal(store[name][layer], expected[name], err_msg=name)
        np.testing.assert_array_equal(store["peak"][layer], expected["peak"])
        np.testing.assert_array_equal(store["count"][layer], [len(values)] * 4)
    assert store["overflow"][:].sum() > 0 and store["underflow"][:].sum() > 0


def test_store_layout_is_the_documented_one(random_store):
    path, _ = random_store
    ds = xr.open_zarr(path)
    assert ds["hist"].dims == ("layer", "neuron", "bin")
    assert ds["mean"].dims == ds["peak"].dims == ("layer", "neuron")
    np.testing.assert_array_equal(ds["bin"], GRID.bin_indices())
    # the left edge of the bin at position j is float64(bin[j]) * bin_width
    np.testing.assert_array_equal(ds["bin"].values * ds.attrs["bin_width"], GRID.left_edges())
    assert ds.attrs["bin_index_offset"] == GRID.k_lo and ds.attrs["n_bins"] == GRID.n_bins
    assert (ds.attrs["model"], ds.attrs["dataset"]) == ("m", "d")


@pytest.mark.parametrize("method", ["mean", "peak"])
def test_ablation_constants_are_the_method_array_per_layer(random_store, method):
    path, layers = random_store
    constants = ablation_constants(path, method)
    assert len(constants) == len(layers)
    for values, row in zip(layers, constants, strict=True):
        assert row.shape == (4,) and row.dtype == torch.float64
        np.testing.assert_allclose(row.numpy(), numpy_statistics(values, GRID)[method], rtol=1e-12)


def test_zero_ablation_reads_no_statistics(random_store):
    path, _ = random_store
    with pytest.raises(ValueError, match="zero ablation needs no statistics"):
        ablation_constants(path, "zero")


def test_the_pass_histograms_the_input_of_every_attention_output_projection(tiny_llama):
    """Llama's hook point, found independently of the adapter table: the input of
    ``self_attn.o_proj`` of each decoder layer, batch by batch as the pass feeds the model."""
    model = load_model(str(tiny_llama), "causal-lm", device="cpu")
    columns = {"input_ids": np.random.default_rng(1).integers(0, 60, size=(5, 12))}
    grid = BinGrid.covering(0.01, -0.2, 0.2)  # narrower than the activations: outliers too

    seen = {layer: [] for layer in range(len(model.model.layers))}
    handles = [
        block.self_attn.o_proj.register_forward_pre_hook(
            lambda _module, args, layer=layer: seen[layer].append(args[0].double().numpy())
        )
        for layer, block in enumerate(model.model.layers)
    ]
    with torch.inference_mode():
        for batch in iter_batches(columns, 2):
            model.base_model(input_ids=torch.from_numpy(batch["input_ids"]))
    for handle in handles:
        handle.remove()

    histograms = collect_statistics(model, columns, grid, batch_size=2, progress=False)
    assert len(histograms) == len(seen) == 2
    for layer, h in enumerate(histograms):
        values = np.concatenate([z.reshape(-1, z.shape[-1]) for z in seen[layer]])
        assert h.count == len(values) == 5 * 12
        expected = numpy_statistics(values, grid)
        hist, underflow, overflow = h.histogram()
        np.testing.assert_array_equal(hist, expected["hist"])
        np.testing.assert_array_equal(underflow, expected["underflow"])
        np.testing.assert_array_equal(overflow, expected["overflow"])
        np.testing.assert_allclose(h.mean(), expected["mean"], rtol=1e-10)
    assert overflow.sum() + underflow.sum() > 0


def test_batches_cut_every_column_at_the_same_rows():
    columns = {"input_ids": np.arange(10).reshape(5, 2), "labels": np.arange(5)}
    batches = list(iter_batches(columns, 2))
    assert [len(b["labels"]) for b in batches] == [2, 2, 1]
    for batch in batches:
        np.testing.assert_array_equal(batch["input_ids"][:, 0] // 2, batch["labels"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_kwargs_are_copies_in_the_model_dtype(dtype):
    """Copies: the columns may be read-only memory-mapped Arrow buffers."""
    model = nn.Linear(2, 2).to(dtype)
    ids = np.arange(6, dtype=np.int32).reshape(2, 3)
    pixels = np.full((2, 1, 2, 2), 0.5, dtype=np.float32)
    kwargs = forward_kwargs({"input_ids": ids, "pixel_values": pixels, "label": ids[:, 0]}, model)
    assert set(kwargs) == {"input_ids", "pixel_values"}  # labels are not a forward input here
    assert kwargs["input_ids"].dtype == torch.long
    assert kwargs["pixel_values"].dtype == dtype and kwargs["pixel_values"].shape == (2, 1, 2, 2)
    ids[:], pixels[:] = 7, 9.0
    assert kwargs["input_ids"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert (kwargs["pixel_values"] == 0.5).all()
