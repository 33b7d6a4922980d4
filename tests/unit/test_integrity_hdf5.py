"""Checks of HDF5 resampling banks on small banks made by hand: an unreadable file, missing or
non-contiguous layers, layers of different shapes, missing attributes and a chunk that fails its
Fletcher-32 checksum are each a DamagedArtifact naming the bank and the fault."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from neuron_ablation.integrity import DamagedArtifact
from neuron_ablation.integrity_hdf5 import BANK_ATTRS, bank_read, check_bank
from tests.helpers.damage import damage_of

SHAPE = (2, 3, 4)
"""[sequence, position, neuron]"""


def write_bank(
    path: Path, layers: dict[str, tuple[int, ...]] | None = None, **attrs: object
) -> Path:
    """A bank of ``layers`` (name -> shape; two layers of SHAPE by default), one sequence per
    chunk with Fletcher-32 sums, like the resampling stage writes; an attribute None is left
    out."""
    layers = {"layer_00": SHAPE, "layer_01": SHAPE} if layers is None else layers
    with h5py.File(path, "w") as bank:
        attrs = dict.fromkeys(BANK_ATTRS, 1) | {"n_layers": len(layers)} | attrs
        bank.attrs.update({key: value for key, value in attrs.items() if value is not None})
        for name, shape in layers.items():
            data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
            bank.create_dataset(name, data=data, chunks=(1, *shape[1:]), fletcher32=True)
    return path


def test_a_good_bank_reads(tmp_path):
    check_bank(write_bank(tmp_path / "chars.h5"))


def test_unreadable_file(tmp_path):
    path = tmp_path / "chars.h5"
    path.write_bytes(b"not HDF5 at all")
    assert damage_of(path, check_bank).startswith("not a readable HDF5 bank")
    with pytest.raises(FileNotFoundError):
        check_bank(tmp_path / "absent.h5")


@pytest.mark.parametrize(
    ("layers", "attrs", "problem"),
    [
        ({}, {}, "it holds no layer_XX datasets"),
        ({"layer_00": SHAPE, "layer_02": SHAPE}, {}, "layers are not contiguous: "),
        ({"layer_00": SHAPE}, {"n_layers": 2}, "it holds 1 layers, written with 2"),
        ({"layer_00": SHAPE, "layer_01": (2, 3, 5)}, {}, "layers differ in shape: "),
        (None, {"n_positions": None}, "file attributes ['n_positions'] are missing"),
    ],
    ids=["no-layers", "gap", "lost-layer", "shapes", "attribute"],
)
def test_damaged_layout(tmp_path, layers, attrs, problem):
    path = write_bank(tmp_path / "chars.h5", layers, **attrs)
    assert damage_of(path, check_bank).startswith(problem)


def test_a_chunk_that_fails_its_checksum(tmp_path):
    path = write_bank(tmp_path / "chars.h5")
    with h5py.File(path, "r") as bank:
        chunk = bank["layer_01"].id.get_chunk_info(1)
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    check_bank(path, read_data=False)  # the layout is intact: only reading finds it
    assert damage_of(path, check_bank).startswith(
        "layer_01 does not read: a checksum failed or the file is damaged"
    )


def test_bank_read_names_the_dataset(tmp_path):
    path = tmp_path / "chars.h5"
    match = r"layer_03 does not read: .*\(boom\)"
    with pytest.raises(DamagedArtifact, match=match), bank_read(path, "layer_03"):
        raise OSError("boom")
