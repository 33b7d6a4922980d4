"""What a model's ``config.json`` says about its attention neurons and positions, and whether
transformers can build its attention from it: read by pre-flight (before any job) and by the
stage commands (before any compute), without torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuron_ablation.architectures import ARCHITECTURES


@dataclass(frozen=True)
class ModelShape:
    """What a model's ``config.json`` says about its neurons and positions."""

    model_type: str | None
    n_layers: int | None
    width: int | None
    """Neurons per layer: attention heads x head dimension."""
    max_positions: int | None
    positions_field: str | None


def _first(config: dict[str, Any], *keys: str) -> Any:
    return next((config[k] for k in keys if isinstance(config.get(k), int)), None)


def _heads_and_hidden(config: dict[str, Any]) -> tuple[int | None, int | None]:
    heads = _first(config, "num_attention_heads", "n_head")
    return heads, _first(config, "hidden_size", "n_embd", "d_model")


def _attention_style(config: dict[str, Any]) -> str:
    architecture = ARCHITECTURES.get(config.get("model_type"))
    return architecture.attention if architecture else "split"


def model_shape(config: dict[str, Any]) -> ModelShape:
    """Layers, neurons per layer and positions from a ``config.json`` (None where absent)."""
    n_layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    heads, hidden = _heads_and_hidden(config)
    # Only grouped-attention families read head_dim; the others split hidden_size.
    head_dim = _first(config, "head_dim") if _attention_style(config) == "grouped" else None
    head_dim = head_dim or (hidden // heads if hidden and heads else None)
    width = heads * head_dim if heads and head_dim else None
    positions_field = next(
        (k for k in ("max_position_embeddings", "n_positions") if isinstance(config.get(k), int)),
        None,
    )
    max_positions = config[positions_field] if positions_field else None
    if max_positions is not None and config.get("model_type") == "roberta":
        # RoBERTa numbers positions from padding_idx + 1 (514 embeddings hold 512 tokens).
        max_positions -= int(config.get("pad_token_id") or 0) + 1
    return ModelShape(config.get("model_type"), n_layers, width, max_positions, positions_field)


def config_neuron_widths(source: str) -> list[int] | None:
    """Neurons per layer of a supported model, read from the ``config.json`` of ``source`` (a
    local directory, or a hub id through huggingface_hub's cache, which transformers shares);
    None where the file or a field is missing (then only building the model can tell)."""
    config = _source_config(source)
    if config is None or config.get("model_type") not in ARCHITECTURES:
        return None
    shape = model_shape(config)
    return [shape.width] * shape.n_layers if shape.n_layers and shape.width else None


def _source_config(source: str) -> dict[str, Any] | None:
    path = Path(source) / "config.json"
    if not Path(source).exists():
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(source, "config.json"))
    return json.loads(path.read_text()) if path.is_file() else None


def seq_len_problem(config: dict[str, Any], seq_len: int) -> str | None:
    """Why ``seq_len`` tokens do not fit the model's positions, or None."""
    shape = model_shape(config)
    if shape.max_positions is None or seq_len <= shape.max_positions:
        return None
    return (
        f"{seq_len} tokens per sequence exceed the {shape.max_positions} positions of this "
        f"{shape.model_type} model (config.json {shape.positions_field}); set it to at most "
        f"{shape.max_positions}"
    )


def attention_problems(config: dict[str, Any]) -> list[str]:
    """Why transformers cannot build this model's attention from its ``config.json`` (the
    family's rules, :attr:`neuron_ablation.architectures.Architecture.attention`), or nothing.

    Without this check such a model passes pre-flight and every job fails in transformers.
    """
    heads, hidden = _heads_and_hidden(config)
    style, model_type = _attention_style(config), config.get("model_type")
    if heads is None or hidden is None:
        return []
    if heads < 1:
        return [f"config.json num_attention_heads is {heads}; a model needs at least one head"]
    problems = []
    if style != "loose" and hidden % heads:
        head_dim_note = (
            " (head_dim sets the width of a head, not whether the heads divide hidden_size)"
            if style == "grouped" and _first(config, "head_dim")
            else ""
        )
        problems.append(
            f"config.json: {heads} attention heads do not divide hidden_size {hidden}; a "
            f"{model_type} model cuts hidden_size into equal heads{head_dim_note}, and "
            "transformers refuses to build it. Use a head count that divides the hidden size"
        )
    kv_heads = _first(config, "num_key_value_heads")
    if style == "grouped" and kv_heads is not None and (kv_heads < 1 or heads % kv_heads):
        problems.append(
            f"config.json: num_key_value_heads {kv_heads} does not divide num_attention_heads "
            f"{heads}; a {model_type} model shares each key/value head among an equal group of "
            "query heads. Use a divisor of the attention heads"
        )
    return problems
