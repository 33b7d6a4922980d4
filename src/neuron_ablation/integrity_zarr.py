"""Integrity of Zarr stores (statistics, selection, learned constants).

Every array's metadata and every chunk key must exist in the store (listed with the store API:
Zarr reads a missing chunk as its fill value, zeros, without complaint); chunk data must decode
(new stores carry zstd checksums). Statistics counts agree (per neuron ``sum(hist) + underflow +
overflow == count == n_tokens``) and ``peak`` is the centre of each histogram's fullest bin;
selection ranks are a permutation of ``0..width-1`` in every layer; a store of learned constants
(``optimal/seed{s}.zarr``) has one row of constants and one training curve per fraction, no
infinite constant and a finite loss.
"""

from __future__ import annotations

import itertools
import os
import warnings
from pathlib import Path
from typing import Any

from neuron_ablation import paths
from neuron_ablation.integrity import DamagedArtifact
from neuron_ablation.methods import statistics_methods

STATISTICS_ARRAYS = {
    "mean": 2,
    "count": 2,
    "hist": 3,
    "underflow": 2,
    "overflow": 2,
    "peak": 2,
    "layer": 1,
    "neuron": 1,
    "bin": 1,
    # the constants of every method that reads statistics: [layer, neuron], named after it
    **dict.fromkeys(statistics_methods(), 2),
}
INTEGRITY_ATTR = "integrity"
"""Store attribute written by stores whose every chunk is stored (``write_empty_chunks``)."""
MISSING_CHUNKS = "is missing chunks:"
CHECKABLE_CHUNKS = "every chunk stored (also all-zero ones), each with a zstd checksum"


def create_checkable_array(
    group, name: str, data, chunks: tuple[int, ...], dims: list[str]
) -> None:
    """An array of ``group`` whose damage can be detected: every chunk is written, even one equal
    to the fill value (else a deleted chunk and an all-zero one look the same), and zstd frames
    carry checksums (a flipped byte fails to decode instead of reading as another number)."""
    from zarr.codecs import ZstdCodec

    group.create_array(
        name,
        data=data,
        chunks=chunks,
        dimension_names=dims,
        compressors=ZstdCodec(level=0, checksum=True),
        config={"write_empty_chunks": True},
    )


def open_zarr_group(path: str | os.PathLike, arrays: dict[str, int]):
    """Open a Zarr group read-only after checking that ``arrays`` (name -> ndim) are complete:
    their metadata and every chunk key exist in the store.

    Raises:
        FileNotFoundError: no store at ``path``.
        DamagedArtifact: a missing array, metadata file or chunk.
    """
    import zarr

    if not Path(path).exists():
        raise FileNotFoundError(2, "no such Zarr store", str(path))
    try:
        with warnings.catch_warnings():
            # zarr warns that consolidated metadata is not yet part of the v3 spec; we wrote it.
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            group = zarr.open_group(str(path), mode="r")
    except Exception as error:  # zarr raises several types for an unreadable zarr.json
        raise DamagedArtifact(path, f"not a readable Zarr group ({error})") from None
    keys = stored_keys(group)
    problems = []
    for name, ndim in arrays.items():
        problems += _array_problems(group, name, ndim, keys)
    if problems:
        if any(MISSING_CHUNKS in problem for problem in problems):
            problems.append("Zarr would silently read missing chunks as fill values (zeros)")
            if group.attrs.get(INTEGRITY_ATTR) is None:
                problems.append(
                    "this store predates complete chunk storage, so an all-zero chunk may never "
                    "have been written; rebuilt, it is checkable"
                )
        raise DamagedArtifact(path, "; ".join(problems))
    return group


def stored_keys(group) -> set[str]:
    """Every key stored under the group, relative to it (one listing of the store)."""
    from zarr.core.sync import sync

    async def collect() -> set[str]:
        prefix = f"{group.path}/" if group.path else ""
        return {key.removeprefix(prefix) async for key in group.store.list_prefix(prefix)}

    return sync(collect())


def _array_problems(group, name: str, ndim: int, keys: set[str]) -> list[str]:
    if name not in group:
        return [f"array {name!r} is missing"]
    array = group[name]
    problems = []
    if f"{name}/zarr.json" not in keys:
        problems.append(f"the metadata of {name!r} ({name}/zarr.json) is missing")
    if array.ndim != ndim:
        problems.append(f"{name!r} has {array.ndim} dimensions, expected {ndim}")
    expected = [
        f"{name}/{array.metadata.encode_chunk_key(coords)}"
        for coords in itertools.product(*(range(n) for n in array.cdata_shape))
    ]
    missing = [key for key in expected if key not in keys]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        problems.append(f"{name!r} {MISSING_CHUNKS} {len(missing)} of {len(expected)} ({shown})")
    return problems


def read_array(path: str | os.PathLike, group, name: str, index: Any = slice(None)):
    """``group[name][index]`` as numpy; undecodable chunk data (a failed checksum, garbage) is a
    :class:`DamagedArtifact`."""
    import numpy as np

    try:
        return np.asarray(group[name][index])
    except Exception as error:  # codecs raise RuntimeError/ValueError on corrupt bytes
        raise DamagedArtifact(path, f"the data of {name!r} does not decode ({error})") from None


def open_statistics_store(path: str | os.PathLike, counts: bool = False):
    """A statistics store after the completeness check; with ``counts``, also the per-neuron
    count and peak consistency (reads every histogram once, one layer at a time)."""
    group = open_zarr_group(path, STATISTICS_ARRAYS)
    for key in ("bin_width", "bin_index_offset"):
        if key not in group.attrs:
            raise DamagedArtifact(path, f"the store attribute {key!r} is missing")
    shapes = {name: group[name].shape for name in STATISTICS_ARRAYS}
    n_layers, n_neurons, n_bins = shapes["hist"]
    for name, ndim in STATISTICS_ARRAYS.items():
        if ndim == 2 and shapes[name] != (n_layers, n_neurons):
            raise DamagedArtifact(
                path, f"{name!r} has shape {shapes[name]}, hist has {(n_layers, n_neurons)}"
            )
    if counts:
        check_statistics_counts(path, group)
    return group


def check_statistics_counts(path: str | os.PathLike, group) -> None:
    """Per neuron: ``sum(hist) + underflow + overflow == count == n_tokens`` and ``peak ==
    (bin[argmax hist] + 0.5) * bin_width``."""
    import numpy as np

    bins = read_array(path, group, "bin")
    width = float(group.attrs["bin_width"])
    n_tokens = group.attrs.get("n_tokens")
    for layer in range(group["hist"].shape[0]):
        hist = read_array(path, group, "hist", layer)
        count = read_array(path, group, "count", layer)
        tracked = hist.sum(axis=-1)
        total = tracked + read_array(path, group, "underflow", layer)
        total = total + read_array(path, group, "overflow", layer)
        bad = np.flatnonzero(total != count)
        if bad.size:
            n = int(bad[0])
            raise DamagedArtifact(
                path,
                f"layer {layer} neuron {n}: sum(hist) + underflow + overflow = {int(total[n])} "
                f"but count = {int(count[n])} ({bad.size} neurons of this layer disagree)",
            )
        if n_tokens is not None and (count != n_tokens).any():
            n = int(np.flatnonzero(count != n_tokens)[0])
            raise DamagedArtifact(
                path, f"layer {layer} neuron {n}: count {int(count[n])} != n_tokens {n_tokens}"
            )
        peak = read_array(path, group, "peak", layer)
        expected = (bins[np.argmax(hist, axis=-1)].astype(np.float64) + 0.5) * width
        differ = np.flatnonzero(peak != expected)
        if differ.size:
            n = int(differ[0])
            raise DamagedArtifact(
                path,
                f"layer {layer} neuron {n}: peak {peak[n]} is not the centre of its fullest "
                f"bin ({expected[n]}; {differ.size} neurons of this layer disagree)",
            )


def read_selection_ranks(path: str | os.PathLike):
    """int64 [layer, neuron] ranks, checked: complete, a permutation per layer, the seed of the
    path."""
    import numpy as np

    group = open_zarr_group(path, {"rank": 2})
    ranks = read_array(path, group, "rank")
    width = ranks.shape[1]
    for layer, row in enumerate(ranks):
        if not np.array_equal(np.sort(row), np.arange(width)):
            raise DamagedArtifact(
                path, f"the ranks of layer {layer} are not a permutation of 0..{width - 1}"
            )
    path_seed, seed = paths.selection_seed(path), group.attrs.get("seed")
    if path_seed is not None and seed is not None and path_seed != seed:
        raise DamagedArtifact(path, f"it holds seed {seed}, but the path says {path_seed}")
    return ranks.astype(np.int64)


OPTIMAL_ARRAYS = {"fraction": 1, "constant": 3, "loss": 2}


def open_optimal_store(path: str | os.PathLike, values: bool = False):
    """A store of learned constants (``optimal/seed{s}.zarr``), checked: complete, one constant
    row and one training curve per fraction; with ``values``, also no infinite constant and a
    finite training loss."""
    import numpy as np

    group = open_zarr_group(path, OPTIMAL_ARRAYS)
    n_fractions = group["fraction"].shape[0]
    for name in ("constant", "loss"):
        if group[name].shape[0] != n_fractions:
            raise DamagedArtifact(
                path,
                f"{name!r} has {group[name].shape[0]} rows for {n_fractions} trained fractions",
            )
    if values:
        if np.isinf(read_array(path, group, "constant")).any():
            raise DamagedArtifact(path, "a learned constant is infinite")
        if not np.isfinite(read_array(path, group, "loss")).all():
            raise DamagedArtifact(path, "the training loss is not finite")
    return group
