"""The method registry (neuron_ablation.methods) is the one list of ablation methods: the schema,
the CLI, the config's per-task lists, the workflow and resampling agree with it."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from neuron_ablation import cli, config, methods
from neuron_ablation.methods import METHODS, method, methods_for_task, names


def _enum(schema: dict, *path: str) -> list[str]:
    node = schema["properties"]
    for key in path:
        node = node[key]
    return node["enum"]


def _evaluate_method_choices() -> list[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    evaluate = sub.choices["evaluate"]
    action = next(a for a in evaluate._actions if "--method" in a.option_strings)
    return list(action.choices)


def test_schema_enum_is_the_registry_in_order():
    schema = config.load_schema()
    assert schema["properties"]["methods"]["items"]["enum"] == list(names())


def test_cli_evaluate_choices_are_the_registry():
    assert _evaluate_method_choices() == list(names())
    assert names("resampling") == cli.RESAMPLE_METHODS
    assert cli.RESAMPLE_SOURCES == methods.RESAMPLE_SOURCES


# The per-task lists as config.methods_for_task decided them before the registry.
BEFORE = {
    (
        "causal-lm",
        False,
    ): "zero mean peak optimal resample-chars resample-tokens resample-generated",
    ("causal-lm", True): "zero mean peak optimal resample-chars resample-tokens resample-generated",
    ("masked-lm", False): "zero mean peak optimal resample-chars resample-tokens",
    ("masked-lm", True): "zero mean peak optimal resample-chars resample-tokens resample-generated",
    ("image-classification", False): "zero mean peak optimal resample-pixels",
    ("image-classification", True): "zero mean peak optimal resample-pixels",
}


@pytest.mark.parametrize(("task", "has_generator"), list(BEFORE))
def test_config_per_task_lists_come_from_the_registry(task, has_generator):
    expected = tuple(BEFORE[task, has_generator].split())
    assert config.methods_for_task(task, has_generator) == expected
    assert methods_for_task(task, has_generator) == expected
    assert expected == tuple(m.name for m in METHODS if m.applies_to(task, has_generator))


def test_config_aliases():
    assert config.CONSTANT_METHODS == ("zero", "mean", "peak")
    assert config.LEARNED_METHODS == ("optimal",)
    assert config.TEXT_RESAMPLE_METHODS == (
        "resample-chars",
        "resample-tokens",
        "resample-generated",
    )
    assert set(names()) == {
        *config.CONSTANT_METHODS,
        *config.LEARNED_METHODS,
        *names("resampling"),
    }


def test_kinds_and_needs():
    assert methods.statistics_methods() == ("mean", "peak")
    assert names("learned") == tuple(m.name for m in METHODS if m.needs_training)
    assert names("resampling") == tuple(m.name for m in METHODS if m.needs_bank)
    assert methods.RESAMPLE_SOURCES == ("chars", "tokens", "generated", "pixels")
    assert methods.TEXT_SOURCES == ("chars", "tokens", "generated")
    assert [method(n).source for n in names("resampling")] == list(methods.RESAMPLE_SOURCES)
    assert method("zero").source is None
    for m in METHODS:
        assert m.description and "\n" not in m.description


def test_resampling_derives_from_the_registry():
    pytest.importorskip("torch")
    from neuron_ablation import resampling_inputs

    assert resampling_inputs.SOURCES == methods.RESAMPLE_SOURCES
    assert resampling_inputs.TEXT_SOURCES == methods.TEXT_SOURCES


def test_statistics_store_holds_an_array_per_statistics_method(tmp_path):
    """The store writer writes, the integrity check requires and ``ablation_constants`` reads
    an array named after each method with ``needs_statistics``."""
    torch = pytest.importorskip("torch")
    from neuron_ablation.histogram import BinGrid, NeuronHistogram
    from neuron_ablation.integrity_zarr import STATISTICS_ARRAYS
    from neuron_ablation.statistics import ablation_constants, write_statistics

    grid = BinGrid.covering(0.1, -1.0, 1.0)
    histograms = []
    for layer in range(2):
        histogram = NeuronHistogram(3, grid)
        histogram.update(torch.full((4, 3), 0.25 * layer, dtype=torch.float64))
        histograms.append(histogram)
    path = tmp_path / "stats.zarr"
    write_statistics(path, histograms, {"model": "synthetic"})
    for name in methods.statistics_methods():
        assert STATISTICS_ARRAYS[name] == 2
        constants = ablation_constants(path, name)
        assert [tuple(c.shape) for c in constants] == [(3,), (3,)]


def test_unknown_method_names_the_allowed_values():
    with pytest.raises(ValueError) as info:
        method("median")
    message = str(info.value)
    assert "'median'" in message
    for name in names():
        assert name in message
    with pytest.raises(ValueError, match="kinds: constant, resampling, learned"):
        names("fancy")
    with pytest.raises(ValueError, match="tasks: causal-lm, masked-lm, image-classification"):
        methods_for_task("speech")


def test_inconsistent_method_is_refused():
    with pytest.raises(ValueError, match="need a bank"):
        methods.Method("resample-noise", "resampling", "noise")
    with pytest.raises(ValueError, match="unknown tasks"):
        methods.Method("half", "constant", "half", tasks=("speech",))


# What each import must leave without torch (the CLI: building its parser too).
TORCH_FREE = {
    "neuron_ablation.methods": "",
    "neuron_ablation.config": "",
    "neuron_ablation.cli": "neuron_ablation.cli.build_parser()",
}


@pytest.mark.parametrize("module", list(TORCH_FREE))
def test_import_does_not_load_torch(module):
    code = (
        f"import sys, {module}\n{TORCH_FREE[module]}\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
