"""Integrity of Arrow IPC files (tokens, image inputs, resampling inputs): the file opens,
validates, has its input column, rows of equal length, and its content digest
(``content_blake2b``, written by :func:`neuron_ablation.io.write_arrow`) matches; a resampling
inputs file also carries its generation settings."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neuron_ablation.integrity import DamagedArtifact

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
