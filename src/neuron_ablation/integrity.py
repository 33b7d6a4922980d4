"""Integrity of the pipeline's artifacts: checked whenever a stage reads one, and by `verify`.

Snakemake reruns a job only when an output is missing or older than its inputs, so a statistics
store that lost a chunk, a truncated result JSON or a broken bank looks up to date, and Zarr reads
a missing chunk as its fill value (zeros) without complaint. Every reader of an artifact calls the
check of its kind here, and ``neuron-ablation verify`` runs all of them over ``results/``. A
damaged artifact raises :class:`DamagedArtifact`, naming the file, what is wrong with it and the
command that rebuilds it.

What is checked, per kind:

- Zarr stores (statistics, selection): every array's metadata and every chunk key exist in the
  store (listed with the store API, not read as fill values); chunk data decodes (new stores carry
  zstd checksums); statistics counts agree (per neuron ``sum(hist) + underflow + overflow ==
  count == n_tokens``) and ``peak`` is the centre of each histogram's fullest bin; selection ranks
  are a permutation of ``0..width-1`` in every layer.
- Arrow files (tokens, resampling inputs): the IPC file opens, validates, has its input column,
  rows of equal length, and its content digest (``content_blake2b``, written by
  :func:`neuron_ablation.io.write_arrow`) matches.
- HDF5 banks: the file opens, layers ``layer_00``... are contiguous and of one shape, the
  attributes the evaluation needs exist, and every chunk reads (new banks carry Fletcher-32
  checksums).
- JSON results: parseable, an object with numeric ``top1``, ``loss``, ``n_tokens``,
  ``n_ablated``, method/seed/fraction equal to those of its path, and per-sequence lists
  (``seq_loss_sum``, ``seq_correct``, ``seq_n``) of one length that add up to the totals.
- Stores of learned constants (``optimal/seed{s}.zarr``): complete like the others, one row of
  constants and one training curve per fraction, no infinite constant, a finite loss.
- Tables and figures: CSVs and ``sequences.parquet`` parse with their columns, PNGs are complete.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from neuron_ablation import metrics, paths
from neuron_ablation.methods import statistics_methods

RESULT_KEYS = (*metrics.names(), "n_tokens", "n_ablated")
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
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"


class DamagedArtifact(ValueError):
    """An artifact exists but cannot be trusted; the message names it and how to rebuild it."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(
            f"{self.path}: {problem}. The artifact is damaged: rebuild it with "
            f"`{rebuild_command([self.path])}` (put the --configfile=FILE of your run before "
            "--forcerun); `neuron-ablation verify` checks every artifact under results/."
        )


def snakemake_path(path: str | os.PathLike) -> str:
    """``path`` as Snakemake names outputs: relative to the working directory where possible."""
    path = Path(path)
    if path.is_absolute():
        try:
            return path.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return path.as_posix()
    return path.as_posix()


def rebuild_command(paths: Iterable[str | os.PathLike]) -> str:
    """The Snakemake command that reruns the jobs writing ``paths`` and everything downstream.

    ``--forcerun`` takes several values, so it comes last (a target after it would be read as
    one more file to force).
    """
    quoted = " ".join(shlex.quote(snakemake_path(p)) for p in paths)
    return f"snakemake --cores all --forcerun {quoted}"


# --- JSON results ---------------------------------------------------------------------------


def read_json_artifact(path: str | os.PathLike) -> Any:
    """Parse a JSON artifact; an empty, cut-off or garbled file is a :class:`DamagedArtifact`."""
    text = _read_text(path)
    if not text.strip():
        raise DamagedArtifact(path, "the JSON file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DamagedArtifact(path, f"not valid JSON ({error})") from None


def check_result(path: str | os.PathLike, payload: Any) -> dict[str, Any]:
    """An evaluation result: the metric keys with numbers, and the method/seed/fraction of its
    path (a result copied to the wrong place is damaged too)."""
    if not isinstance(payload, dict):
        raise DamagedArtifact(path, f"expected a JSON object, found {type(payload).__name__}")
    missing = [key for key in RESULT_KEYS if key not in payload]
    if missing:
        raise DamagedArtifact(
            path, f"keys {missing} are missing (a result has {list(RESULT_KEYS)})"
        )
    for key in RESULT_KEYS:
        value = payload[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DamagedArtifact(path, f"{key} is {value!r}, not a number")
    for key in ("n_tokens", "n_ablated"):
        if payload[key] != int(payload[key]) or payload[key] < 0:
            raise DamagedArtifact(path, f"{key} is {payload[key]!r}, not a count")
    if not 0.0 <= payload["top1"] <= 1.0:
        raise DamagedArtifact(path, f"top1 is {payload['top1']!r}, outside [0, 1]")
    _check_sequence_scores(path, payload)
    _check_sweep(path, payload)
    for key, value in (paths.eval_result_fields(path) or {}).items():
        if key in payload and not _same(payload[key], value):
            raise DamagedArtifact(path, f"{key} is {payload[key]!r}, but the path says {value!r}")
    return payload


SEQUENCE_KEYS = ("seq_loss_sum", "seq_correct", "seq_n")


def _check_sweep(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """A baseline's figures on the sweep rows, where present: what its own per-sequence lists
    give on their first ``first_items`` rows (the tables compare sweep fractions with them)."""
    record = payload.get(metrics.SWEEP_KEY)
    if record is None:
        return
    items = record.get("first_items") if isinstance(record, dict) else None
    if isinstance(items, bool) or not isinstance(items, int) or items < 1:
        raise DamagedArtifact(path, f"{metrics.SWEEP_KEY} is {record!r}, not a token set record")
    try:
        expected = metrics.token_set(payload, items)
    except ValueError as error:
        raise DamagedArtifact(path, f"{metrics.SWEEP_KEY}: {error}") from None
    wrong = {key: value for key, value in expected.items() if not _same(record.get(key), value)}
    if wrong:
        raise DamagedArtifact(
            path,
            f"{metrics.SWEEP_KEY} {sorted(wrong)} disagree with the first {items} rows' "
            f"per-sequence lists, which give {wrong}",
        )


def _check_sequence_scores(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Per-sequence lists, where present: all three, of one length, adding up to the totals."""
    present = [key for key in SEQUENCE_KEYS if key in payload]
    if not present:
        return
    if len(present) < len(SEQUENCE_KEYS):
        missing = sorted(set(SEQUENCE_KEYS) - set(present))
        raise DamagedArtifact(path, f"per-sequence lists {missing} are missing")
    lists = {key: payload[key] for key in SEQUENCE_KEYS}
    if not all(isinstance(v, list) for v in lists.values()):
        raise DamagedArtifact(path, f"{list(SEQUENCE_KEYS)} must be lists")
    lengths = {key: len(v) for key, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise DamagedArtifact(path, f"per-sequence lists of unequal length {lengths}")
    for key, values in lists.items():
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise DamagedArtifact(path, f"{key} holds a value that is not a number")
    n = sum(lists["seq_n"])
    if n != payload["n_tokens"]:
        raise DamagedArtifact(path, f"seq_n adds up to {n}, but n_tokens is {payload['n_tokens']}")
    if n and abs(sum(lists["seq_correct"]) / n - payload["top1"]) > 1e-9:
        raise DamagedArtifact(path, "seq_correct does not add up to top1 * n_tokens")


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    """A checked evaluation result JSON (``eval/baseline.json`` or one fraction's)."""
    return check_result(path, read_json_artifact(path))


def _same(found: Any, expected: Any) -> bool:
    if isinstance(expected, float):
        return isinstance(found, (int, float)) and abs(found - expected) < 1e-9
    return found == expected


def _read_text(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text()
    except UnicodeDecodeError as error:
        raise DamagedArtifact(
            path, f"not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None


# --- Zarr stores ----------------------------------------------------------------------------


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


# --- Arrow files ----------------------------------------------------------------------------

DIGEST_KEY = b"content_blake2b"


def table_digest(table) -> str:
    """BLAKE2b of a table's column names, types and values (Arrow IPC has no checksums)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for name in table.column_names:
        column = table.column(name)
        digest.update(f"{name}:{column.type}:{len(column)};".encode())
        for chunk in _column_bytes(column):
            digest.update(chunk)
    return digest.hexdigest()


def _column_bytes(column) -> Iterator[bytes]:
    import numpy as np
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        offsets = np.asarray(array.offsets)
        yield (offsets - offsets[0]).astype(np.int64).tobytes()
        yield from _column_bytes(array.flatten())
    elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        yield json.dumps(array.to_pylist()).encode()
    else:
        yield np.ascontiguousarray(array.to_numpy(zero_copy_only=False)).tobytes()


def read_arrow_table(path: str | os.PathLike):
    """An Arrow IPC file, checked: opens, validates, and matches its content digest if any."""
    import pyarrow as pa

    if not Path(path).exists():
        raise FileNotFoundError(2, "no such Arrow file", str(path))
    try:
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_file(source).read_all()
        table.validate(full=True)
    except (pa.ArrowException, OSError) as error:
        raise DamagedArtifact(path, f"not a readable Arrow IPC file ({error})") from None
    stored = (table.schema.metadata or {}).get(DIGEST_KEY)
    if stored is not None and stored.decode() != table_digest(table):
        raise DamagedArtifact(path, "its content does not match the digest written with it")
    return table


def check_model_inputs_table(path: str | os.PathLike, table) -> None:
    """A token/pixel/resampling-input table: rows, an input column, equal-length list rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        raise DamagedArtifact(path, "the file has no rows")
    if not {"input_ids", "pixel_values"} & set(table.column_names):
        raise DamagedArtifact(
            path, f"no input_ids or pixel_values column (columns: {table.column_names})"
        )
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            lengths = set(pc.list_value_length(column).to_pylist())
            if len(lengths) > 1:
                raise DamagedArtifact(path, f"rows of {name!r} differ in length: {sorted(lengths)}")


def check_resample_inputs_table(path: str | os.PathLike, table) -> dict[str, Any]:
    """The generation settings of a resampling inputs file (schema metadata ``resample``)."""
    check_model_inputs_table(path, table)
    raw = (table.schema.metadata or {}).get(b"resample")
    if raw is None:
        raise DamagedArtifact(
            path, "the schema metadata 'resample' (generation settings) is missing"
        )
    try:
        settings = json.loads(raw)
    except json.JSONDecodeError as error:
        raise DamagedArtifact(
            path, f"the 'resample' settings are not valid JSON ({error})"
        ) from None
    if not isinstance(settings, dict) or "source" not in settings:
        raise DamagedArtifact(path, "the 'resample' settings lack their 'source'")
    return settings


# --- HDF5 banks ------------------------------------------------------------------------------

BANK_ATTRS = ("source", "n_positions")


def check_bank(path: str | os.PathLike, read_data: bool = True) -> None:
    """A resampling bank: opens, contiguous layers of one shape, attributes; with ``read_data``
    every chunk is read (one sequence at a time), which checks the Fletcher-32 sums."""
    import h5py

    if not Path(path).exists():
        raise FileNotFoundError(2, "no such bank", str(path))
    try:
        bank = h5py.File(path, "r")
    except OSError as error:
        raise DamagedArtifact(path, f"not a readable HDF5 bank ({error})") from None
    with bank:
        _check_bank_layout(path, bank)
        if read_data:
            for name in sorted(n for n in bank if n.startswith("layer_")):
                dataset = bank[name]
                with bank_read(path, name):
                    for row in range(dataset.shape[0]):
                        dataset[row]


@contextmanager
def bank_read(path: str | os.PathLike, name: str) -> Iterator[None]:
    """Reads of dataset ``name`` of a bank; a chunk that fails (a Fletcher-32 sum, damaged
    bytes) raises :class:`DamagedArtifact`."""
    try:
        yield
    except OSError as error:
        raise DamagedArtifact(
            path, f"{name} does not read: a checksum failed or the file is damaged ({error})"
        ) from None


def _check_bank_layout(path: str | os.PathLike, bank) -> None:
    names = sorted(name for name in bank if name.startswith("layer_"))
    if not names:
        raise DamagedArtifact(path, "it holds no layer_XX datasets")
    expected = [f"layer_{i:02d}" for i in range(len(names))]
    if names != expected:
        raise DamagedArtifact(path, f"layers are not contiguous: {names}")
    n_layers = bank.attrs.get("n_layers")
    if n_layers is not None and len(names) != n_layers:
        raise DamagedArtifact(path, f"it holds {len(names)} layers, written with {n_layers}")
    shapes = {bank[name].shape for name in names}
    if len(shapes) != 1:
        raise DamagedArtifact(path, f"layers differ in shape: {sorted(shapes)}")
    missing = [key for key in BANK_ATTRS if key not in bank.attrs]
    if missing:
        raise DamagedArtifact(path, f"file attributes {missing} are missing")


# --- tables and figures ---------------------------------------------------------------------

TABLE_COLUMNS = {
    "ablation.csv": ["model", "method", "seed", "fraction", *RESULT_KEYS],
    "table2.csv": ["metric", "setting", "method"],
    "comparison.csv": ["model", "metric", "fraction", "method_a", "method_b", "mean_diff"],
    "plan.csv": ["model", "metric", "fraction", "method_a", "method_b", "plan_seeds"],
    "_top_neurons.csv": ["rank", "layer", "neuron", "score"],
}


TABLES_THAT_MAY_BE_EMPTY = {"comparison.csv", "table2.csv", "plan.csv"}
"""Header only is a valid result here: a run of one method has no pairs to compare, a run of
neither fraction 0 nor Table 2's fractions no row of Table 2."""


def read_csv_table(path: str | os.PathLike, columns: list[str], may_be_empty: bool = False):
    """A CSV artifact with at least ``columns`` and one row (or none, ``may_be_empty``)."""
    import polars as pl

    if not Path(path).is_file():
        raise FileNotFoundError(2, "no such CSV file", str(path))
    try:
        table = pl.read_csv(path)
    except pl.exceptions.PolarsError as error:
        raise DamagedArtifact(path, f"not a readable CSV ({str(error).splitlines()[0]})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DamagedArtifact(path, f"columns {missing} are missing (found {table.columns})")
    if table.height == 0 and not may_be_empty:
        raise DamagedArtifact(path, "the table has no rows")
    return table


SEQUENCE_TABLE_COLUMNS = [
    "model", "method", "seed", "fraction", "sequence", "loss_sum", "correct", "n",
]  # fmt: skip


def read_sequence_table(path: str | os.PathLike):
    """``sequences.parquet``: readable, with its columns (it may be empty: results without
    per-sequence scores)."""
    import polars as pl

    if not Path(path).is_file():
        raise FileNotFoundError(2, "no such Parquet file", str(path))
    try:
        table = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DamagedArtifact(path, f"not a readable Parquet file ({first})") from None
    missing = [c for c in SEQUENCE_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise DamagedArtifact(path, f"columns {missing} are missing (found {table.columns})")
    return table


def check_png(path: str | os.PathLike) -> None:
    data = Path(path).read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise DamagedArtifact(path, "not a PNG file")
    if not data.endswith(PNG_END):
        raise DamagedArtifact(path, "the PNG is cut off (no IEND chunk at its end)")


def check_text(path: str | os.PathLike) -> None:
    if not _read_text(path).strip():
        raise DamagedArtifact(path, "the file is empty")
