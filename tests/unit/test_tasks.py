"""The task and dtype names (neuron_ablation.tasks) are the one list of each: the schema's enums,
the CLI's choices, the method registry and the model loader agree with them."""

from __future__ import annotations

import argparse
import typing

import pytest

from neuron_ablation import architectures, cli, config, methods, models, tasks


def _model_field(name: str) -> dict:
    schema = config.load_schema()
    return schema["properties"]["models"]["additionalProperties"]["properties"][name]


def _choices(command: str, option: str) -> list[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if option in a.option_strings)
    return list(action.choices)


def test_schema_enums_are_the_registry_in_order():
    assert _model_field("task")["enum"] == list(tasks.TASKS)
    assert _model_field("dtype")["enum"] == list(tasks.DTYPES)
    assert _model_field("dtype")["default"] in tasks.DTYPES


@pytest.mark.parametrize("command", ["tokenize", "statistics", "evaluate", "resample-inputs"])
def test_cli_choices_are_the_registry(command):
    assert _choices(command, "--task") == list(tasks.TASKS)
    if command != "tokenize":  # tokenizing loads no model
        assert _choices(command, "--dtype") == list(tasks.DTYPES)


def test_loader_and_methods_cover_every_task_and_dtype():
    assert tuple(models.AUTO_CLASSES) == tasks.TASKS
    assert tuple(models.DTYPES) == tasks.DTYPES
    assert {str(d).removeprefix("torch.") for d in models.DTYPES.values()} == set(tasks.DTYPES)
    assert typing.get_args(architectures.Task) == tasks.TASKS
    assert set(tasks.TEXT_TASKS) | set(tasks.VISION_TASKS) == set(tasks.TASKS)
    assert set(tasks.TEXT_TASKS).isdisjoint(tasks.VISION_TASKS)
    assert {t for m in methods.METHODS for t in m.tasks} == set(tasks.TASKS)


def test_loader_refuses_an_unknown_task():
    with pytest.raises(ValueError, match="task must be one of causal-lm, masked-lm"):
        models.auto_class("seq2seq")
