"""Checks of Arrow IPC files (tokens, image inputs, resampling inputs) on small files made by hand:
an unreadable file, content that no longer matches its digest, a wrong schema, ragged rows and
missing generation settings are each a DamagedArtifact naming the file and the fault."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from neuron_ablation.integrity_arrow import (
    DIGEST_KEY,
    check_model_inputs_table,
    check_resample_inputs_table,
    read_arrow_table,
    table_digest,
)
from tests.helpers.damage import damage_of


def tokens(rows: list[list[int]], metadata: dict | None = None) -> pa.Table:
    table = pa.table({"input_ids": pa.array(rows, pa.list_(pa.int32()))})
    return table.replace_schema_metadata(metadata)


def write_ipc(path: Path, table: pa.Table) -> Path:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def test_a_file_with_its_digest_reads(tmp_path):
    table = tokens([[1, 2], [3, 4]])
    table = table.replace_schema_metadata({DIGEST_KEY: table_digest(table).encode()})
    assert read_arrow_table(write_ipc(tmp_path / "stats.arrow", table)).equals(table)


def test_digest_covers_values_and_row_boundaries():
    assert table_digest(tokens([[1, 2], [3, 4]])) != table_digest(tokens([[1, 2], [3, 5]]))
    assert table_digest(tokens([[1, 2], [3, 4]])) != table_digest(tokens([[1], [2, 3, 4]]))


def test_content_that_does_not_match_its_digest(tmp_path):
    stored = table_digest(tokens([[1, 2], [3, 4]])).encode()
    path = write_ipc(tmp_path / "stats.arrow", tokens([[1, 2], [3, 5]], {DIGEST_KEY: stored}))
    assert damage_of(path, read_arrow_table) == (
        "its content does not match the digest written with it"
    )


def test_unreadable_file(tmp_path):
    path = write_ipc(tmp_path / "stats.arrow", tokens([[1, 2], [3, 4]]))
    path.write_bytes(path.read_bytes()[:-40])  # cut off: the footer is lost
    assert damage_of(path, read_arrow_table).startswith("not a readable Arrow IPC file")
    with pytest.raises(FileNotFoundError):
        read_arrow_table(tmp_path / "absent.arrow")


def test_wrong_schema_ragged_rows_and_no_rows(tmp_path):
    path = tmp_path / "eval.arrow"
    text = pa.table({"text": ["a", "b"]})
    assert damage_of(path, check_model_inputs_table, text) == (
        "no input_ids or pixel_values column (columns: ['text'])"
    )
    assert damage_of(path, check_model_inputs_table, tokens([[1, 2], [3]])) == (
        "rows of 'input_ids' differ in length: [1, 2]"
    )
    assert damage_of(path, check_model_inputs_table, tokens([])) == "the file has no rows"
    check_model_inputs_table(path, tokens([[1, 2], [3, 4]]))


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (None, "the schema metadata 'resample' (generation settings) is missing"),
        (b'{"source": "chars"', "the 'resample' settings are not valid JSON"),
        (json.dumps({"seed": 0}).encode(), "the 'resample' settings lack their 'source'"),
    ],
    ids=["missing", "cut-off", "no-source"],
)
def test_resampling_inputs_without_their_settings(tmp_path, settings, problem):
    table = tokens([[1, 2]], None if settings is None else {b"resample": settings})
    assert damage_of(
        tmp_path / "chars.inputs.arrow", check_resample_inputs_table, table
    ).startswith(problem)


def test_resampling_inputs_settings(tmp_path):
    table = tokens([[1, 2]], {b"resample": b'{"source": "chars", "seed": 3}'})
    settings = check_resample_inputs_table(tmp_path / "chars.inputs.arrow", table)
    assert settings == {"source": "chars", "seed": 3}
