import pytest
import torch
from torch import nn

from neuron_ablation.histogram import BinGrid
from neuron_ablation.hooks import hooks_installed
from neuron_ablation.statistics import collect_statistics
from tests.helpers.tiny_models import load, save_causal_lm


def hook_counts(module: nn.Module) -> int:
    return len(module._forward_pre_hooks) + len(module._forward_hooks)


def test_hooks_run_inside_the_block_and_are_gone_after_it():
    layer = nn.Linear(2, 2)
    seen = []
    with hooks_installed(
        [(layer, lambda _m, args: seen.append("pre"))],
        pre_with_kwargs=[(layer, lambda _m, args, kwargs: seen.append("kwargs"))],
        post=[(layer, lambda _m, args, out: seen.append("post"))],
    ):
        layer(torch.zeros(1, 2))
    layer(torch.zeros(1, 2))
    assert seen == ["pre", "kwargs", "post"]
    assert hook_counts(layer) == 0


def test_hooks_are_removed_when_the_block_raises():
    layer = nn.Linear(2, 2)
    with pytest.raises(RuntimeError), hooks_installed([(layer, lambda _m, args: None)]):
        raise RuntimeError("boom")
    assert hook_counts(layer) == 0


def test_installed_hooks_are_removed_when_a_later_install_fails():
    first = nn.Linear(2, 2)
    with (
        pytest.raises(AttributeError),
        hooks_installed([(first, lambda _m, args: None), (object(), lambda _m, args: None)]),
    ):
        pass  # pragma: no cover - never reached
    assert hook_counts(first) == 0


def test_statistics_continued_over_two_calls_equal_one_pass(tmp_path):
    model = load(save_causal_lm(tmp_path / "m"), "llama")
    ids = torch.randint(0, model.config.vocab_size, (6, 12)).numpy()
    grid = BinGrid.covering(0.05, -2, 2)
    whole = collect_statistics(model, {"input_ids": ids}, grid, batch_size=4, progress=False)
    part = collect_statistics(model, {"input_ids": ids[:2]}, grid, batch_size=4, progress=False)
    part = collect_statistics(
        model, {"input_ids": ids[2:]}, grid, batch_size=4, progress=False, histograms=part
    )
    for a, b in zip(whole, part, strict=True):
        assert a.count == b.count == ids.size
        assert torch.equal(a.counts, b.counts)
        torch.testing.assert_close(a.sum, b.sum)
    assert all(hook_counts(p) == 0 for p in model.modules())
