"""Optimal ablation: learned constants beat the mean on their training data, fold in exactly,
are deterministic, and never see evaluation data."""

import numpy as np
import pytest
import torch
import zarr

from neuron_ablation.ablation import folded_constant_ablation, overwrite_z_hooks
from neuron_ablation.architectures import neuron_widths
from neuron_ablation.cli import main
from neuron_ablation.io import (
    read_json,
    read_model_inputs,
    sequences_table,
    write_arrow,
)
from neuron_ablation.models import load_tokenizer
from neuron_ablation.optimal import (
    OptimalSettings,
    fold_values,
    masked_lm_corruption,
    neuron_mean,
    neuron_spread,
    read_constants,
    require_statistics_split,
    train_constants,
)
from neuron_ablation.scoring import evaluate
from neuron_ablation.selection import ablation_masks, read_ranks
from neuron_ablation.statistics import open_statistics
from neuron_ablation.tokenization import masked_sequences_table
from tests.helpers.provenance import write_model_tokens
from tests.helpers.tiny_models import load, save_model, task_of


def _stats_tokens(path, model_source, seed: int = 0, shape=(12, 16)):
    ids = np.random.default_rng(seed).integers(4, 60, size=shape)
    table = sequences_table(ids).replace_schema_metadata({"part": "stats"})
    return write_model_tokens(path, table, model_source)


@pytest.fixture(scope="module")
def llama_setup(tmp_path_factory, tiny_llama):
    """Statistics and a selection of a tiny Llama on random 'statistics' tokens."""
    tmp = tmp_path_factory.mktemp("optimal")
    tokens = _stats_tokens(tmp / "stats.arrow", tiny_llama)
    model = ["--model-source", str(tiny_llama), "--task", "causal-lm"]
    runtime = ["--tokens", str(tokens), "--device", "cpu", "--batch-size", "4"]
    main(["statistics", *model, *runtime, "--bin-width", "0.01", "--out", str(tmp / "stats.zarr")])
    main(["select", *model, "--seed", "0", "--out", str(tmp / "seed0.zarr")])
    return tmp, model, runtime


def _train(model, columns, task, stats, masks, **settings):
    store = open_statistics(stats)
    return train_constants(
        model,
        columns,
        task,
        masks,
        neuron_mean(store),
        neuron_spread(store),
        OptimalSettings(**settings),
    )


def test_learned_constants_lower_the_training_loss_below_the_mean(llama_setup, tiny_llama):
    tmp, _, _ = llama_setup
    model = load(tiny_llama, "llama")
    columns = read_model_inputs(tmp / "stats.arrow")
    masks = ablation_masks(read_ranks(tmp / "seed0.zarr"), 0.5)
    constants, curve = _train(model, columns, "causal-lm", tmp / "stats.zarr", masks, steps=30,
                              batch_size=4, lr=0.1)  # fmt: skip
    mean = neuron_mean(open_statistics(tmp / "stats.zarr"))
    with overwrite_z_hooks(model, masks, mean):
        at_mean = evaluate(model, columns, "causal-lm", batch_size=4)["loss"]
    with overwrite_z_hooks(model, masks, fold_values(constants, masks)):
        learned = evaluate(model, columns, "causal-lm", batch_size=4)["loss"]
    assert learned < at_mean - 1e-3
    assert curve[-5:].mean() < curve[:5].mean()
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again afterwards


def test_constants_are_nan_exactly_where_nothing_is_ablated(llama_setup, tiny_llama):
    tmp, _, _ = llama_setup
    model = load(tiny_llama, "llama")
    masks = ablation_masks(read_ranks(tmp / "seed0.zarr"), 0.3)
    constants, _ = _train(model, read_model_inputs(tmp / "stats.arrow"), "causal-lm",
                          tmp / "stats.zarr", masks, steps=2, batch_size=2)  # fmt: skip
    for c, mask in zip(constants, masks, strict=True):
        assert torch.equal(~torch.isnan(c), mask)
    with pytest.raises(ValueError, match="other neurons"):
        fold_values(constants, ablation_masks(read_ranks(tmp / "seed0.zarr"), 0.5))


def test_same_seed_gives_identical_constants_through_the_cli(llama_setup, tmp_path):
    tmp, model, runtime = llama_setup
    common = [*model, *runtime, "--stats", str(tmp / "stats.zarr"), "--selection",
              str(tmp / "seed0.zarr"), "--seed", "0", "--fraction", "0.5", "0.9",
              "--steps", "4"]  # fmt: skip
    main(["optimal", *common, "--out", str(tmp_path / "a.zarr")])
    main(["optimal", *common, "--out", str(tmp_path / "b.zarr")])
    for fraction in (0.5, 0.9):
        a = read_constants(tmp_path / "a.zarr", fraction)
        b = read_constants(tmp_path / "b.zarr", fraction)
        assert all(
            torch.equal(x.nan_to_num(7.0), y.nan_to_num(7.0)) for x, y in zip(a, b, strict=True)
        )
    with pytest.raises(ValueError, match="trained fractions"):
        read_constants(tmp_path / "a.zarr", 0.3)
    # Where it ran is recorded beside the provenance, which stays the artifact's identity.
    attrs = zarr.open_group(str(tmp_path / "a.zarr"), mode="r").attrs
    assert attrs["machine"]["torch"] == str(torch.__version__)
    assert "machine" not in attrs["provenance"]
    b_attrs = zarr.open_group(str(tmp_path / "b.zarr"), mode="r").attrs
    assert attrs["provenance"] == b_attrs["provenance"]


def test_folding_learned_constants_equals_overwriting_z(llama_setup, tiny_llama, tmp_path):
    tmp, model_args, runtime = llama_setup
    store = tmp_path / "opt.zarr"
    main(["optimal", *model_args, *runtime, "--stats", str(tmp / "stats.zarr"), "--selection",
          str(tmp / "seed0.zarr"), "--seed", "0", "--fraction", "0.7", "--steps", "5",
          "--out", str(store)])  # fmt: skip
    model = load(tiny_llama, "llama")
    masks = ablation_masks(read_ranks(tmp / "seed0.zarr"), 0.7)
    values = fold_values(read_constants(store, 0.7), masks)
    ids = torch.tensor(np.random.default_rng(5).integers(4, 60, size=(3, 10)))
    with torch.no_grad(), overwrite_z_hooks(model, masks, values):
        reference = model(input_ids=ids).logits
    with torch.no_grad(), folded_constant_ablation(model, masks, values):
        folded = model(input_ids=ids).logits
    torch.testing.assert_close(folded, reference, rtol=1e-5, atol=1e-5)


def test_training_refuses_evaluation_tokens(llama_setup, tmp_path, capsys):
    tmp, model, _ = llama_setup
    ids = np.random.default_rng(2).integers(4, 60, size=(4, 16))
    evaluation = tmp_path / "eval.arrow"
    write_arrow(evaluation, sequences_table(ids).replace_schema_metadata({"part": "eval"}))
    with pytest.raises(ValueError, match="statistics split only"):
        require_statistics_split(evaluation)
    assert main(["optimal", *model, "--tokens", str(evaluation), "--stats", str(tmp / "stats.zarr"),
                 "--selection", str(tmp / "seed0.zarr"), "--seed", "0", "--fraction", "0.5",
                 "--out", str(tmp_path / "never.zarr")]) == 2  # fmt: skip
    assert "part='eval'" in capsys.readouterr().err
    assert not (tmp_path / "never.zarr").exists()


def test_evaluate_optimal_writes_every_fraction(llama_setup, tmp_path):
    tmp, model, runtime = llama_setup
    store = tmp_path / "opt.zarr"
    main(["optimal", *model, *runtime, "--stats", str(tmp / "stats.zarr"), "--selection",
          str(tmp / "seed0.zarr"), "--seed", "0", "--fraction", "0.5", "1.0", "--steps", "3",
          "--out", str(store)])  # fmt: skip
    outs = [tmp_path / "f05.json", tmp_path / "f10.json"]
    main(["evaluate", *model, *runtime, "--model-name", "tiny", "--method", "optimal", "--seed",
          "0", "--selection",
          str(tmp / "seed0.zarr"), "--optimal", str(store), "--fraction", "0.5", "1.0",
          "--out", *map(str, outs)])  # fmt: skip
    results = [read_json(p) for p in outs]
    assert [r["fraction"] for r in results] == [0.5, 1.0]
    assert all(len(r["seq_n"]) == 12 and sum(r["seq_n"]) == r["n_tokens"] for r in results)


@pytest.mark.parametrize("architecture", ["roberta", "vit"])
def test_masked_lm_and_vision_constants_train(architecture, tmp_path):
    """Every task trains: learned constants score better than the initial ones on the training
    inputs (for the masked LM under one fixed corruption of them)."""
    path = save_model(tmp_path / architecture, architecture)
    task = task_of(architecture)
    model = load(path, architecture)
    rng = np.random.default_rng(0)
    if task == "image-classification":
        columns = {
            "pixel_values": rng.normal(size=(16, 1, 8, 8)).astype(np.float32),
            "label": rng.integers(0, 3, size=16),
        }
        scored, corruption = columns, None
    else:
        columns = {"input_ids": rng.integers(5, 60, size=(16, 16))}
        corruption = masked_lm_corruption(str(path))
        table = masked_sequences_table(load_tokenizer(str(path)), columns["input_ids"], 3)
        write_arrow(tmp_path / "masked.arrow", table)
        scored = read_model_inputs(tmp_path / "masked.arrow")
    widths = neuron_widths(model)
    masks = [torch.arange(w) % 2 == 0 for w in widths]
    start = [torch.zeros(w, dtype=torch.float64) for w in widths]
    spread = [torch.ones(w, dtype=torch.float64) for w in widths]
    settings = OptimalSettings(steps=25, batch_size=16, lr=0.5)
    constants, _ = train_constants(model, columns, task, masks, start, spread, settings, corruption)
    with overwrite_z_hooks(model, masks, start):
        before = evaluate(model, scored, task, batch_size=16)["loss"]
    with overwrite_z_hooks(model, masks, fold_values(constants, masks)):
        after = evaluate(model, scored, task, batch_size=16)["loss"]
    assert after < before - 1e-3


# The pipeline's token files carry their split: tests/workflow/test_pipeline.py.
