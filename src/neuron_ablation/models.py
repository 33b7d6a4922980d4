"""Loading models by task from a hub id or a local directory, on the chosen device and dtype."""

from __future__ import annotations

import torch
from torch import nn

from neuron_ablation import tasks

DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in tasks.DTYPES}
"""The torch dtype of each dtype name of :data:`neuron_ablation.tasks.DTYPES`."""

AUTO_CLASSES: dict[str, str] = {
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "image-classification": "AutoModelForImageClassification",
}
"""The transformers Auto class that loads a model of each task (named: transformers loads when
a model does)."""


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(source: str, task: str, device: str = "auto", dtype: str = "float32") -> nn.Module:
    """Load a pretrained model for ``task`` in eval mode.

    ``source`` is anything ``from_pretrained`` accepts: a hub id (downloaded and cached by
    transformers) or a local directory written by ``save_pretrained``.
    """
    auto = auto_class(task)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    model = auto.from_pretrained(source, dtype=DTYPES[dtype])
    return model.to(resolve_device(device)).eval()


def auto_class(task: str) -> type:
    """The transformers Auto class of ``task`` (:data:`AUTO_CLASSES`)."""
    import transformers

    if task not in AUTO_CLASSES:
        raise ValueError(f"task must be one of {', '.join(tasks.TASKS)}, got {task!r}")
    return getattr(transformers, AUTO_CLASSES[task])


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def neuron_widths_of(source: str, task: str) -> list[int]:
    """Neurons per layer, read from the model's config without loading its weights."""
    import transformers

    from neuron_ablation.architectures import neuron_widths

    config = transformers.AutoConfig.from_pretrained(source)
    with torch.device("meta"):
        model = auto_class(task).from_config(config)
    return neuron_widths(model)


def check_seq_len(source: str, seq_len: int, field: str) -> None:
    """Stop before any compute when ``seq_len`` exceeds the model's positions (known once its
    config is read); ``field`` names the config value in the error."""
    from transformers import AutoConfig

    from neuron_ablation.model_shapes import seq_len_problem

    problem = seq_len_problem(AutoConfig.from_pretrained(source).to_dict(), seq_len)
    if problem:
        raise ValueError(f"--seq-len ({field} in the config): {problem}")


def load_model_and_inputs(
    source: str, task: str, tokens: str, device: str = "auto", dtype: str = "float32"
) -> tuple[nn.Module, dict]:
    """The model (:func:`load_model`) and the model-input columns of the Arrow file ``tokens``
    (:func:`neuron_ablation.io.read_model_inputs`)."""
    from neuron_ablation.io import read_model_inputs

    return load_model(source, task, device, dtype), read_model_inputs(tokens)


def load_checked_model_and_inputs(
    source: str,
    task: str,
    tokens: str,
    role: str,
    settings: dict,
    *,
    device: str = "auto",
    dtype: str = "float32",
    model_digest: str | None = None,
) -> tuple[nn.Module, dict, dict]:
    """:func:`load_model_and_inputs`, after checking that ``tokens`` was made from this model
    (before any weight loads), with the provenance record of a job that reads the model and
    ``tokens`` (as ``role``) with ``settings``."""
    from neuron_ablation.provenance import check_artifact, make_record, model_input

    model_record = model_input(source, model_digest)
    check_artifact(tokens, {"inputs.model": model_record["id"]})
    record = make_record({"model": model_record, role: tokens}, settings)
    return *load_model_and_inputs(source, task, tokens, device, dtype), record
