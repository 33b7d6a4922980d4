"""Loading models: tiny randomly initialised models of the real Hugging Face classes, saved with
save_pretrained and loaded through the project's loader by task, device and dtype."""

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file

from neuron_ablation.io import sequences_table, write_arrow
from neuron_ablation.models import (
    DTYPES,
    check_seq_len,
    load_model,
    load_model_and_inputs,
    neuron_widths_of,
    resolve_device,
)
from neuron_ablation.tasks import TASKS
from tests.helpers.tiny_models import (
    HIDDEN,
    LAYERS,
    save_causal_lm,
    save_masked_lm,
    save_vit,
)


def test_a_saved_model_loads_with_its_weights_in_eval_mode(tiny_llama):
    model = load_model(str(tiny_llama), "causal-lm", device="cpu")
    assert isinstance(model, transformers.LlamaForCausalLM)
    assert not model.training  # dropout off: scores do not depend on the run
    saved = load_file(tiny_llama / "model.safetensors")
    name = "model.layers.1.self_attn.o_proj.weight"
    torch.testing.assert_close(model.state_dict()[name], saved[name], rtol=0, atol=0)
    assert {p.device.type for p in model.parameters()} == {"cpu"}


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_every_dtype_name_gives_parameters_of_that_dtype(tiny_llama, dtype):
    model = load_model(str(tiny_llama), "causal-lm", device="cpu", dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {DTYPES[dtype]}


LOADERS = {
    "causal-lm": (save_causal_lm, transformers.LlamaForCausalLM),
    "masked-lm": (save_masked_lm, transformers.RobertaForMaskedLM),
    "image-classification": (save_vit, transformers.ViTForImageClassification),
}


def test_every_task_has_a_loader_test():
    assert tuple(LOADERS) == TASKS


@pytest.mark.parametrize("task", list(LOADERS))
def test_the_task_picks_the_head(tmp_path, task):
    save, model_class = LOADERS[task]
    model = load_model(str(save(tmp_path / "model")), task, device="cpu")
    assert isinstance(model, model_class)


def test_an_unknown_task_is_refused_before_loading(tiny_llama):
    with pytest.raises(ValueError, match=r"task must be one of causal-lm, masked-lm, .*'seq2seq'"):
        load_model(str(tiny_llama), "seq2seq")


def test_an_unknown_dtype_is_refused(tiny_llama):
    with pytest.raises(ValueError, match=r"dtype must be one of float32, .*'float64'"):
        load_model(str(tiny_llama), "causal-lm", dtype="float64")


def test_auto_device_is_cuda_only_where_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")  # a named device is taken as it is


def test_neuron_widths_come_from_the_config_alone(tiny_llama):
    assert neuron_widths_of(str(tiny_llama), "causal-lm") == [HIDDEN] * LAYERS


def test_seq_len_beyond_the_model_positions_is_refused_naming_the_field(tiny_llama):
    check_seq_len(str(tiny_llama), 128, "the model's seq_len")  # max_position_embeddings
    with pytest.raises(ValueError, match=r"--seq-len \(the model's seq_len in the config\)"):
        check_seq_len(str(tiny_llama), 129, "the model's seq_len")


def test_model_and_inputs_load_together(tiny_llama, tmp_path):
    tokens = tmp_path / "eval.arrow"
    ids = np.arange(24).reshape(3, 8) % 60
    write_arrow(tokens, sequences_table(ids))
    model, columns = load_model_and_inputs(str(tiny_llama), "causal-lm", str(tokens), "cpu")
    np.testing.assert_array_equal(columns["input_ids"], ids)
    logits = model(input_ids=torch.tensor(columns["input_ids"], dtype=torch.long)).logits
    assert logits.shape == (3, 8, model.config.vocab_size)
