"""Non-finite numbers stop statistics, baseline and evaluation: an error naming the model, the
layer and the first module whose output is not finite, and nothing written (the histogram's own
rejection of NaN and inf: tests/unit/test_histogram.py)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from neuron_ablation.bins import BinGrid
from neuron_ablation.cli import main
from neuron_ablation.finite import NonFiniteError, layer_of, require_finite
from neuron_ablation.io import sequences_table
from neuron_ablation.scoring import evaluate
from neuron_ablation.statistics import collect_statistics
from tests.helpers.provenance import write_model_tokens
from tests.helpers.tiny_models import load, poison_weight

V_PROJ = "model.layers.0.self_attn.v_proj"
LAST_O_PROJ = "model.layers.1.self_attn.o_proj"  # the last layer: no later z sees its damage
IDS = np.random.default_rng(0).integers(4, 60, size=(6, 12))


@pytest.fixture
def damaged(tiny_llama, tmp_path, request):
    """A copy of the tiny Llama with one weight entry set to ``request.param`` =
    (module, value)."""
    module, value = request.param
    model_dir = shutil.copytree(tiny_llama, tmp_path / "damaged")
    return poison_weight(model_dir, f"{module}.weight", value), module


DAMAGE = [(V_PROJ, math.nan), (LAST_O_PROJ, math.inf)]


def test_require_finite_counts_what_it_found():
    values = torch.tensor([1.0, math.nan, math.inf, -math.inf, math.nan])
    with pytest.raises(NonFiniteError, match=r"logits hold 2 NaN and 2 inf \(of 5 values\)"):
        require_finite(values, "logits")
    require_finite(torch.ones(3), "logits")


@pytest.mark.parametrize("damaged", DAMAGE, indirect=True)
def test_statistics_stop_at_the_first_non_finite_module(damaged):
    model_dir, module = damaged
    model = load(model_dir, "llama")
    grid = BinGrid.covering(0.01, -4.0, 4.0)
    with pytest.raises(NonFiniteError) as raised:
        collect_statistics(model, {"input_ids": IDS}, grid, batch_size=4, progress=False)
    message = str(raised.value)
    assert f"the first module whose output is not finite is {module} " in message
    assert f"(layer {module.split('.')[2]};" in message
    assert f"non-finite parameters: {module}.weight (hold 1 " in message


@pytest.mark.parametrize("damaged", DAMAGE, indirect=True)
def test_evaluation_stops_on_non_finite_logits(damaged):
    model_dir, module = damaged
    model = load(model_dir, "llama")
    with pytest.raises(NonFiniteError, match=f"the logits hold .* is {module} "):
        evaluate(model, {"input_ids": IDS}, "causal-lm", batch_size=4)


def test_the_first_module_lies_in_no_layer_when_the_embedding_is_damaged(tiny_llama, tmp_path):
    model_dir = poison_weight(
        shutil.copytree(tiny_llama, tmp_path / "m"), "model.embed_tokens.weight", math.nan, 0
    )
    model = load(model_dir, "llama")
    assert layer_of(model, "model.embed_tokens") is None
    assert layer_of(model, V_PROJ) == 0
    ids = np.zeros((2, 5), dtype=np.int64)  # token 0 reads the damaged row
    with pytest.raises(NonFiniteError, match="model.embed_tokens \\(outside the transformer"):
        evaluate(model, {"input_ids": ids}, "causal-lm")


@pytest.mark.parametrize("damaged", DAMAGE, indirect=True)
@pytest.mark.parametrize("command", ["statistics", "baseline"])
def test_cli_names_the_model_and_writes_nothing(damaged, tmp_path, capsys, command):
    model_dir, module = damaged
    tokens = tmp_path / "tokens.arrow"
    write_model_tokens(tokens, sequences_table(IDS), model_dir)
    out = tmp_path / ("stats.zarr" if command == "statistics" else "baseline.json")
    args = [command, "--model-source", str(model_dir), "--task", "causal-lm", "--tokens"]
    args += [str(tokens), "--device", "cpu", "--out", str(out), "--model-name", "tiny"]
    if command == "statistics":
        args += ["--bin-width", "0.01"]
    assert main(args) == 2
    error = capsys.readouterr().err
    stage = "statistics" if command == "statistics" else "baseline"
    assert f"neuron-ablation {command}: error: model 'tiny', {stage}: " in error
    assert module in error and "Nothing was written" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged", "tokens.arrow"]
