import numpy as np
import pytest

from neuron_ablation.selection import ablation_masks, n_ablated_per_layer, neuron_ranks


def test_ranks_are_permutations_per_layer_and_seeded():
    ranks = neuron_ranks([10, 10, 10], seed=3)
    for row in ranks:
        assert sorted(row) == list(range(10))
    np.testing.assert_array_equal(ranks, neuron_ranks([10, 10, 10], seed=3))
    assert not np.array_equal(ranks, neuron_ranks([10, 10, 10], seed=4))
    assert not np.array_equal(ranks[0], ranks[1])


@pytest.mark.parametrize("width", [7, 64, 2048])
def test_selection_is_nested_and_complete(width):
    ranks = neuron_ranks([width] * 2, seed=0)
    fractions = np.round(np.arange(0, 1.01, 0.1), 2)
    previous = None
    for fraction in fractions:
        masks = ablation_masks(ranks, fraction)
        for mask in masks:
            assert int(mask.sum()) == round(fraction * width)
        if previous is not None:
            for before, now in zip(previous, masks, strict=True):
                assert bool((before & ~now).sum() == 0)
        previous = masks
    assert all(bool(m.all()) for m in ablation_masks(ranks, 1.0))
    assert not any(bool(m.any()) for m in ablation_masks(ranks, 0.0))


def test_full_fraction_ablates_every_neuron_of_opt_width():
    # The paper's int(frac * width) left 2040 of OPT's 2048 neurons at "100 %".
    assert n_ablated_per_layer(1.0, 2048) == 2048
    with pytest.raises(ValueError, match="fraction"):
        n_ablated_per_layer(1.5, 10)


def test_select_stage_reads_widths_from_config_without_torch(tmp_path):
    """The select job runs once per (model, seed): it must not pay for importing torch or
    transformers (seconds) to write a few kilobytes; its ranks are those of the model's widths."""
    import subprocess
    import sys

    from tests.helpers.tiny_models import save_model

    directory = save_model(tmp_path / "llama", "llama")
    out = tmp_path / "seed3.zarr"
    script = (
        "import sys\n"
        "from neuron_ablation.selection import write_model_selection, read_ranks\n"
        f"write_model_selection({str(directory)!r}, 'causal-lm', 3, {str(out)!r})\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    from neuron_ablation.architectures import neuron_widths
    from neuron_ablation.selection import read_ranks
    from tests.helpers.tiny_models import load

    widths = neuron_widths(load(directory, "llama"))
    np.testing.assert_array_equal(read_ranks(out), neuron_ranks(widths, 3))


def test_a_selection_of_another_model_is_refused_before_scoring():
    """The evaluation's scorers call check_widths on every mask set (config-read widths are
    checked against the loaded model)."""
    from neuron_ablation.architectures import check_widths

    masks = ablation_masks(neuron_ranks([8, 8], seed=0), 0.5)
    with pytest.raises(ValueError, match=r"sel\.zarr.*2 layers of \[8\].*different models"):
        check_widths(_tiny_llama(), masks, "sel.zarr")


def _tiny_llama():
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)
