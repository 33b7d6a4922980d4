"""Provenance records: the model digest, the readers' checks and verify's chain check, on
hand-built artifacts (no model is run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neuron_ablation.aggregation import check_one_model_identity
from neuron_ablation.evaluation import EvaluationJob, checked_job_inputs
from neuron_ablation.histogram import BinGrid, layer_histograms
from neuron_ablation.inspection import write_neuron_report
from neuron_ablation.io import sequences_table, write_arrow, write_json
from neuron_ablation.provenance import (
    PROVENANCE_KEY,
    ProvenanceMismatch,
    artifact_id,
    canonical_json,
    check_provenance,
    compute_model_digest,
    make_record,
    read_provenance,
    write_model_digest,
)
from neuron_ablation.selection import neuron_ranks, write_selection
from neuron_ablation.sources import model_file_inputs, model_files, model_path
from neuron_ablation.statistics import write_statistics
from neuron_ablation.verify import verify_results


def fake_model(directory: Path, weights: bytes = b"weights") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text('{"model_type": "llama"}')
    (directory / "model.safetensors").write_bytes(weights)
    (directory / "tokenizer.json").write_text("{}")
    return directory


def test_model_digest_covers_config_weights_and_tokenizer_not_other_files(tmp_path):
    model = fake_model(tmp_path / "m")
    before = compute_model_digest(str(model))
    assert sorted(before["files"]) == ["config.json", "model.safetensors", "tokenizer.json"]
    (model / "README.md").write_text("notes")
    (model / ".cache").write_text("x")
    assert compute_model_digest(str(model))["digest"] == before["digest"]
    (model / "model.safetensors").write_bytes(b"other weights")  # overwritten in place
    assert compute_model_digest(str(model))["digest"] != before["digest"]
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "tokenizer.json").write_text('{"added": 1}')
    assert compute_model_digest(str(model))["digest"] != before["digest"]
    assert [p.name for p in model_files(model)] == [
        "config.json", "model.safetensors", "tokenizer.json",
    ]  # fmt: skip


def test_a_renamed_file_changes_the_digest(tmp_path):
    model = fake_model(tmp_path / "m")
    before = compute_model_digest(str(model))["digest"]
    (model / "model.safetensors").rename(model / "pytorch_model.bin")
    assert compute_model_digest(str(model))["digest"] != before


def test_check_provenance_names_file_field_both_values_and_rebuild(tmp_path):
    record = make_record({"model": {"path": None, "id": "sha256:aaa"}}, {"seed": 1})
    check_provenance(
        tmp_path / "x.zarr", record, {"inputs.model": "sha256:aaa", "settings.seed": 1}
    )
    with pytest.raises(ProvenanceMismatch) as caught:
        check_provenance(tmp_path / "x.zarr", record, {"inputs.model": "sha256:bbb"})
    message = str(caught.value)
    assert "x.zarr" in message and "inputs.model" in message
    assert "'sha256:aaa'" in message and "'sha256:bbb'" in message
    assert "snakemake --cores all --forcerun" in message
    with pytest.raises(ProvenanceMismatch, match="settings.seed = 1, but this job expects 0"):
        check_provenance(tmp_path / "x.zarr", record, {"settings.seed": 0})
    with pytest.raises(ProvenanceMismatch, match="records no provenance"):
        check_provenance(tmp_path / "x.zarr", None, {"settings.seed": 0})


# --- a hand-built chain: model digest -> tokens -> selection, statistics -> result ------------


def build_chain(root: Path, model: Path, name: str = "m") -> dict[str, Path]:
    """Artifacts of model ``name`` under ``root/results`` with true provenance records."""
    results = root / "results" / name
    digest = results / "model.digest.json"
    write_model_digest(str(model), str(digest))
    model_record = {"path": str(digest), "id": json.loads(digest.read_text())["digest"]}
    tokens = results / "tokens/eval.arrow"
    table = sequences_table(np.arange(8).reshape(2, 4))
    record = canonical_json(make_record({"model": model_record}, {"part": "eval"}))
    write_arrow(tokens, table.replace_schema_metadata({PROVENANCE_KEY: record}))
    selection = results / "selection/seed0.zarr"
    write_selection(
        selection, neuron_ranks([4, 4], 0), 0, make_record({"model": model_record}, {"seed": 0})
    )
    stats = results / "stats.zarr"
    histograms = layer_histograms([4, 4], BinGrid.covering(0.1, -1.0, 1.0))
    for histogram in histograms:
        histogram.update(torch.linspace(-0.5, 0.5, 12).reshape(3, 4))
    record = make_record({"model": model_record, "tokens": tokens}, {"bin_width": 0.1})
    write_statistics(stats, histograms, {PROVENANCE_KEY: record})
    result = results / "eval/baseline.json"
    write_json(result, {
        "top1": 0.5, "loss": 1.0, "n_tokens": 2, "n_ablated": 0, "model": name,
        PROVENANCE_KEY: make_record({"model": model_record, "tokens": tokens}, {}),
    })  # fmt: skip
    return {"digest": digest, "tokens": tokens, "selection": selection, "stats": stats,
            "baseline": result, "model": model}  # fmt: skip


@pytest.fixture
def chain(tmp_path, monkeypatch) -> dict[str, Path]:
    monkeypatch.chdir(tmp_path)
    return build_chain(tmp_path, fake_model(tmp_path / "model"))


def job(chain: dict[str, Path], **changes) -> EvaluationJob:
    fields = dict(
        model_name="m", model_source=str(chain["model"]), task="causal-lm",
        tokens=str(chain["tokens"]), method="mean", seed=0, selection=str(chain["selection"]),
        fractions=(0.5,), outputs=("out.json",), stats=str(chain["stats"]),
        baseline=str(chain["baseline"]), model_digest=str(chain["digest"]),
    )  # fmt: skip
    return EvaluationJob(**(fields | changes))


def test_an_evaluation_job_accepts_its_own_chain_and_records_it(chain):
    record = checked_job_inputs(job(chain))(0.5, {})
    assert set(record["inputs"]) == {"model", "tokens", "selection", "stats"}
    assert record["inputs"]["stats"]["id"] == artifact_id(chain["stats"])
    assert record["settings"] == {"method": "mean", "seed": 0, "fraction": 0.5,
                                  "first_items": None}  # fmt: skip


def test_another_models_statistics_store_stops_the_evaluation(chain, tmp_path):
    other = build_chain(tmp_path / "other", fake_model(tmp_path / "m2", b"other weights"))
    with pytest.raises(ProvenanceMismatch) as caught:
        checked_job_inputs(job(chain, stats=str(other["stats"])))
    message = str(caught.value)
    assert str(other["stats"]) in message and "inputs.model" in message
    assert "--forcerun" in message


def test_a_selection_of_another_seed_stops_the_evaluation(chain):
    with pytest.raises(ProvenanceMismatch, match="settings.seed = 0, but this job expects 1"):
        checked_job_inputs(job(chain, seed=1))


def test_weights_changed_since_the_digest_are_caught_without_a_digest_file(chain):
    (chain["model"] / "model.safetensors").write_bytes(b"changed in place")
    with pytest.raises(ProvenanceMismatch, match=r"tokens/eval\.arrow.*inputs\.model"):
        checked_job_inputs(job(chain, model_digest=None))  # digest computed from the files


def test_a_digest_file_of_another_model_source_is_refused(chain, tmp_path):
    with pytest.raises(ProvenanceMismatch, match="it is the digest of"):
        checked_job_inputs(job(chain, model_source=str(tmp_path / "elsewhere")))


def test_neurons_refuse_a_store_of_another_model(chain, tmp_path):
    other = build_chain(tmp_path / "other", fake_model(tmp_path / "m2", b"other weights"))
    with pytest.raises(ProvenanceMismatch, match="stats.zarr: its provenance says inputs.model"):
        write_neuron_report(
            other["stats"], tmp_path / "f.png", tmp_path / "t.csv", model_digest=chain["digest"]
        )
    assert not (tmp_path / "t.csv").exists()


def test_tables_refuse_results_of_two_models_under_one_name(chain, tmp_path):
    other = build_chain(tmp_path / "other", fake_model(tmp_path / "m2", b"other weights"))
    check_one_model_identity([chain["baseline"]])
    with pytest.raises(ProvenanceMismatch, match="model 'm' too"):
        check_one_model_identity([chain["baseline"], other["baseline"]])


def test_verify_is_clean_on_a_consistent_chain(chain, tmp_path):
    report = verify_results(tmp_path / "results")
    assert report.ok, report.format("results")


def test_verify_reports_an_artifact_whose_input_changed_as_stale(chain, tmp_path):
    table = sequences_table(np.arange(8).reshape(2, 4) + 1)  # other tokens, same record
    record = read_provenance(chain["tokens"])
    write_arrow(
        chain["tokens"], table.replace_schema_metadata({PROVENANCE_KEY: canonical_json(record)})
    )
    report = verify_results(tmp_path / "results")
    stale = {error.path.name for error in report.damaged}
    assert stale == {"stats.zarr", "baseline.json"}
    text = report.format("results")
    assert "STALE results/m/stats.zarr: its provenance says inputs.tokens" in text
    assert "but results/m/tokens/eval.arrow is now" in text


def test_verify_reports_a_deleted_input_as_missing(chain, tmp_path):
    chain["tokens"].unlink()
    report = verify_results(tmp_path / "results")
    assert not report.ok
    assert list(report.missing) == [tmp_path / "results/m/tokens/eval.arrow"]
    readers = {p.name for p in report.missing[tmp_path / "results/m/tokens/eval.arrow"]}
    assert readers == {"stats.zarr", "baseline.json"}
    assert "MISSING results/m/tokens/eval.arrow: an input of" in report.format("results")


def test_verify_reports_an_artifact_without_a_record(chain, tmp_path):
    payload = json.loads(chain["baseline"].read_text())
    del payload[PROVENANCE_KEY]
    chain["baseline"].write_text(json.dumps(payload))
    report = verify_results(tmp_path / "results")
    assert [(e.path.name, e.problem) for e in report.damaged] == [
        ("baseline.json", "it records no provenance (written before provenance existed)")
    ]


def test_the_digest_rule_tracks_each_model_file_an_embedded_directory_or_nothing(tmp_path):
    model = fake_model(tmp_path / "m")
    (model / "README.md").write_text("notes")
    assert model_file_inputs(str(model)) == [
        str(model / name) for name in ("config.json", "model.safetensors", "tokenizer.json")
    ]
    built = model_path("embedded:smollm2-135m")  # a rule builds the directory
    assert model_file_inputs(built) == [built]
    assert model_file_inputs("HuggingFaceTB/SmolLM2-135M") == []  # hub: digested from the cache


def test_verify_reports_another_models_store_copied_in_with_its_times(chain, tmp_path):
    other = build_chain(tmp_path, fake_model(tmp_path / "m2", b"other weights"), name="n")
    shutil.rmtree(chain["stats"])
    shutil.copytree(other["stats"], chain["stats"])  # like cp -rp: Snakemake reruns nothing
    report = verify_results(tmp_path / "results")
    stale = {error.path.relative_to(tmp_path).as_posix(): error.problem for error in report.damaged}
    assert "lies under results/m/" in stale["results/m/stats.zarr"]
    assert set(stale) == {"results/m/stats.zarr"}  # the stores downstream were not made yet
