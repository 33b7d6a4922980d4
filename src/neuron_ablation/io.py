"""Artifact I/O: atomic writes, Arrow token files, JSON results."""

from __future__ import annotations

import glob
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from neuron_ablation.integrity import read_json_artifact
from neuron_ablation.integrity_arrow import (
    DIGEST_KEY,
    check_model_inputs_table,
    read_arrow_table,
    table_digest,
)

TMP_ID_LENGTH = 8


def temporaries_of(path: str | os.PathLike) -> list[Path]:
    """Temporary siblings :func:`atomic_output` creates for ``path`` (``.{name}.{id}.tmp``)."""
    final = Path(path)
    pattern = f".{glob.escape(final.name)}.{'?' * TMP_ID_LENGTH}.tmp"
    return sorted(final.parent.glob(pattern))


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove what a killed writer of ``path`` left behind. Safe because Snakemake never runs two
    jobs that write the same output at once; the temporaries are never read."""
    for stale in temporaries_of(path):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it into place only if the block succeeds.

    Works for files and directories (Zarr stores), so a failed or interrupted stage never leaves
    a half-written artifact under the final name. A failure (a full disk included) removes the
    temporary; one left by a killed writer (kill -9, power loss) is removed by the next write of
    the same artifact.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:TMP_ID_LENGTH]}.tmp")
    try:
        yield tmp
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_arrow(path: str | os.PathLike, table: pa.Table) -> None:
    """Write an Arrow IPC file (readable by pyarrow.ipc.open_file and polars.read_ipc).

    The schema metadata gets a digest of the content, which :func:`read_arrow` checks: Arrow IPC
    itself has no checksums.
    """
    metadata = dict(table.schema.metadata or {})
    metadata[DIGEST_KEY] = table_digest(table).encode()
    table = table.replace_schema_metadata(metadata)
    with (
        atomic_output(path) as tmp,
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as writer,
    ):
        writer.write_table(table)


def read_arrow(path: str | os.PathLike) -> pa.Table:
    """An Arrow IPC file, checked (:func:`neuron_ablation.integrity_arrow.read_arrow_table`)."""
    return read_arrow_table(path)


def sequences_table(input_ids: np.ndarray, **columns: np.ndarray) -> pa.Table:
    """Arrow table with one row per sequence: ``input_ids`` list<int32> plus extra list columns.

    Args:
        input_ids: int [sequence, position].
        columns: more [sequence, position] arrays stored as list columns of their dtype.
    """
    data = {"input_ids": _list_column(input_ids.astype(np.int32))}
    data |= {name: _list_column(values) for name, values in columns.items()}
    return pa.table(data)


def _list_column(values: np.ndarray) -> pa.Array:
    n_rows, row_length = values.shape
    offsets = np.arange(0, (n_rows + 1) * row_length, row_length, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1)))


def column_matrix(table: pa.Table, name: str) -> np.ndarray:
    """A list column of equal-length rows as a [row, position] numpy array."""
    column = table.column(name).combine_chunks()
    n_rows = len(column)
    return column.flatten().to_numpy(zero_copy_only=False).reshape(n_rows, -1)


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON artifact; an empty or garbled file raises DamagedArtifact naming it."""
    return read_json_artifact(path)


def read_model_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All columns of a token/pixel Arrow file as numpy arrays, one row per model input.

    List columns become [row, position] matrices; a schema metadata entry ``shape:<column>``
    (comma-separated, without the row axis) reshapes a flattened column, e.g. pixel values.
    """
    table = read_arrow(path)
    check_model_inputs_table(path, table)
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    columns = {}
    for name in table.column_names:
        field_type = table.schema.field(name).type
        if pa.types.is_list(field_type) or pa.types.is_large_list(field_type):
            values = column_matrix(table, name)
        else:
            values = table.column(name).to_numpy()
        if f"shape:{name}" in metadata:
            shape = [int(d) for d in metadata[f"shape:{name}"].split(",")]
            values = values.reshape(len(values), *shape)
        columns[name] = values
    return columns
