"""No config value reaches a shell unquoted: every placeholder of every rule's shell command is
shell-quoted, and a run whose model directory, dataset path, text field, dataset key and
resampling generator are full of shell syntax (spaces, quotes, $(...), ;, backticks, $VAR,
non-ASCII) executes none of it and passes every value through intact."""

from __future__ import annotations

import ast
import json
import re
import shutil

import yaml
import zarr

from neuron_ablation.io import read_arrow
from neuron_ablation.resampling_inputs import inputs_settings
from tests.helpers.faults import run_snakemake
from tests.helpers.tiny_models import corpus
from tests.helpers.workflow import REPO, tiny_config

SENTINEL = "PWNED"
HOSTILE = f"a b 'q' \"dq\" $(touch {SENTINEL}) ; `touch {SENTINEL}` $HOME é 模型"
PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")


def shell_commands(rules: str) -> list[str]:
    """The shell command of every rule: the string literals after each ``shell:``."""
    lines = rules.splitlines()
    commands = []
    for i, line in enumerate(lines):
        if line.strip() != "shell:":
            continue
        parts = []
        for following in lines[i + 1 :]:
            if not following.strip().startswith(('"', "'")):
                break
            parts.append(following.strip())
        commands.append(ast.literal_eval("(" + " ".join(parts) + ")"))
    return commands


def test_every_shell_placeholder_is_quoted():
    commands = {
        (smk.name, command)
        for smk in sorted((REPO / "workflow/rules").glob("*.smk"))
        for command in shell_commands(smk.read_text())
    }
    n_shell_blocks = sum(
        smk.read_text().count("shell:") for smk in (REPO / "workflow/rules").glob("*.smk")
    )
    assert len(commands) == n_shell_blocks >= 14
    unquoted = [
        (name, placeholder)
        for name, command in commands
        for placeholder in PLACEHOLDER.findall(command)
        if not placeholder.endswith(":q")
    ]
    assert unquoted == []


def test_hostile_names_execute_nothing(tmp_path, tiny_llama):
    """The run succeeds, no sentinel appears, and each value arrives byte for byte."""
    sentinel = tmp_path / "ABSOLUTE_SENTINEL"
    model = shutil.copytree(tiny_llama, tmp_path / f"model {HOSTILE}")
    generator = shutil.copytree(tiny_llama, tmp_path / f"generator {HOSTILE}")
    text_field = f"te xt {HOSTILE} $(touch {sentinel}) `touch {sentinel}`"
    dataset = tmp_path / f"data {HOSTILE}.jsonl"
    rows = (json.dumps({text_field: text}, ensure_ascii=False) + "\n" for text in corpus())
    dataset.write_text("".join(rows), encoding="utf-8")
    dataset_key = f"corpus {HOSTILE}"

    config = tiny_config(model, dataset, methods=["mean", "resample-generated"], seeds=[0])
    config["fractions"] = [0.5]
    config["datasets"] = {dataset_key: {"source": str(dataset), "text_field": text_field}}
    config["models"]["tiny"]["dataset"] = dataset_key
    config["resample"] = {"generator": str(generator), "n_sequences": 2}
    workdir = tmp_path / "work"
    workdir.mkdir()
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, allow_unicode=True))

    result = run_snakemake(workdir, configfile, "--cores", "2", "results/tables/table2.md")
    assert result.returncode == 0, result.stderr[-4000:]
    assert not sentinel.exists()
    assert list(tmp_path.rglob(SENTINEL)) == []  # `touch PWNED` would make one

    results = workdir / "results/tiny"
    tokens = read_arrow(results / "tokens/stats.arrow").schema.metadata
    assert tokens[b"dataset"].decode() == str(dataset)
    attrs = zarr.open_group(str(results / "stats.zarr"), mode="r").attrs
    assert attrs["dataset"] == dataset_key and attrs["model_source"] == str(model)
    settings = inputs_settings(read_arrow(results / "resample/generated.inputs.arrow"))
    assert settings["generator"] == str(generator)
    assert (workdir / "results/tables/ablation.csv").read_text().count("\n") == 1 + 2
