"""Integrity of the pipeline's artifacts: checked whenever a stage reads one, and by `verify`.

Snakemake reruns a job only when an output is missing or older than its inputs, so a statistics
store that lost a chunk, a truncated result JSON or a broken bank looks up to date, and Zarr reads
a missing chunk as its fill value (zeros) without complaint. Every reader of an artifact calls the
check of its kind, and ``neuron-ablation verify`` runs all of them over ``results/``. A damaged
artifact raises :class:`DamagedArtifact`, naming the file, what is wrong with it and the command
that rebuilds it.

This module holds :class:`DamagedArtifact` and the checks of what the evaluation and aggregation
write; each other format has a module of its own: :mod:`~neuron_ablation.integrity_zarr`
(statistics, selection and learned-constant stores), :mod:`~neuron_ablation.integrity_arrow`
(token and resampling-input files), :mod:`~neuron_ablation.integrity_hdf5` (resampling banks).

- JSON results: parseable, an object with numeric ``top1``, ``loss``, ``n_tokens``,
  ``n_ablated``, method/seed/fraction equal to those of its path, and per-sequence lists
  (``seq_loss_sum``, ``seq_correct``, ``seq_n``) of one length that add up to the totals.
- Tables and figures: CSVs and ``sequences.parquet`` parse with their columns, PNGs are complete.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from neuron_ablation import metrics, paths

RESULT_KEYS = (*metrics.names(), "n_tokens", "n_ablated")
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
