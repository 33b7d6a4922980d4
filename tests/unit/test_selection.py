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
