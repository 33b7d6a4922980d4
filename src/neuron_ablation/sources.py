"""The one place that interprets a model or dataset ``source`` string of the config.

A source is one of three kinds (:func:`parse_source`):

- ``embedded``: ``embedded:<name>``, an asset of the demo (:mod:`neuron_ablation.demo`) that the
  pipeline builds under ``resources/`` (models, text) or reads in place (image sets);
- ``local``: a path that exists, or is written as one (it starts with ``.``, ``/`` or ``~``, or
  ends in one of :data:`LOCAL_SUFFIXES`);
- ``hub``: anything else, a Hugging Face hub id.

Everything outside :mod:`neuron_ablation.demo` reaches the demo through this module only
(``cli.build_parser`` adds the demo's subcommands, the one other way in); tests/unit/test_sources.py
enforces it. The demo's names and locations are :mod:`neuron_ablation.demo.catalog`'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from neuron_ablation.demo import catalog

EMBEDDED_PREFIX = catalog.EMBEDDED_PREFIX
EMBEDDED_MODELS = catalog.MODELS
"""The names an ``embedded:`` model source can take."""
EMBEDDED_DATASETS = catalog.DATASETS
"""The names an ``embedded:`` dataset source can take."""
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")
"""A source ending in one of these is a local file (the text formats of ``tokenization``)."""

SourceKind = Literal["embedded", "local", "hub"]


@dataclass(frozen=True)
class Source:
    """A parsed ``source`` string."""

    text: str
    """As written in the config."""
    kind: SourceKind
    name: str | None = None
    """The asset name of an ``embedded`` source (``None`` for the other kinds)."""


def parse_source(text: str) -> Source:
    """The kind of ``text``: ``embedded:<name>``, a local path, or a hub id."""
    if text.startswith(EMBEDDED_PREFIX):
        return Source(text, "embedded", text.removeprefix(EMBEDDED_PREFIX))
    if _written_as_path(text) or Path(text).expanduser().exists():
        return Source(text, "local")
    return Source(text, "hub")


def _written_as_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or Path(text).suffix in LOCAL_SUFFIXES


def embedded_asset(source: str) -> str | None:
    """The asset name of an ``embedded:<name>`` source, else None."""
    return parse_source(source).name


def model_path(source: str) -> str:
    """What ``from_pretrained`` loads: a hub id, a local directory, or an embedded model's."""
    name = embedded_asset(source)
    return str(catalog.model_dir(name)) if name else source


def dataset_path(source: str) -> str:
    """A hub id, a local path, an embedded text dataset's jsonl, or ``embedded:<image set>``
    unchanged (read in place by :func:`load_image_set`)."""
    name = embedded_asset(source)
    return str(catalog.text_file(name)) if name in catalog.TEXT_DATASETS else source


def local_inputs(*paths: str) -> list[str]:
    """Of resolved paths (:func:`model_path`, :func:`dataset_path`), those Snakemake must build
    or track: an embedded asset's under ``resources/`` (a rule builds it), an existing local one.
    """
    return [p for p in paths if p.startswith(f"{catalog.RESOURCES}/") or Path(p).exists()]


MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".tiktoken")
"""Files of a model directory that ``from_pretrained`` reads (config, weights, tokenizer, image
processor). Others (a README, hidden files) do not change any result, so they are not digested."""


def model_files(directory: str | os.PathLike) -> list[Path]:
    """The files of a model directory that ``provenance.compute_model_digest`` hashes, sorted by
    name (also the file-level inputs of the Snakemake rule ``model_digest``)."""
    directory = Path(directory)
    return sorted(
        entry
        for entry in directory.iterdir()
        if entry.is_file() and not entry.name.startswith(".")
        and entry.suffix in MODEL_FILE_SUFFIXES
    )  # fmt: skip


def model_file_inputs(path: str) -> list[str]:
    """What the Snakemake rule ``model_digest`` tracks of a resolved model path (``model_path``):
    each file it digests (:func:`model_files`) as one input, so a file overwritten in place
    reruns it (a directory's time changes only when entries are added or removed); an embedded
    model's directory (a rule builds it); nothing for a hub id."""
    if not path.startswith(f"{catalog.RESOURCES}/") and Path(path).is_dir():
        return [str(p) for p in model_files(path)]
    return local_inputs(path)


def source_inputs(source: str, role: Literal["model", "dataset"]) -> list[str]:
    """What Snakemake must build or track for a model or dataset ``source``: its
    :func:`local_inputs`, and the files an embedded image set is read from (a missing
    Fashion-MNIST raises FileNotFoundError with the apt command, before any job runs)."""
    if role == "model":
        return local_inputs(model_path(source))
    return local_inputs(dataset_path(source)) + catalog.image_set_inputs(embedded_asset(source))


def load_image_set(source: str, split: str):
    """Images (uint8 [n, h, w]), labels (int64 [n]) and class names of ``split`` ("train" or
    "test") of an ``embedded:<image set>`` source."""
    from neuron_ablation.demo.image_sets import load_image_dataset

    name = embedded_asset(source)
    return load_image_dataset(source if name is None else name, split)  # it rejects other names


def check_source(field: str, source: str, allowed: tuple[str, ...]) -> list[str]:
    """Config problems of ``source`` at ``field``: an embedded name not in ``allowed``
    (:data:`EMBEDDED_MODELS` or :data:`EMBEDDED_DATASETS`), a local path that does not exist."""
    parsed = parse_source(source)
    if parsed.kind == "embedded":
        if parsed.name not in allowed:
            names = [EMBEDDED_PREFIX + e for e in allowed]
            return [f"{field}: unknown embedded asset {source!r}; allowed: {names}"]
        return []
    if parsed.kind == "local" and not Path(source).expanduser().exists():
        return [f"{field}: local path {source!r} does not exist"]
    return []


def embedded_config_problems(config: dict[str, Any]) -> list[str]:
    """What a config must respect for the embedded assets (``catalog.config_problems``)."""
    return catalog.config_problems(config)
