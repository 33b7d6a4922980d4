"""Activation resampling: deterministic inputs, the HDF5 bank, and per-position replacement."""

import copy

import h5py
import numpy as np
import pytest
import torch

from neuron_ablation.ablation import overwrite_z_hooks
from neuron_ablation.architectures import attention_output_projections, neuron_widths
from neuron_ablation.config import ConfigError, model_methods, validate_config
from neuron_ablation.io import read_model_inputs, write_arrow
from neuron_ablation.resampling import (
    bank_positions,
    bank_rows,
    evaluate_resample_ablation,
    resample_ablation,
)
from neuron_ablation.resampling_bank import bank_attrs, read_bank, write_bank
from neuron_ablation.resampling_inputs import (
    ResampleSettings,
    generate_inputs,
    inputs_settings,
    special_token_ids,
)
from neuron_ablation.scoring import evaluate
from neuron_ablation.selection import ablation_masks, neuron_ranks
from tests.helpers.tiny_models import load, save_causal_lm, save_masked_lm, save_vit, task_of
from tests.helpers.workflow import tiny_config

SEQ_LEN = 12


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return save_causal_lm(tmp_path_factory.mktemp("models") / "gpt2", "gpt2")


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    return save_masked_lm(tmp_path_factory.mktemp("models") / "roberta", "roberta")


@pytest.fixture(scope="module")
def llama(tiny_llama):
    return load(tiny_llama, "llama")


def make_bank(
    tmp_path, model_dir, model, source="tokens", n_sequences=3, seq_len=SEQ_LEN, task="causal-lm"
):
    """Inputs and bank of one source, written and read back like the pipeline does."""
    settings = ResampleSettings(source, n_sequences, seq_len, seed=5)
    table, _ = generate_inputs(str(model_dir), task, settings, device="cpu")
    write_arrow(tmp_path / f"{source}.inputs.arrow", table)
    columns = read_model_inputs(tmp_path / f"{source}.inputs.arrow")
    attrs = bank_attrs(inputs_settings(table), "tiny", str(model_dir))
    write_bank(tmp_path / f"{source}.h5", model, columns, attrs, batch_size=2)
    return read_bank(tmp_path / f"{source}.h5"), columns


def masks_at(model, fraction, seed=1):
    return ablation_masks(neuron_ranks(neuron_widths(model), seed), fraction)


def per_position_values(bank, n_sequences, n_positions, start=0):
    """The explicit per-(sequence, position) bank values the pairing rule prescribes."""
    rows = bank_rows(start, n_sequences, bank.n_sequences)
    positions = bank_positions(n_positions, bank.n_positions)
    return [layer[rows][:, positions] for layer in bank.layers]


def capture_z(model):
    """Independent pre-hooks recording every projection input; returns (store, handles)."""
    store = []
    handles = [
        p.register_forward_pre_hook(lambda _m, args, i=i: store.append((i, args[0].clone())))
        for i, p in enumerate(attention_output_projections(model))
    ]
    return store, handles


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("source", ["chars", "tokens", "generated"])
def test_inputs_are_seeded_and_deterministic(tiny_llama, source):
    def ids(seed, **kw):
        settings = ResampleSettings(source, 4, SEQ_LEN, seed, **kw)
        table, _ = generate_inputs(str(tiny_llama), "causal-lm", settings, device="cpu")
        return np.array(table.column("input_ids").to_pylist()), table.column("text").to_pylist()

    (first, text), (again, text_again), (other, other_text) = ids(0), ids(0), ids(1)
    assert first.shape == (4, SEQ_LEN)
    np.testing.assert_array_equal(first, again)
    assert text == text_again
    # (the tiny word-level tokenizer reads random characters as <unk>: compare the text too)
    assert text != other_text
    if source != "chars":
        assert not np.array_equal(first, other)
    if source == "generated":
        # each sequence has its own generator: batching does not change the samples
        settings = ResampleSettings(source, 4, SEQ_LEN, 0)
        table, _ = generate_inputs(
            str(tiny_llama), "causal-lm", settings, device="cpu", batch_size=3
        )
        np.testing.assert_array_equal(first, np.array(table.column("input_ids").to_pylist()))


def test_random_tokens_avoid_special_tokens(tiny_llama):
    from neuron_ablation.models import load_tokenizer

    settings = ResampleSettings("tokens", 50, SEQ_LEN, 0)
    table, _ = generate_inputs(str(tiny_llama), "causal-lm", settings, device="cpu")
    ids = set(np.array(table.column("input_ids").to_pylist()).ravel().tolist())
    special = special_token_ids(load_tokenizer(str(tiny_llama)))
    assert special and not ids & special


def test_bank_holds_clean_z_of_every_layer_and_position(tmp_path, tiny_llama, llama):
    bank, columns = make_bank(tmp_path, tiny_llama, llama, "chars")
    with h5py.File(tmp_path / "chars.h5", "r") as f:
        assert sorted(f) == ["layer_00", "layer_01"]
        assert f["layer_00"].shape == (3, SEQ_LEN, 32) and f["layer_00"].dtype == np.float32
        assert f["layer_00"].chunks == (1, SEQ_LEN, 32)
        assert f.attrs["source"] == "chars" and f.attrs["seed"] == 5
        assert '"space_probability"' in f.attrs["settings"]
    store, handles = capture_z(llama)
    with torch.no_grad():
        llama(input_ids=torch.tensor(columns["input_ids"][2:3], dtype=torch.long))
    for handle in handles:
        handle.remove()
    for layer, z in store:
        torch.testing.assert_close(bank.layers[layer][2:3], z, rtol=0, atol=0)


def test_random_pixels_drive_a_vision_model(tmp_path):
    model_dir = save_vit(tmp_path / "vit")
    model = load(model_dir, "vit")
    settings = ResampleSettings("pixels", 3, 0, seed=2)
    table, _ = generate_inputs(str(model_dir), "image-classification", settings, device="cpu")
    again, _ = generate_inputs(str(model_dir), "image-classification", settings, device="cpu")
    assert table.equals(again)
    write_arrow(tmp_path / "pixels.inputs.arrow", table)
    columns = read_model_inputs(tmp_path / "pixels.inputs.arrow")
    assert columns["pixel_values"].shape == (3, 1, 8, 8)  # normalised by the image processor
    assert columns["pixel_values"].min() >= -1 and columns["pixel_values"].max() <= 1
    attrs = bank_attrs(inputs_settings(table), "vit", str(model_dir))
    write_bank(tmp_path / "pixels.h5", model, columns, attrs, batch_size=2)
    bank = read_bank(tmp_path / "pixels.h5")
    assert bank.layers[0].shape == (3, 5, 32)  # CLS + 4 patches
    masks = masks_at(model, 0.5)
    pixels = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with overwrite_z_hooks(model, masks, per_position_values(bank, 5, 5)):
            expected = model(pixel_values=pixels).logits
        with resample_ablation(model, masks, bank.layers):
            actual = torch.cat([model(pixel_values=pixels[i : i + 2]).logits for i in (0, 2, 4)])
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- pairing


def test_pairing_rule():
    assert bank_rows(1000, 3, 1000).tolist() == [0, 1, 2]
    assert bank_rows(998, 4, 1000).tolist() == [998, 999, 0, 1]
    assert bank_positions(5, 3).tolist() == [0, 1, 2, 0, 1]
    assert bank_positions(3, 5).tolist() == [0, 1, 2]


@pytest.mark.parametrize("model_name", ["llama", "gpt2", "roberta"])
def test_resampling_equals_explicit_per_position_overwrite(
    tmp_path, tiny_llama, tiny_gpt2, tiny_roberta, model_name
):
    """7 evaluated sequences of 16 tokens against a bank of 3 sequences of 12 (both wrap)."""
    model_dir = {"llama": tiny_llama, "gpt2": tiny_gpt2, "roberta": tiny_roberta}[model_name]
    model = load(model_dir, model_name)
    bank, _ = make_bank(tmp_path, model_dir, model, task=task_of(model_name))
    masks = masks_at(model, 0.5)
    ids = torch.from_numpy(np.random.default_rng(0).integers(4, 60, size=(7, 16)))
    with torch.no_grad():
        clean = model(input_ids=ids).logits
        with overwrite_z_hooks(model, masks, per_position_values(bank, 7, 16)):
            expected = model(input_ids=ids).logits
        with resample_ablation(model, masks, bank.layers) as state:
            # batches of 3 do not divide 7 and straddle the end of the bank
            actual = torch.cat([model(input_ids=ids[i : i + 3]).logits for i in (0, 3, 6)])
        assert state.offset == 7
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
        # the context restored the weights
        torch.testing.assert_close(model(input_ids=ids).logits, clean, rtol=0, atol=0)
    assert not torch.allclose(expected, clean)


def test_replaced_neurons_follow_the_bank_and_others_are_untouched(tmp_path, tiny_llama, llama):
    bank, _ = make_bank(tmp_path, tiny_llama, llama)
    masks = masks_at(llama, 0.4)
    ids = torch.from_numpy(np.random.default_rng(1).integers(4, 60, size=(4, SEQ_LEN)))
    expected = per_position_values(bank, 4, SEQ_LEN)
    with torch.no_grad():
        clean_store, handles = capture_z(llama)
        llama(input_ids=ids)
        for handle in handles:
            handle.remove()
        with overwrite_z_hooks(llama, masks, expected):
            reference_store, handles = capture_z(llama)
            llama(input_ids=ids)
        for handle in handles:
            handle.remove()
        # z as the projection sees it (hooks registered after ours run after it)
        with resample_ablation(llama, masks, bank.layers):
            seen_store, handles = capture_z(llama)
            llama(input_ids=ids)
        for handle in handles:
            handle.remove()

    clean, reference, seen = dict(clean_store), dict(reference_store), dict(seen_store)
    for layer, mask in enumerate(masks):
        # the replaced neurons hold exactly the bank's per-position values ...
        torch.testing.assert_close(seen[layer][..., mask], expected[layer][..., mask])
        # ... which vary over positions exactly as the bank's do
        neuron = int(torch.nonzero(mask)[0])
        values = seen[layer][0, :, neuron]
        assert len(set(values.tolist())) == SEQ_LEN
        torch.testing.assert_close(values, bank.layers[layer][0, :, neuron])
        # the other neurons keep what the reference gives them (clean values in layer 0)
        torch.testing.assert_close(seen[layer][..., ~mask], reference[layer][..., ~mask])
    torch.testing.assert_close(seen[0][..., ~masks[0]], clean[0][..., ~masks[0]], rtol=0, atol=0)


def test_sequence_1001_is_resampled_like_sequence_1(llama):
    """A bank of 1,000 sequences; 1,001 identical evaluated sequences: only the bank row differs."""
    generator = torch.Generator().manual_seed(0)
    bank = [torch.randn(1000, 6, 32, generator=generator) for _ in range(2)]
    masks = masks_at(llama, 0.5)
    ids = torch.tensor([[5, 9, 13, 2, 40, 7]]).repeat(1001, 1)
    with torch.no_grad(), resample_ablation(llama, masks, bank) as state:
        logits = torch.cat([llama(input_ids=ids[i : i + 128]).logits for i in range(0, 1001, 128)])
    assert state.offset == 1001
    torch.testing.assert_close(logits[1000], logits[0], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(logits[1], logits[0])


def test_fraction_zero_is_the_clean_baseline(tmp_path, tiny_llama, llama):
    bank, _ = make_bank(tmp_path, tiny_llama, llama)
    masks = masks_at(llama, 0.0)
    assert not any(bool(m.any()) for m in masks)
    columns = {"input_ids": np.random.default_rng(2).integers(4, 60, size=(5, SEQ_LEN))}
    clean = evaluate(llama, columns, "causal-lm", batch_size=2)
    resampled = evaluate_resample_ablation(llama, columns, "causal-lm", masks, bank, 2)
    assert resampled["n_ablated"] == 0
    assert {k: resampled[k] for k in clean} == clean


# ----------------------------------------------------------------------------- config


@pytest.fixture
def config(tiny_llama, corpus_file):
    return tiny_config(tiny_llama, corpus_file)


def test_config_rejects_methods_that_do_not_apply(config):
    bad = copy.deepcopy(config)
    bad["methods"] = ["zero", "resample-pixels"]
    with pytest.raises(
        ConfigError,
        match=r"\['resample-pixels'\] do not apply to model 'tiny' \(task causal-lm\).*"
        r"resample-chars.*skip_inapplicable_methods",
    ):
        validate_config(bad)
    masked = copy.deepcopy(config)
    masked["models"]["tiny"]["task"] = "masked-lm"
    masked["methods"] = ["resample-generated"]
    with pytest.raises(ConfigError, match="masked LM cannot generate text"):
        validate_config(masked)


def test_config_can_skip_inapplicable_methods(config):
    config = copy.deepcopy(config)
    config["methods"] = ["zero", "resample-tokens", "resample-pixels"]
    config["skip_inapplicable_methods"] = True
    validate_config(config)
    assert model_methods(config, "tiny") == ["zero", "resample-tokens"]
    assert config["resample"]["n_sequences"] == 16 and config["resample"]["generator"] is None


# Snakemake's plan of resampling, and its commands run: tests/workflow/test_resampling_plan.py.
