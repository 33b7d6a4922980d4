"""The architecture table: the only place that knows each model family's module names.

A *neuron* is one input feature of a layer's attention output projection, i.e. one entry of
TransformerLens' ``hook_z`` flattened over heads: neuron index = head * d_head + dim.

Adding an architecture is one entry in ``ARCHITECTURES``: the attribute path from
``model.base_model`` to the list of transformer blocks, the path from a block to its attention
output projection, and whether that projection is a ``torch.nn.Linear`` (weight [out, in]) or a
GPT-2 style ``Conv1D`` (weight [in, out]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the table is read by the pre-flight check, which must not import torch
    from collections.abc import Sequence

    import torch
    from torch import nn

WeightLayout = Literal["linear", "conv1d"]
Task = Literal["causal-lm", "masked-lm", "image-classification"]
AttentionStyle = Literal["split", "grouped", "loose"]


@dataclass(frozen=True)
class Architecture:
    """Where the attention output projection lives in one model family."""

    blocks: str | tuple[str, ...]
    """Dotted attribute path from ``model.base_model`` to the ``ModuleList`` of blocks
    (alternatives in a tuple, for module names that changed between transformers versions)."""
    out_proj: str | tuple[str, ...]
    """Dotted attribute path from one block to its attention output projection (or alternatives)."""
    layout: WeightLayout = "linear"
    """``linear``: ``y = z @ W.T + b`` (W is [out, in]); ``conv1d``: ``y = z @ W + b``."""
    vocabulary_head: str | tuple[str, ...] | None = None
    """Dotted path from the task model (``*ForCausalLM``, ``*ForMaskedLM``) to its position-wise
    vocabulary head, called with the hidden states as first argument and returning the model's
    logits unchanged (no soft-capping or scaling after it), so evaluation can run it on the
    scored positions only, in chunks. None: the model's own full logits are scored."""
    task: Task = "causal-lm"
    """The pipeline task this family is loaded for (checked before any job runs)."""
    attention: AttentionStyle = "split"
    """How the family's config.json shapes attention (the pre-flight check's rules): ``split``,
    ``hidden_size`` is cut into ``num_attention_heads`` equal heads (transformers refuses a
    remainder); ``grouped``, the same, and ``num_key_value_heads`` must divide the heads and
    ``head_dim``, when set, overrides ``hidden_size / heads``; ``loose``, heads of
    ``hidden_size // heads`` whatever the remainder (ViT builds such a model)."""


GQA: AttentionStyle = "grouped"

ARCHITECTURES: dict[str, Architecture] = {
    # causal language models
    "opt": Architecture("decoder.layers", "self_attn.out_proj", vocabulary_head="lm_head"),
    "llama": Architecture("layers", "self_attn.o_proj", vocabulary_head="lm_head", attention=GQA),
    "mistral": Architecture("layers", "self_attn.o_proj", vocabulary_head="lm_head", attention=GQA),
    "qwen2": Architecture("layers", "self_attn.o_proj", vocabulary_head="lm_head", attention=GQA),
    "gemma": Architecture("layers", "self_attn.o_proj", vocabulary_head="lm_head", attention=GQA),
    # Gemma 2 and 3 soft-cap the head's output, so their own logits are scored.
    "gemma2": Architecture("layers", "self_attn.o_proj", attention=GQA),
    "gemma3_text": Architecture("layers", "self_attn.o_proj", attention=GQA),
    "gpt2": Architecture("h", "attn.c_proj", layout="conv1d", vocabulary_head="lm_head"),
    # transformers 5 renamed GPT-NeoX's embed_out to lm_head.
    "gpt_neox": Architecture("layers", "attention.dense", vocabulary_head=("lm_head", "embed_out")),
    # masked language models
    "roberta": Architecture(
        "encoder.layer", "attention.output.dense", vocabulary_head="lm_head", task="masked-lm"
    ),
    "bert": Architecture(
        "encoder.layer", "attention.output.dense", vocabulary_head="cls", task="masked-lm"
    ),
    # vision
    # transformers >= 5.20 renamed ViT's modules; the first path that exists is used.
    "vit": Architecture(
        ("layers", "encoder.layer"),
        ("attention.o_proj", "attention.output.dense"),
        task="image-classification",
        attention="loose",
    ),
}


class UnsupportedArchitectureError(ValueError):
    """The model's ``config.model_type`` has no entry in :data:`ARCHITECTURES`."""


def architecture_of(model: nn.Module) -> Architecture:
    """Look up the table entry for a Hugging Face model by its ``config.model_type``."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is not supported; supported: "
            f"{', '.join(sorted(ARCHITECTURES))}. To add one, give it an entry in "
            "neuron_ablation.architectures.ARCHITECTURES: the path from model.base_model to the "
            "blocks, the path from a block to its attention output projection, and its layout."
        )
    return ARCHITECTURES[model_type]


def _get_path(root: nn.Module, paths: str | tuple[str, ...]) -> nn.Module:
    """The module at the first of ``paths`` that exists below ``root``."""
    for path in (paths,) if isinstance(paths, str) else paths:
        module = root
        try:
            for name in path.split("."):
                module = getattr(module, name)
        except AttributeError:
            continue
        return module
    raise UnsupportedArchitectureError(
        f"{type(root).__name__} has none of the module paths {paths}; the entry for this "
        "architecture in neuron_ablation.architectures.ARCHITECTURES needs updating"
    )


def transformer_blocks(model: nn.Module) -> nn.Module:
    """The ``ModuleList`` of transformer blocks (layers), first layer first."""
    return _get_path(model.base_model, architecture_of(model).blocks)


def attention_output_projections(model: nn.Module) -> list[nn.Module]:
    """The attention output projection of every layer, first layer first."""
    out_proj = architecture_of(model).out_proj
    return [_get_path(block, out_proj) for block in transformer_blocks(model)]


def vocabulary_head(model: nn.Module) -> nn.Module | None:
    """The vocabulary head of a language model, if the table names one and the model has it."""
    path = architecture_of(model).vocabulary_head
    if path is None:
        return None
    try:
        return _get_path(model, path)
    except UnsupportedArchitectureError:
        return None  # e.g. the bare body (AutoModel) of a language-model family


def projection_width(projection: nn.Module, layout: WeightLayout) -> int:
    """Number of neurons (input features) of one attention output projection."""
    weight = projection.weight
    return int(weight.shape[1] if layout == "linear" else weight.shape[0])


def neuron_widths(model: nn.Module) -> list[int]:
    """Neurons per layer: the input width of each attention output projection."""
    layout = architecture_of(model).layout
    return [projection_width(p, layout) for p in attention_output_projections(model)]


def check_widths(model: nn.Module, masks: Sequence[torch.Tensor], origin: str = "") -> None:
    """Stop when the per-layer masks bool [neuron] (read from ``origin``, if named) do not fit
    the model's neurons."""
    widths, given = neuron_widths(model), [len(m) for m in masks]
    if given != widths:
        source = f" ({origin})" if origin else ""
        raise ValueError(
            f"the ablation{source} has {len(given)} layers of {sorted(set(given))} neurons, the "
            f"model {len(widths)} layers of {sorted(set(widths))}: they belong to different models"
        )
