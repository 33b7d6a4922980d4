"""Fold-in ablation equals overwriting z, and the hooked tensor is the out-projection's input."""

import copy

import numpy as np
import pytest
import torch

from neuron_ablation.ablation import (
    fold_constant_ablation,
    folded_constant_ablation,
    overwrite_z_hooks,
)
from neuron_ablation.architectures import (
    ARCHITECTURES,
    UnsupportedArchitectureError,
    attention_output_projections,
    neuron_widths,
)
from neuron_ablation.histogram import BinGrid
from neuron_ablation.selection import ablation_masks, neuron_ranks
from neuron_ablation.statistics import collect_statistics
from tests.helpers.tiny_models import (
    CAUSAL_ARCHITECTURES,
    MASKED_ARCHITECTURES,
    VISION_ARCHITECTURES,
    load,
    save_model,
)

ALL = CAUSAL_ARCHITECTURES + MASKED_ARCHITECTURES + VISION_ARCHITECTURES

# Written independently of neuron_ablation.architectures: module-name suffixes of each layer's
# attention output projection, as printed by model.named_modules().
EXPECTED_SUFFIX = {
    "llama": "self_attn.o_proj",
    "mistral": "self_attn.o_proj",
    "gemma3_text": "self_attn.o_proj",
    "opt": "self_attn.out_proj",
    "gpt2": "attn.c_proj",
    "gpt_neox": "attention.dense",
    "roberta": "attention.output.dense",
    "bert": "attention.output.dense",
    "vit": "attention.o_proj",
}


@pytest.fixture(scope="module", params=ALL)
def model_and_inputs(request, tmp_path_factory):
    architecture = request.param
    model = load(save_model(tmp_path_factory.mktemp(architecture), architecture), architecture)
    generator = torch.Generator().manual_seed(0)
    if architecture in VISION_ARCHITECTURES:
        inputs = {"pixel_values": torch.randn(3, 1, 8, 8, generator=generator)}
    else:
        inputs = {"input_ids": torch.randint(4, 60, (3, 12), generator=generator)}
    return architecture, model, inputs


def test_every_tested_architecture_is_in_the_table():
    assert set(ALL) <= set(ARCHITECTURES)


def test_hooked_tensor_is_the_out_projection_input(model_and_inputs):
    architecture, model, inputs = model_and_inputs
    suffix = EXPECTED_SUFFIX[architecture]
    captured = []
    handles = [
        module.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
        for name, module in model.named_modules()
        if name.endswith(suffix)
    ]
    assert len(handles) == len(neuron_widths(model))
    grid = BinGrid.covering(0.01, -5, 5)
    columns = {name: value.numpy() for name, value in inputs.items()}
    with torch.no_grad():
        histograms = collect_statistics(model, columns, grid, batch_size=8)
    for handle in handles:
        handle.remove()
    for z, histogram in zip(captured, histograms, strict=True):
        flat = z.reshape(-1, z.shape[-1]).double()
        assert histogram.count == flat.shape[0]
        np.testing.assert_allclose(histogram.mean(), flat.mean(0).numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("fraction", [0.3, 1.0])
@pytest.mark.parametrize("constant", ["zero", "random"])
def test_fold_in_equals_overwriting_z(model_and_inputs, fraction, constant):
    _, model, inputs = model_and_inputs
    widths = neuron_widths(model)
    masks = ablation_masks(neuron_ranks(widths, seed=1), fraction)
    generator = torch.Generator().manual_seed(2)
    values = [
        torch.zeros(w, dtype=torch.float64)
        if constant == "zero"
        else torch.randn(w, generator=generator, dtype=torch.float64)
        for w in widths
    ]
    with torch.no_grad():
        clean = model(**inputs).logits
        with overwrite_z_hooks(model, masks, values):
            expected = model(**inputs).logits
    folded = copy.deepcopy(model)
    fold_constant_ablation(folded, masks, values)
    with torch.no_grad():
        actual = folded(**inputs).logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    # the hooks are gone and folding worked on a copy: the model itself is still clean
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, clean)
    assert not torch.allclose(actual, clean)
    assert len(attention_output_projections(folded)) == len(widths)


def test_folded_ablation_is_undone_bit_for_bit(model_and_inputs):
    _, model, inputs = model_and_inputs
    widths = neuron_widths(model)
    masks = ablation_masks(neuron_ranks(widths, seed=3), 0.5)
    values = [torch.full((w,), 0.7, dtype=torch.float64) for w in widths]
    before = copy.deepcopy(model.state_dict())
    had_bias = [p.bias is not None for p in attention_output_projections(model)]
    with torch.no_grad():
        clean = model(**inputs).logits
        with folded_constant_ablation(model, masks, values):
            ablated = model(**inputs).logits
        after = model(**inputs).logits
    assert not torch.allclose(ablated, clean)
    assert torch.equal(after, clean)
    assert model.state_dict().keys() == before.keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert [p.bias is not None for p in attention_output_projections(model)] == had_bias


def test_unknown_architecture_lists_supported_and_how_to_add():
    model = torch.nn.Linear(2, 2)
    model.config = type("Config", (), {"model_type": "mamba"})()
    with pytest.raises(UnsupportedArchitectureError, match="supported: .*llama.*ARCHITECTURES"):
        neuron_widths(model)
