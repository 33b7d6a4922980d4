"""Checks of Zarr stores (statistics, selection, learned constants) on small stores made by hand:
a missing array, metadata file or chunk, a wrong shape, corrupt chunk bytes, inconsistent counts
and non-finite values are each a DamagedArtifact naming the store and the fault."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from neuron_ablation.integrity_zarr import (
    CHECKABLE_CHUNKS,
    INTEGRITY_ATTR,
    STATISTICS_ARRAYS,
    create_checkable_array,
    open_optimal_store,
    open_statistics_store,
    read_selection_ranks,
)
from tests.helpers.damage import damage_of

WIDTH = 0.5


def statistics_arrays(n_layers: int = 2, n_neurons: int = 3) -> dict[str, np.ndarray]:
    """Consistent statistics: bins -2..1 of width 0.5, each neuron's fullest bin its index + 1."""
    bins = np.arange(-2, 2, dtype=np.int64)
    hist = np.ones((n_layers, n_neurons, len(bins)), dtype=np.int64)
    for neuron in range(n_neurons):
        hist[:, neuron, neuron + 1] = 5
    underflow = np.ones((n_layers, n_neurons), dtype=np.int64)
    overflow = np.zeros((n_layers, n_neurons), dtype=np.int64)
    count = hist.sum(-1) + underflow + overflow
    peak = (bins[hist.argmax(-1)] + 0.5) * WIDTH
    arrays = {"hist": hist, "underflow": underflow, "overflow": overflow, "count": count}
    arrays |= {"peak": peak, "mean": np.zeros((n_layers, n_neurons)), "bin": bins}
    arrays |= {"layer": np.arange(n_layers), "neuron": np.arange(n_neurons)}
    assert set(arrays) == set(STATISTICS_ARRAYS)
    return arrays


def write_store(path: Path, arrays: dict[str, np.ndarray], **attrs) -> Path:
    group = zarr.open_group(str(path), mode="w", attributes={INTEGRITY_ATTR: CHECKABLE_CHUNKS})
    group.attrs.update(attrs)
    for name, data in arrays.items():
        chunks = (1, *data.shape[1:]) if data.ndim == 3 else data.shape
        create_checkable_array(group, name, data, chunks, [f"d{i}" for i in range(data.ndim)])
    return path


N_TOKENS = 9
"""Per neuron: 3 bins of 1, the fullest of 5, 1 underflow."""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A complete statistics store, written once (stores are slow to write, quick to copy)."""
    path = tmp_path_factory.mktemp("pristine") / "stats.zarr"
    attrs = {"bin_width": WIDTH, "bin_index_offset": -2, "n_tokens": N_TOKENS}
    return write_store(path, statistics_arrays(), **attrs)


@pytest.fixture
def statistics_store(pristine, tmp_path) -> Path:
    """A copy of the pristine store to damage."""
    return shutil.copytree(pristine, tmp_path / "stats.zarr")


def put_array(path: Path, name: str, data: np.ndarray) -> Path:
    """Write (or overwrite) one array of the store at ``path``."""
    group = zarr.open_group(str(path), mode="r+")
    if name in group:
        del group[name]
    create_checkable_array(group, name, data, data.shape, [f"d{i}" for i in range(data.ndim)])
    return path


def chunk_files(path: Path, name: str) -> list[Path]:
    return sorted(p for p in (path / name / "c").rglob("*") if p.is_file())


def test_a_complete_statistics_store_opens(statistics_store):
    assert statistics_arrays()["count"].max() == N_TOKENS
    group = open_statistics_store(statistics_store, counts=True)
    assert group["hist"].shape == (2, 3, 4)


def test_missing_array(statistics_store):
    path = statistics_store
    shutil.rmtree(path / "peak")
    assert "array 'peak' is missing" in damage_of(path, open_statistics_store)


def test_missing_chunk_reads_as_zeros_but_is_found(statistics_store):
    path = statistics_store
    missing = chunk_files(path, "hist")[1]
    missing.unlink()
    problem = damage_of(path, open_statistics_store)
    key = missing.relative_to(path).as_posix()
    assert f"'hist' is missing chunks: 1 of 2 ({key})" in problem
    assert "would silently read missing chunks as fill values" in problem


def test_store_that_predates_complete_chunks_says_so(statistics_store):
    path = statistics_store
    group = zarr.open_group(str(path), mode="r+")
    del group.attrs[INTEGRITY_ATTR]
    chunk_files(path, "count")[0].unlink()
    assert "this store predates complete chunk storage" in damage_of(path, open_statistics_store)


@pytest.mark.filterwarnings("ignore:Consolidated metadata")
def test_missing_array_metadata(statistics_store):
    path = statistics_store
    zarr.consolidate_metadata(str(path))  # the group still lists the array, from this copy
    (path / "mean" / "zarr.json").unlink()
    assert "the metadata of 'mean' (mean/zarr.json) is missing" in damage_of(
        path, open_statistics_store
    )


def test_wrong_shape_and_dimensions(statistics_store):
    path = put_array(statistics_store, "peak", np.zeros((2, 4)))
    assert damage_of(path, open_statistics_store) == "'peak' has shape (2, 4), hist has (2, 3)"
    path = put_array(statistics_store, "mean", np.zeros(3))
    assert "'mean' has 1 dimensions, expected 2" in damage_of(path, open_statistics_store)


def test_missing_store_attribute(statistics_store):
    path = statistics_store
    group = zarr.open_group(str(path), mode="r+")
    del group.attrs["bin_width"]
    assert damage_of(path, open_statistics_store) == "the store attribute 'bin_width' is missing"


def test_unreadable_group(statistics_store):
    path = statistics_store
    (path / "zarr.json").write_text("{cut off")
    assert damage_of(path, open_statistics_store).startswith("not a readable Zarr group")
    with pytest.raises(FileNotFoundError):
        open_statistics_store(path.parent / "absent.zarr")


def test_corrupt_chunk_bytes_do_not_decode(statistics_store):
    path = statistics_store
    chunk = chunk_files(path, "underflow")[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    problem = damage_of(path, open_statistics_store, True)
    assert problem.startswith("the data of 'underflow' does not decode")


def test_counts_that_do_not_add_up(statistics_store):
    count = statistics_arrays()["count"]
    count[1, 2] += 1
    problem = damage_of(put_array(statistics_store, "count", count), open_statistics_store, 1)
    assert problem == (
        "layer 1 neuron 2: sum(hist) + underflow + overflow = 9 but count = 10 (1 neurons of "
        "this layer disagree)"
    )


def test_counts_that_are_not_the_tokens_seen(statistics_store):
    zarr.open_group(str(statistics_store), mode="r+").attrs["n_tokens"] = N_TOKENS + 1
    problem = damage_of(statistics_store, open_statistics_store, True)
    assert problem == f"layer 0 neuron 0: count {N_TOKENS} != n_tokens {N_TOKENS + 1}"


def test_peak_not_at_the_fullest_bin(statistics_store):
    peak = statistics_arrays()["peak"]
    peak[0, 1] = 0.75
    problem = damage_of(put_array(statistics_store, "peak", peak), open_statistics_store, 1)
    assert problem.startswith("layer 0 neuron 1: peak 0.75 is not the centre of its fullest bin")
    assert open_statistics_store(statistics_store)  # the layout alone is fine


def test_selection_ranks(tmp_path):
    path = tmp_path / "results/tiny/selection/seed3.zarr"
    write_store(path, {"rank": np.array([[2, 0, 1], [0, 1, 1]])}, seed=3)
    assert damage_of(path, read_selection_ranks) == (
        "the ranks of layer 1 are not a permutation of 0..2"
    )
    write_store(path, {"rank": np.array([[2, 0, 1], [0, 1, 2]])}, seed=4)
    assert damage_of(path, read_selection_ranks) == "it holds seed 4, but the path says 3"
    write_store(path, {"rank": np.array([[2, 0, 1], [0, 1, 2]])}, seed=3)
    assert read_selection_ranks(path).dtype == np.int64


def test_optimal_store(tmp_path):
    constant, loss = np.zeros((2, 1, 3), dtype=np.float32), np.ones((2, 4))
    path = write_store(tmp_path / "seed0.zarr", {"fraction": np.array([0.25, 0.5])})
    put_array(put_array(path, "constant", constant[:1]), "loss", loss)
    assert damage_of(path, open_optimal_store) == "'constant' has 1 rows for 2 trained fractions"
    constant[1, 0, 2] = np.inf
    assert damage_of(put_array(path, "constant", constant), open_optimal_store, True) == (
        "a learned constant is infinite"
    )
    constant[1, 0, 2], loss[0, 3] = 0.0, np.nan
    put_array(path, "constant", constant)
    assert damage_of(put_array(path, "loss", loss), open_optimal_store, True) == (
        "the training loss is not finite"
    )
    loss[0, 3] = 1.0
    assert open_optimal_store(put_array(path, "loss", loss), True)
