"""The one home of artifact paths: every builder agrees with the kind ``verify`` recognises,
the rules use it, and results are read by their content, never by their path."""

import re
from pathlib import Path

import pytest

from neuron_ablation import paths
from neuron_ablation.aggregation import read_results
from neuron_ablation.io import write_json
from neuron_ablation.verify import ARTIFACT_CHECKS
from tests.helpers.workflow import REPO

BUILT = {
    "model digest": [paths.model_digest("m")],
    "token file": [paths.tokens("m", "stats"), paths.tokens("m", "eval")],
    "statistics store": [paths.stats("m")],
    "selection": [paths.selection("m", 3)],
    "optimal constants": [paths.optimal("m", 0)],
    "resampling inputs": [paths.resample_inputs("m", "chars")],
    "resampling bank": [paths.resample_bank("m", "chars")],
    "evaluation result": [paths.baseline("m"), paths.eval_result("m", "peak", 2, 0.5)],
    "table": [paths.table("ablation.csv"), paths.top_neurons("m")],
    "per-sequence table": [paths.table("sequences.parquet")],
    "markdown table": [paths.table("table2.md")],
    "figure": [paths.figure("m"), paths.neurons_figure("m")],
}


def test_every_artifact_kind_is_built_and_checked():
    assert list(BUILT) == list(paths.ARTIFACT_PATTERNS) == list(ARTIFACT_CHECKS)
    for kind, built in BUILT.items():
        for path in built:
            assert paths.artifact_kind(path) == kind, path
    assert paths.artifact_kind(paths.log("tables")) is None


def test_eval_result_layout_round_trips():
    path = paths.eval_result("smollm2-135m", "resample-chars", 2, 0.9)
    assert path == "results/smollm2-135m/eval/resample-chars/seed2/frac0.90.json"
    assert paths.eval_result_fields(path) == {
        "model": "smollm2-135m",
        "method": "resample-chars",
        "seed": 2,
        "fraction": 0.9,
    }
    assert paths.eval_result_fields(paths.baseline("m")) is None
    assert paths.selection_seed(paths.selection("m", 7)) == 7


def test_wildcard_patterns_pass_through():
    """The rules build their patterns with the same functions."""
    assert paths.eval_result("{model}", "{method}", "{seed}", "{f}") == (
        "results/{model}/eval/{method}/seed{seed}/frac{f}.json"
    )
    assert paths.log("evaluate", "{model}/{method}_seed{seed}") == (
        "results/logs/evaluate/{model}/{method}_seed{seed}.log"
    )
    assert paths.benchmark("tables") == "results/benchmarks/tables.tsv"


def test_rules_build_no_result_path_themselves():
    """Result paths in the workflow come from neuron_ablation.paths only."""
    spelled_out = re.compile(r"\{RESULTS\}|[\"']results/")
    for rule_file in [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]:
        for number, line in enumerate(rule_file.read_text().splitlines(), 1):
            assert not spelled_out.search(line), f"{rule_file.name}:{number}: {line.strip()}"


def test_stats_store_accepts_a_model_name(tmp_path):
    assert paths.stats_store("smollm2-135m") == Path("results/smollm2-135m/stats.zarr")
    assert paths.stats_store(tmp_path) == tmp_path


RESULT = {"top1": 0.25, "loss": 3.0, "n_tokens": 8, "n_ablated": 4}


def test_results_are_read_by_their_content(tmp_path):
    """A result lying anywhere aggregates under the keys it carries."""
    path = tmp_path / "anywhere.json"
    write_json(path, RESULT | {"model": "m", "method": "peak", "seed": 1, "fraction": 0.5})
    row = read_results([path]).row(0, named=True)
    assert (row["model"], row["method"], row["seed"], row["fraction"]) == ("m", "peak", 1, 0.5)


def test_a_result_without_its_keys_is_refused(tmp_path):
    path = tmp_path / "m/eval/peak/seed1/frac0.50.json"
    write_json(path, RESULT | {"method": "peak", "seed": 1, "fraction": 0.5})
    with pytest.raises(ValueError, match=r"\['model'\] missing.*rerun"):
        read_results([path])
