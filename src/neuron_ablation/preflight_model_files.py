"""Pre-flight of what a model directory holds, read without loading the model: ``config.json``
(its ``model_type`` has an architecture entry for the task), complete ``*.safetensors`` files (from
their headers), the tokenizer (with a way to separate documents) or the image processor."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from neuron_ablation.architectures import ARCHITECTURES

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
)
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"


def read_config_json(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} has no config.json: not a model directory written by save_pretrained"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-save the model") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a JSON object; re-save the model")
    return config


def architecture_problem(config: dict[str, Any], task: str) -> str | None:
    """Why the table cannot ablate this model for ``task``, or None."""
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        return (
            f"model_type {model_type!r} (config.json) is not supported; supported: "
            f"{', '.join(sorted(ARCHITECTURES))}. To add one, give it an entry in "
            "neuron_ablation.architectures.ARCHITECTURES"
        )
    family_task = ARCHITECTURES[model_type].task
    if family_task != task:
        return (
            f"model_type {model_type!r} is a {family_task} model, but the config says task "
            f"{task}; set task: {family_task}"
        )
    return None


REFETCH = "download or copy the model again"


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is incomplete or corrupt, or None. Reads only its header."""
    size = path.stat().st_size
    if size < 8:
        return f"{path} is truncated ({size} bytes, not even a header length); {REFETCH}"
    with open(path, "rb") as f:
        (header_length,) = struct.unpack("<Q", f.read(8))
        if 8 + header_length > size:
            return (
                f"{path} is truncated or corrupt: its header alone would be "
                f"{header_length:,} bytes; {REFETCH}"
            )
        try:
            header = json.loads(f.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
    if not isinstance(header, dict):
        return f"{path} is corrupt: its header is not a JSON object; {REFETCH}"
    ends = [
        entry["data_offsets"][1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    expected = 8 + header_length + max(ends, default=0)
    if size < expected:
        return (
            f"{path} is truncated: {size:,} of {expected:,} bytes (its header lists the tensors); "
            f"{REFETCH}"
        )
    return None


def weight_files_problems(directory: Path) -> list[str]:
    """Missing or truncated weight files of a local model directory."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError, TypeError):
            return [f"{index} is not a valid shard index (no weight_map); {REFETCH}"]
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            return [f"{index} lists shards that are missing: {missing}; {REFETCH}"]
        files = [directory / s for s in shards]
    else:
        files = sorted(directory.glob("*.safetensors"))
    if not files:
        if any(
            (directory / name).is_file()
            for name in ("pytorch_model.bin", "pytorch_model.bin.index.json")
        ):
            return []  # a pickle checkpoint: not checkable without loading it
        return [
            f"{directory} has no weights (model.safetensors or pytorch_model.bin); save the "
            "model with save_pretrained"
        ]
    return [problem for path in files if (problem := safetensors_problem(path))]


def processor_problem(directory: Path, task: str) -> str | None:
    """A text model needs its tokenizer, a vision model its image processor, next to it."""
    if task == "image-classification":
        if (directory / IMAGE_PROCESSOR_FILE).is_file():
            return None
        return (
            f"{directory} has no {IMAGE_PROCESSOR_FILE}: save the image processor next to the "
            "model (processor.save_pretrained(directory))"
        )
    if any((directory / name).is_file() for name in TOKENIZER_FILES):
        return document_end_problem(directory)
    return (
        f"{directory} has no tokenizer ({', '.join(TOKENIZER_FILES[:2])}, ...): save it next to "
        "the model (tokenizer.save_pretrained(directory))"
    )


def _declares_eos(directory: Path) -> bool:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            if json.loads((directory / name).read_text(encoding="utf-8")).get("eos_token"):
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def document_end_problem(directory: Path) -> str | None:
    """Why the tokenize job would refuse this tokenizer (no EOS and nothing that separates
    documents: :func:`neuron_ablation.tokenization.document_end`), or None. The tokenizer is
    loaded only when its config declares no EOS token."""
    if _declares_eos(directory):
        return None
    from neuron_ablation.models import load_tokenizer
    from neuron_ablation.tokenization import NoDocumentSeparatorError, document_end

    try:
        document_end(load_tokenizer(str(directory)))
    except NoDocumentSeparatorError as error:
        return f"{directory}: {error}"
    except (OSError, ValueError) as error:
        return f"{directory}: the tokenizer cannot be loaded ({error})"
    return None
