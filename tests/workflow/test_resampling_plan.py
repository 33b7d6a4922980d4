"""Snakemake wires resampling into its plan, and the planned commands run (split from
tests/unit/test_resampling.py)."""

import copy
import re

import h5py
import numpy as np

from neuron_ablation.io import read_json, read_model_inputs, sequences_table
from tests.helpers.provenance import write_model_tokens
from tests.helpers.workflow import run_snakemake


def test_pipeline_wires_resampling_and_the_cli_runs_it(tmp_path, good, capsys):
    """Snakemake's plan (dry run) plus the planned commands run in-process on a tiny model."""
    from neuron_ablation.cli import main

    config = copy.deepcopy(good)
    config.update(
        methods=["resample-tokens", "resample-generated"],
        seeds=[0],
        fractions=[0.0, 0.5],
        resample={"n_sequences": 3, "seed": 4},
    )
    dry = run_snakemake(tmp_path, config, "-n", "-p", "--cores", "1").stdout
    for rule in ("resample_inputs", "resample_bank", "evaluate", "tables", "figure"):
        assert f"rule {rule}:" in dry
    assert "--bank results/tiny/resample/generated.h5" in dry
    assert "--source generated --n-sequences 3 --seed 4 --seq-len 16" in dry
    assert "--top-k 0" in dry and "--generator-source" not in dry
    assert not (tmp_path / "results").exists()

    model = ["--model-source", str(config["models"]["tiny"]["source"]), "--task", "causal-lm"]
    res = tmp_path / "results/tiny"
    inputs, bank, out = res / "tokens.inputs.arrow", res / "tokens.h5", res / "eval.json"
    main(["resample-inputs", *model, "--source", "tokens", "--n-sequences", "3", "--seq-len",
          "16", "--seed", "4", "--device", "cpu", "--out", str(inputs)])  # fmt: skip
    main(["resample-bank", *model, "--tokens", str(inputs), "--device", "cpu", "--model-name",
          "tiny", "--out", str(bank)])  # fmt: skip
    ids = np.random.default_rng(0).integers(4, 60, size=(5, 16))
    write_model_tokens(res / "eval.arrow", sequences_table(ids), model[1])
    main(["select", *model, "--seed", "0", "--out", str(res / "selection.zarr")])
    half = res / "eval_half.json"
    evaluate_args = [*model, "--model-name", "tiny", "--tokens", str(res / "eval.arrow"),
                     "--device", "cpu", "--seed",
                     "0", "--fraction", "0.5", "1.0", "--selection", str(res / "selection.zarr"),
                     "--bank", str(bank), "--out", str(half), str(out)]  # fmt: skip
    assert main(["evaluate", "--method", "resample-chars", *evaluate_args]) == 2
    assert re.search("bank of source 'tokens'.*needs source 'chars'", capsys.readouterr().err)
    assert not half.exists() and not out.exists()  # refused before writing anything
    main(["evaluate", "--method", "resample-tokens", *evaluate_args])
    result = read_json(half)
    assert result["method"] == "resample-tokens" and result["n_bank_sequences"] == 3
    assert result["n_ablated"] == 32  # half of 2 layers x 32 neurons
    assert read_json(out)["n_ablated"] == 64 and read_json(out)["fraction"] == 1.0
    assert read_model_inputs(inputs)["input_ids"].shape == (3, 16)
    with h5py.File(bank, "r") as f:
        assert f["layer_01"].shape == (3, 16, 32) and f.attrs["seed"] == 4
