"""Checks of evaluation results (JSON), tables and figures: each damage, made by hand, is a
DamagedArtifact naming the file, what is wrong and the command that rebuilds it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from neuron_ablation.integrity import (
    PNG_END,
    PNG_SIGNATURE,
    RESULT_KEYS,
    SEQUENCE_TABLE_COLUMNS,
    check_png,
    check_text,
    read_csv_table,
    read_result,
    read_sequence_table,
)
from tests.helpers.damage import damage_of

RESULT = "results/tiny/eval/peak/seed0/frac0.50.json"


def good_result() -> dict:
    """A consistent result: two sequences of 3 and 5 tokens, 6 of 8 predictions right."""
    result = dict.fromkeys(RESULT_KEYS, 1.0)
    result |= {"top1": 0.75, "n_tokens": 8, "n_ablated": 4}
    result |= {"seq_loss_sum": [3.0, 5.0], "seq_correct": [2, 4], "seq_n": [3, 5]}
    result |= {"method": "peak", "seed": 0, "fraction": 0.5}
    return result


def write_result(tmp_path: Path, payload) -> Path:
    path = tmp_path / RESULT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_a_good_result_reads(tmp_path):
    assert read_result(write_result(tmp_path, good_result())) == good_result()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the JSON file is empty"),
        ('{"top1": 0.7', "not valid JSON"),
        ("[1, 2]", "expected a JSON object, found list"),
    ],
    ids=["empty", "truncated", "not-an-object"],
)
def test_unreadable_result_json(tmp_path, text, problem):
    assert problem in damage_of(write_result(tmp_path, text), read_result)


def test_result_that_is_not_utf8(tmp_path):
    path = tmp_path / "result.json"
    path.write_bytes(b'{"top1": "\xff"}')
    assert damage_of(path, read_result).startswith("not UTF-8 text")


def changed(**fields) -> dict:
    result = good_result()
    for key, value in fields.items():
        if value is None:
            del result[key]
        else:
            result[key] = value
    return result


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        (changed(loss=None), "keys ['loss'] are missing"),
        (changed(loss="high"), "loss is 'high', not a number"),
        (changed(top1=True), "top1 is True, not a number"),
        (changed(n_tokens=8.5), "n_tokens is 8.5, not a count"),
        (changed(top1=1.5), "top1 is 1.5, outside [0, 1]"),
        (changed(seq_n=None), "per-sequence lists ['seq_n'] are missing"),
        (changed(seq_n=[3, 4, 1]), "per-sequence lists of unequal length"),
        (changed(seq_correct=[2, "4"]), "seq_correct holds a value that is not a number"),
        (changed(seq_n=[3, 4]), "seq_n adds up to 7, but n_tokens is 8"),
        (changed(seq_correct=[2, 3]), "seq_correct does not add up to top1 * n_tokens"),
        (changed(seed=1), "seed is 1, but the path says 0"),
        (changed(method="mean"), "method is 'mean', but the path says 'peak'"),
    ],
    ids=lambda x: None if isinstance(x, dict) else re.sub(r"\W+", "-", x)[:30],
)
def test_inconsistent_result(tmp_path, result, problem):
    assert problem in damage_of(write_result(tmp_path, result), read_result)


def test_csv_table_checks(tmp_path):
    path = tmp_path / "ablation.csv"
    path.write_text("model,method\ntiny,peak\n")
    assert damage_of(path, read_csv_table, ["model", "seed"]) == (
        "columns ['seed'] are missing (found ['model', 'method'])"
    )
    path.write_text("model,method\n")
    assert damage_of(path, read_csv_table, ["model"]) == "the table has no rows"
    assert read_csv_table(path, ["model"], may_be_empty=True).height == 0
    with pytest.raises(FileNotFoundError):
        read_csv_table(tmp_path / "absent.csv", ["model"])


def test_sequence_table_checks(tmp_path):
    import polars as pl

    path = tmp_path / "sequences.parquet"
    path.write_bytes(b"PAR1 cut off")
    assert damage_of(path, read_sequence_table).startswith("not a readable Parquet file")
    pl.DataFrame({c: [] for c in SEQUENCE_TABLE_COLUMNS if c != "loss_sum"}).write_parquet(path)
    assert "columns ['loss_sum'] are missing" in damage_of(path, read_sequence_table)


def test_png_and_text_checks(tmp_path):
    png = tmp_path / "figure.png"
    png.write_bytes(b"GIF89a" + PNG_END)
    assert damage_of(png, check_png) == "not a PNG file"
    png.write_bytes(PNG_SIGNATURE + b"\0" * 16)
    assert damage_of(png, check_png) == "the PNG is cut off (no IEND chunk at its end)"
    png.write_bytes(PNG_SIGNATURE + PNG_END)
    check_png(png)
    text = tmp_path / "comparison.md"
    text.write_text(" \n")
    assert damage_of(text, check_text) == "the file is empty"
