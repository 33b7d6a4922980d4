"""Damaged artifacts are caught: by the stage that reads them, and by `neuron-ablation verify`.

Every case damages one artifact of a copy of the finished tiny run (plus a resampling bank) and
checks that ``verify`` names exactly that artifact with the problem and the rebuild command, and
that the reader of the later stage refuses it with the same message. With the environment
variable ``DAMAGE_TABLE=<path>`` the cases are also written there as a markdown table.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import zarr

from neuron_ablation.aggregation import read_results
from neuron_ablation.cli import main
from neuron_ablation.comparison_report import write_comparison
from neuron_ablation.integrity import DamagedArtifact, read_result, read_sequence_table
from neuron_ablation.io import read_arrow, read_model_inputs, write_arrow
from neuron_ablation.optimal import read_constants, write_optimal
from neuron_ablation.provenance import artifact_id, canonical_json, make_record
from neuron_ablation.resampling_bank import bank_attrs, read_bank, write_bank
from neuron_ablation.resampling_inputs import ResampleSettings, generate_inputs, inputs_settings
from neuron_ablation.selection import read_ranks
from neuron_ablation.statistics import ablation_constants
from neuron_ablation.verify import verify_results
from tests.helpers.tiny_models import load

STATS = "results/tiny/stats.zarr"
DIGEST = "results/tiny/model.digest.json"
SELECTION = "results/tiny/selection/seed0.zarr"
RESULT = "results/tiny/eval/zero/seed0/frac0.50.json"
BASELINE = "results/tiny/eval/baseline.json"
TOKENS = "results/tiny/tokens/eval.arrow"
INPUTS = "results/tiny/resample/tokens.inputs.arrow"
BANK = "results/tiny/resample/tokens.h5"
ABLATION = "results/tables/ablation.csv"
FIGURE = "results/figures/tiny.png"
OPTIMAL = "results/tiny/optimal/seed0.zarr"
SEQUENCES = "results/tables/sequences.parquet"


@pytest.fixture(scope="module")
def intact(pipeline_run, tmp_path_factory) -> Path:
    """The finished tiny run's results plus a resampling inputs file and bank, and a store of
    learned constants (values made up: only its integrity is checked here)."""
    workdir, config = pipeline_run
    root = tmp_path_factory.mktemp("intact")
    shutil.copytree(workdir / "results", root / "results", symlinks=True)
    model_dir = config["models"]["tiny"]["source"]
    settings = ResampleSettings("tokens", n_sequences=2, seq_len=8, seed=0)
    table, _ = generate_inputs(model_dir, "causal-lm", settings, device="cpu")
    model = recorded(root, DIGEST)
    provenance = canonical_json(make_record({"model": model}, {}))
    write_arrow(root / INPUTS, table.replace_schema_metadata(table.schema.metadata | {
        b"provenance": provenance
    }))  # fmt: skip
    attrs = bank_attrs(inputs_settings(table), "tiny", model_dir)
    attrs["provenance"] = canonical_json(
        make_record({"model": model, "inputs": recorded(root, INPUTS)}, {})
    )
    write_bank(root / BANK, load(model_dir, "llama"), read_model_inputs(root / INPUTS), attrs)
    constants = torch.full((2, 32), torch.nan, dtype=torch.float64)
    constants[:, :16] = 0.25
    attrs = {
        "seed": 0,
        "provenance": make_record({"model": model, "stats": recorded(root, STATS)}, {"seed": 0}),
    }
    write_optimal(root / OPTIMAL, [0.5], [list(constants)], [np.array([4.0, 3.5])], attrs)
    return root


def recorded(root: Path, relative: str) -> dict:
    """The input record of ``root / relative`` as a job in ``root`` writes it."""
    return {"path": relative, "id": artifact_id(root / relative)}


# --- damages --------------------------------------------------------------------------------


def delete(relative: str) -> Callable[[Path], None]:
    return lambda root: (root / relative).unlink()


def truncate(keep: float) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return damage


def flip_byte_of(find: Callable[[Path], bytes]) -> Callable[[Path], None]:
    """Flip one byte inside the stored bytes ``find`` returns (the data, not the headers)."""

    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        offset = bytes(data).find(find(path))
        assert offset >= 0
        data[offset + 1] ^= 0xFF
        path.write_bytes(bytes(data))

    return damage


def first_token_row(path: Path) -> bytes:
    return read_model_inputs(path)["input_ids"][0].astype(np.int32).tobytes()


def first_bank_row(path: Path) -> bytes:
    with h5py.File(path, "r") as bank:
        return bank["layer_00"][0].tobytes()


def edit_zarr(name: str, change: Callable[[np.ndarray], None]) -> Callable[[Path], None]:
    """Rewrite one array with valid chunks but inconsistent values."""

    def damage(path: Path) -> None:
        group = zarr.open_group(str(path), mode="r+")
        values = np.asarray(group[name][:])
        change(values)
        group[name][:] = values

    return damage


def edit_json(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        payload = json.loads(path.read_text())
        change(payload)
        path.write_text(json.dumps(payload))

    return damage


def empty(path: Path) -> None:
    path.write_bytes(b"")


def delete_bank_layer(path: Path) -> None:
    with h5py.File(path, "r+") as bank:
        del bank["layer_01"]


def flip_chunk_byte(relative: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        chunk = path / relative
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0xFF
        chunk.write_bytes(bytes(data))

    return damage


# --- readers of the later stages ------------------------------------------------------------


def evaluate_reads_stats(path: Path) -> None:
    ablation_constants(path, "peak")


def inspect_reads_stats(path: Path) -> None:
    from neuron_ablation.inspection import open_store

    open_store(path)


def aggregate_reads(path: Path) -> None:
    read_results([path])


def resample_bank_reads_inputs(path: Path) -> None:
    inputs_settings(read_arrow(path), path)


def evaluate_optimal_reads(path: Path) -> None:
    read_constants(path, 0.5)


def compare_reads(path: Path) -> None:
    write_comparison(path, path.with_name("c.csv"), path.with_name("c.md"))


@dataclass(frozen=True)
class Damage:
    artifact: str
    damage: str
    apply: Callable[[Path], None]  # called with the artifact's path
    expected: str  # a fragment of the reported problem
    reader: Callable[[Path], object] | None  # the later stage's read, None for final outputs


DAMAGES = [
    Damage(
        STATS,
        "one hist chunk deleted",
        delete("hist/c/1/0/0"),
        "'hist' is missing chunks: 1 of 2 (hist/c/1/0/0)",
        evaluate_reads_stats,
    ),
    Damage(
        STATS,
        "the peak chunk deleted",
        delete("peak/c/0/0"),
        "'peak' is missing chunks: 1 of 1",
        inspect_reads_stats,
    ),
    Damage(
        STATS,
        "an array's metadata deleted",
        delete("mean/zarr.json"),
        "the metadata of 'mean' (mean/zarr.json) is missing",
        evaluate_reads_stats,
    ),
    Damage(
        STATS,
        "one byte of a hist chunk flipped",
        flip_chunk_byte("hist/c/0/0/0"),
        "the data of 'hist' does not decode",
        inspect_reads_stats,
    ),
    Damage(
        STATS,
        "one count changed (valid chunk)",
        edit_zarr("count", lambda v: v.__setitem__((1, 7), 511)),
        "layer 1 neuron 7: sum(hist) + underflow + overflow = 512 but count = 511",
        inspect_reads_stats,
    ),
    Damage(
        STATS,
        "one peak changed (valid chunk)",
        edit_zarr("peak", lambda v: v.__setitem__((0, 3), 0.0)),
        "layer 0 neuron 3: peak 0.0 is not the centre of its fullest bin",
        inspect_reads_stats,
    ),
    Damage(
        SELECTION,
        "the rank chunk deleted",
        delete("rank/c/0/0"),
        "'rank' is missing chunks: 1 of 1",
        read_ranks,
    ),
    Damage(
        SELECTION,
        "a rank duplicated (valid chunk)",
        edit_zarr("rank", lambda v: v.__setitem__((1, 0), v[1, 1])),
        "the ranks of layer 1 are not a permutation of 0..31",
        read_ranks,
    ),
    Damage(
        OPTIMAL,
        "the constant chunk deleted",
        delete("constant/c/0/0/0"),
        "'constant' is missing chunks: 1 of 1",
        evaluate_optimal_reads,
    ),
    Damage(
        OPTIMAL,
        "a constant made infinite (valid chunk)",
        edit_zarr("constant", lambda v: v.__setitem__((0, 1, 3), np.inf)),
        "a learned constant is infinite",
        None,
    ),
    Damage(
        SEQUENCES,
        "truncated to half",
        truncate(0.5),
        "not a readable Parquet file",
        read_sequence_table,
    ),
    Damage(
        RESULT,
        "one sequence's score removed",
        edit_json(lambda d: d["seq_n"].pop()),
        "per-sequence lists of unequal length",
        aggregate_reads,
    ),
    Damage(
        RESULT,
        "one sequence's token count changed",
        edit_json(lambda d: d["seq_n"].__setitem__(0, d["seq_n"][0] + 1)),
        "seq_n adds up to",
        aggregate_reads,
    ),
    Damage(RESULT, "truncated to 0 bytes", empty, "the JSON file is empty", aggregate_reads),
    Damage(RESULT, "cut in half", truncate(0.5), "not valid JSON", aggregate_reads),
    Damage(
        RESULT,
        "a key removed",
        edit_json(lambda d: d.pop("loss")),
        "keys ['loss'] are missing",
        aggregate_reads,
    ),
    Damage(
        RESULT,
        "another seed's result",
        edit_json(lambda d: d.update(seed=1)),
        "seed is 1, but the path says 0",
        aggregate_reads,
    ),
    Damage(
        RESULT,
        "another model's result",
        edit_json(lambda d: d.update(model="other")),
        "model is 'other', but the path says 'tiny'",
        aggregate_reads,
    ),
    Damage(
        BASELINE,
        "garbage",
        lambda p: p.write_bytes(b"\x00\xff garbage"),
        "not UTF-8 text",
        read_result,
    ),
    Damage(
        TOKENS,
        "truncated to 60 %",
        truncate(0.6),
        "not a readable Arrow IPC file",
        read_model_inputs,
    ),
    Damage(
        TOKENS,
        "one token id's byte flipped",
        flip_byte_of(first_token_row),
        "its content does not match the digest written with it",
        read_model_inputs,
    ),
    Damage(
        INPUTS,
        "truncated to 0 bytes",
        empty,
        "not a readable Arrow IPC file",
        resample_bank_reads_inputs,
    ),
    Damage(BANK, "truncated to half", truncate(0.5), "not a readable HDF5 bank", read_bank),
    Damage(
        BANK,
        "one value's byte flipped",
        flip_byte_of(first_bank_row),
        "layer_00 does not read: a checksum failed",
        read_bank,
    ),
    Damage(
        BANK, "a layer deleted", delete_bank_layer, "it holds 1 layers, written with 2", read_bank
    ),
    Damage(
        ABLATION,
        "cut after the header",
        lambda p: p.write_text(p.read_text().splitlines()[0] + "\n"),
        "the table has no rows",
        compare_reads,
    ),
    Damage(FIGURE, "cut off", truncate(0.5), "the PNG is cut off", None),
]


def damaged_copy(intact: Path, tmp_path: Path, case: Damage) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(intact, root, symlinks=True)
    case.apply(root / case.artifact)
    return root


@pytest.mark.parametrize("case", DAMAGES, ids=lambda c: f"{c.artifact.split('/')[-1]}: {c.damage}")
def test_damage_is_named_by_verify_and_by_the_reading_stage(intact, tmp_path, case, monkeypatch):
    root = damaged_copy(intact, tmp_path, case)
    monkeypatch.chdir(root)
    report = verify_results("results")
    assert [error.path.as_posix() for error in report.damaged] == [case.artifact]
    problem = report.damaged[0].problem
    assert case.expected in problem
    assert f"snakemake --cores all --forcerun {case.artifact}" in report.format("results")
    if case.reader is not None:
        with pytest.raises(DamagedArtifact) as error:
            case.reader(Path(case.artifact))
        message = str(error.value)
        assert message.startswith(f"{case.artifact}: ") and case.expected in message
        assert f"`snakemake --cores all --forcerun {case.artifact}`" in message
    _record(case, problem)


def test_intact_results_verify_clean(intact, monkeypatch, capsys):
    monkeypatch.chdir(intact)
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "resampling bank: 1" in out and "statistics store: 1" in out and ": 0 damaged" in out


def test_verify_cli_names_every_damaged_artifact_and_exits_1(intact, tmp_path, monkeypatch, capsys):
    """The issue's case: a hist chunk and the peak chunk gone, plus a zero-byte result."""
    root = tmp_path / "copy"
    shutil.copytree(intact, root, symlinks=True)
    for chunk in ("hist/c/0/0/0", "peak/c/0/0"):
        (root / STATS / chunk).unlink()
    (root / RESULT).write_bytes(b"")
    monkeypatch.chdir(root)
    assert main(["verify", "results"]) == 1
    out = capsys.readouterr().out
    assert ": 2 damaged" in out
    assert f"DAMAGED {STATS}: 'hist' is missing chunks: 1 of 2" in out and "'peak' is" in out
    assert f"DAMAGED {RESULT}: the JSON file is empty" in out
    assert f"snakemake --cores all --forcerun {RESULT} {STATS}" in out  # walk order
    # The stages that read them refuse, in one paragraph, instead of reading zeros.
    assert main(["inspect", "tiny"]) == 2
    results = [str(path) for path in (root / "results").glob("tiny/eval/*/*/*.json")]
    assert main(["aggregate", "--tables", "tables", *results]) == 2
    err = capsys.readouterr().err
    assert f"neuron-ablation inspect: error: {STATS}: 'hist' is missing chunks" in err
    assert (
        "neuron-ablation aggregate: error: " in err
        and "frac0.50.json: the JSON file is empty" in err
    )
    assert "Traceback" not in err


def test_stores_write_every_chunk_with_checksums(intact):
    """All-zero chunks (underflow of a narrow run) are stored, so a missing one is damage."""
    store = zarr.open_group(str(intact / STATS), mode="r")
    assert not np.asarray(store["underflow"][:]).any()
    assert (intact / STATS / "underflow/c/0/0").is_file()
    codecs = json.loads((intact / STATS / "hist/zarr.json").read_text())["codecs"]
    assert {"name": "zstd", "configuration": {"level": 0, "checksum": True}} in codecs
    with h5py.File(intact / BANK, "r") as bank:
        assert bank["layer_00"].fletcher32


def test_a_store_without_zero_chunks_is_reported_with_the_reason(intact, tmp_path):
    """Stores written before every chunk was stored lack their all-zero chunks."""
    root = tmp_path / "copy"
    shutil.copytree(intact, root, symlinks=True)
    (root / STATS / "underflow/c/0/0").unlink()
    attrs = json.loads((root / STATS / "zarr.json").read_text())
    del attrs["attributes"]["integrity"]
    (root / STATS / "zarr.json").write_text(json.dumps(attrs))
    with pytest.raises(DamagedArtifact, match="predates complete chunk storage"):
        ablation_constants(root / STATS, "mean")


def _record(case: Damage, problem: str) -> None:
    """Append one row to the damage table when DAMAGE_TABLE names a file."""
    target = os.environ.get("DAMAGE_TABLE")
    if not target:
        return
    path = Path(target)
    if not path.exists():
        header = "| artifact | damage | reported (verify, and the stage that reads it) |"
        path.write_text(header + "\n|---|---|---|\n")
    reader = case.reader.__name__ if case.reader else "none (final output)"
    with path.open("a") as table:
        table.write(f"| `{case.artifact}` | {case.damage} | {problem} (reader: `{reader}`) |\n")
