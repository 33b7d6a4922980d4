"""Artifact I/O: atomic writes leave the old artifact or the new one, never half of one; Arrow and
JSON round trips; the matrices of list columns."""

import numpy as np
import pyarrow as pa
import pytest

from neuron_ablation.integrity import DamagedArtifact
from neuron_ablation.integrity_arrow import DIGEST_KEY
from neuron_ablation.io import (
    atomic_output,
    column_matrix,
    read_arrow,
    read_json,
    read_model_inputs,
    sequences_table,
    temporaries_of,
    write_arrow,
    write_json,
)


class Interrupted(Exception):
    """The failure a test raises inside a write."""


def test_a_file_appears_only_when_its_block_ends(tmp_path):
    final = tmp_path / "sub" / "result.json"  # the parent is created
    with atomic_output(final) as tmp:
        tmp.write_text("done")
        assert not final.exists() and temporaries_of(final) == [tmp]
    assert final.read_text() == "done"
    assert temporaries_of(final) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    final = tmp_path / "result.json"
    final.write_text("old")
    with pytest.raises(Interrupted), atomic_output(final) as tmp:
        tmp.write_text("half of the ne")
        raise Interrupted
    assert final.read_text() == "old"
    assert temporaries_of(final) == []


def test_a_failed_directory_write_leaves_nothing(tmp_path):
    final = tmp_path / "stats.zarr"
    with pytest.raises(Interrupted), atomic_output(final) as tmp:
        (tmp / "mean").mkdir(parents=True)
        (tmp / "mean" / "0").write_bytes(b"chunk")
        raise Interrupted
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_directory_is_replaced_whole(tmp_path):
    final = tmp_path / "stats.zarr"
    (final / "old_array").mkdir(parents=True)
    with atomic_output(final) as tmp:
        (tmp / "new_array").mkdir(parents=True)
    assert [p.name for p in final.iterdir()] == ["new_array"]


def test_what_a_killed_writer_left_is_removed_by_the_next_write(tmp_path):
    final = tmp_path / "result.json"
    stale_file = tmp_path / ".result.json.0123abcd.tmp"
    stale_dir = tmp_path / ".result.json.89abcdef.tmp"
    other = tmp_path / ".other.json.0123abcd.tmp"  # another artifact's: not this write's
    stale_file.write_text("half")
    (stale_dir / "chunk").mkdir(parents=True)
    other.write_text("half")
    assert temporaries_of(final) == [stale_file, stale_dir]
    write_json(final, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "result.json"]


def test_json_round_trip_is_sorted_and_ends_with_a_newline(tmp_path):
    path = tmp_path / "r.json"
    payload = {"b": [1, 2.5], "a": {"z": None, "y": "text"}}
    write_json(path, payload)
    assert read_json(path) == payload
    text = path.read_text()
    assert text.endswith("}\n") and text.index('"a"') < text.index('"b"')


def test_json_that_cannot_be_written_keeps_the_old_result(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"top1": 0.5})
    with pytest.raises(TypeError):
        write_json(path, {"top1": object()})
    assert read_json(path) == {"top1": 0.5}
    assert temporaries_of(path) == []


@pytest.mark.parametrize("content", ["", '{"top1": 0.5', "[1, 2"])
def test_an_empty_or_cut_json_is_a_damaged_artifact(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(DamagedArtifact, match="r.json"):
        read_json(path)


def test_token_file_round_trip(tmp_path):
    """input_ids as int32 [sequence, position] and an extra list column of its own dtype come back
    as the same matrices; the schema metadata keeps what the writer put there, plus a digest."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, size=(5, 7))
    labels = rng.integers(-100, 50, size=(5, 7)).astype(np.int64)
    table = sequences_table(ids, labels=labels)
    table = table.replace_schema_metadata({b"part": b"eval"})
    path = tmp_path / "eval.arrow"
    write_arrow(path, table)

    columns = read_model_inputs(path)
    assert set(columns) == {"input_ids", "labels"}
    assert columns["input_ids"].dtype == np.int32
    np.testing.assert_array_equal(columns["input_ids"], ids)
    assert columns["labels"].dtype == np.int64
    np.testing.assert_array_equal(columns["labels"], labels)
    metadata = read_arrow(path).schema.metadata
    assert metadata[b"part"] == b"eval" and DIGEST_KEY in metadata
    assert temporaries_of(path) == []


def test_a_token_file_changed_after_writing_is_refused(tmp_path):
    path = tmp_path / "eval.arrow"
    write_arrow(path, sequences_table(np.arange(12).reshape(3, 4)))
    table = read_arrow(path)
    changed = sequences_table(np.arange(1, 13).reshape(3, 4))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(changed.replace_schema_metadata(table.schema.metadata))
    with pytest.raises(DamagedArtifact, match="digest"):
        read_model_inputs(path)


def test_column_matrix_joins_chunks_in_row_order():
    first = sequences_table(np.arange(6).reshape(2, 3))
    second = sequences_table(np.arange(6, 15).reshape(3, 3))
    table = pa.concat_tables([first, second])
    assert table.column("input_ids").num_chunks == 2
    np.testing.assert_array_equal(column_matrix(table, "input_ids"), np.arange(15).reshape(5, 3))
