"""constants.method_constants, the one dispatch from a constant method to what it folds in.

That the evaluate stage and the Python API fold in the same constants (mean, peak, optimal read
from their stores) is checked end to end by tests/unit/test_api.py and
tests/workflow/test_architectures.py; here the cases that read nothing."""

from __future__ import annotations

import pytest
import torch

from neuron_ablation.constants import method_constants


def test_zero_is_float64_zeros_of_every_layer_width():
    masks = [torch.tensor([True, False, True]), torch.tensor([False, True])]
    values = method_constants("zero")(masks, 0.5)
    assert [v.dtype for v in values] == [torch.float64, torch.float64]
    assert [v.tolist() for v in values] == [[0.0, 0.0, 0.0], [0.0, 0.0]]


def test_a_resampling_method_has_no_constants():
    with pytest.raises(ValueError, match="replays a resampling bank"):
        method_constants("resample-chars")


def test_statistics_methods_read_the_store_before_any_masks(tmp_path):
    # The store is read when the dispatch is made (a job stops before its model loads).
    with pytest.raises(Exception, match="stats.zarr"):
        method_constants("peak", stats=tmp_path / "stats.zarr")
