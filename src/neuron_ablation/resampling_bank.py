"""Activation resampling, stage 2: the clean model's activations on the random inputs.

Bank (``results/{model}/resample/{source}.h5``): the clean model's z (input of every
attention output projection) on those inputs. One float32 dataset per layer, ``layer_00`` ...,
shape [sequence, position, neuron], chunked one sequence per chunk; file attrs describe model,
source, seed and generation settings. Size: ``n_layers * n_sequences * n_positions * width * 4``
bytes.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from neuron_ablation.architectures import attention_output_projections
from neuron_ablation.hooks import hooks_installed
from neuron_ablation.integrity_hdf5 import bank_read, check_bank
from neuron_ablation.io import atomic_output
from neuron_ablation.resampling_inputs import inputs_settings
from neuron_ablation.statistics import HOOK_POINT, forward_kwargs, iter_batches

log = logging.getLogger("neuron_ablation")

PAIRING_RULE = (
    "evaluated sequence j uses bank sequence j mod n_sequences; position t uses bank position "
    "t mod n_positions; only the selected neurons are replaced"
)


def layer_name(layer: int) -> str:
    return f"layer_{layer:02d}"


@torch.inference_mode()
def write_bank(
    path: str | Path,
    model: nn.Module,
    columns: dict[str, np.ndarray],
    attrs: dict[str, Any],
    batch_size: int = 8,
) -> None:
    """Run ``columns`` through the clean model and store every layer's z in an HDF5 bank.

    Batches are written as they come, so memory holds one batch of activations, not the bank.

    Args:
        columns: model inputs, ``{"input_ids": int [sequence, position]}`` or
            ``{"pixel_values": float [image, C, H, W]}``.
        attrs: file attributes (model, source, seed, settings); values must be HDF5-storable.
    """
    projections = attention_output_projections(model)
    n_items = len(next(iter(columns.values())))
    captured: list[torch.Tensor | None] = [None] * len(projections)

    def make_hook(layer: int):
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured[layer] = args[0]

        return hook

    hooks = [(p, make_hook(i)) for i, p in enumerate(projections)]
    with hooks_installed(hooks), atomic_output(path) as tmp, h5py.File(tmp, "w") as bank:
        bank.attrs.update(_h5_attrs(attrs))
        datasets: list[h5py.Dataset] = []
        start = 0
        for batch in tqdm(
            iter_batches(columns, batch_size),
            total=math.ceil(n_items / batch_size),
            desc="resample bank",
            unit="batch",
        ):
            model.base_model(**forward_kwargs(batch, model))  # z does not need the task head
            if not datasets:
                datasets = [_create_layer(bank, i, z, n_items) for i, z in enumerate(captured)]
            for dataset, z in zip(datasets, captured, strict=True):
                dataset[start : start + len(z)] = z.float().cpu().numpy()
            start += len(captured[0])
        bank.attrs["n_positions"] = datasets[0].shape[1]
        bank.attrs["n_layers"] = len(datasets)  # checked on read: a lost layer is damage


def _create_layer(bank: h5py.File, layer: int, z: torch.Tensor, n_items: int) -> h5py.Dataset:
    _, n_positions, width = z.shape
    dataset = bank.create_dataset(
        layer_name(layer),
        shape=(n_items, n_positions, width),
        dtype="float32",
        chunks=(1, n_positions, width),
        fletcher32=True,  # a checksum per chunk: a damaged bank fails to read (integrity_hdf5)
    )
    dataset.attrs["dims"] = ["sequence", "position", "neuron"]
    return dataset


def _h5_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Nested values (dicts, lists of mixed types, None) become JSON strings."""
    out = {}
    for key, value in attrs.items():
        if isinstance(value, (dict, list, tuple)) or value is None:
            out[key] = json.dumps(value, sort_keys=True)
        else:
            out[key] = value
    return out


def bank_attrs(settings: dict[str, Any], model_name: str, model_source: str) -> dict[str, Any]:
    """File attributes of a bank, from its inputs' settings."""
    return {
        "model": model_name,
        "model_source": model_source,
        "source": settings["source"],
        "seed": settings["seed"],
        "n_sequences": settings["n_sequences"],
        "settings": settings,
        "hook_point": HOOK_POINT,
        "neuron_index": "head * d_head + dim",
        "layout": "one float32 dataset per layer, layer_XX: [sequence, position, neuron]",
        "pairing": PAIRING_RULE,
    }


@dataclass
class Bank:
    """A resampling bank in memory: per layer float32 [sequence, position, neuron]."""

    layers: list[torch.Tensor]
    attrs: dict[str, Any]

    @property
    def n_sequences(self) -> int:
        return int(self.layers[0].shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.layers[0].shape[1])


def read_bank(path: str | Path) -> Bank:
    """Load a whole bank into memory (its size on disk: layers x sequences x positions x width x 4
    bytes), after checking its layout; a chunk failing its checksum raises DamagedArtifact."""
    check_bank(path, read_data=False)
    with h5py.File(path, "r") as f:
        layers = []
        for name in sorted(name for name in f if name.startswith("layer_")):
            with bank_read(path, name):
                layers.append(torch.from_numpy(f[name][()]))
        attrs = dict(f.attrs)
    return Bank(layers, attrs)


def write_model_bank(
    model_source: str,
    task: str,
    tokens: str,
    out: str,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "float32",
    model_name: str = "",
    model_digest: str | None = None,
) -> None:
    """The clean model's z on the resampling inputs ``tokens`` -> the HDF5 bank ``out``."""
    from neuron_ablation.io import read_arrow
    from neuron_ablation.models import load_checked_model_and_inputs
    from neuron_ablation.provenance import canonical_json

    settings = inputs_settings(read_arrow(tokens), tokens)
    model, columns, record = load_checked_model_and_inputs(
        model_source, task, tokens, "inputs", {"dtype": dtype},
        device=device, dtype=dtype, model_digest=model_digest,
    )  # fmt: skip
    attrs = bank_attrs(settings, model_name, model_source) | {"dtype": dtype}
    attrs["provenance"] = canonical_json(record)
    write_bank(out, model, columns, attrs, batch_size)
    log.info("wrote %s", out)
