"""Integrity of HDF5 resampling banks: the file opens, layers ``layer_00``... are contiguous and
of one shape, the attributes the evaluation needs exist, and every chunk reads (new banks carry
Fletcher-32 checksums)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from neuron_ablation.integrity import DamagedArtifact

BANK_ATTRS = ("source", "n_positions")


def check_bank(path: str | os.PathLike, read_data: bool = True) -> None:
    """A resampling bank: opens, contiguous layers of one shape, attributes; with ``read_data``
    every chunk is read (one sequence at a time), which checks the Fletcher-32 sums."""
    import h5py

    if not Path(path).exists():
        raise FileNotFoundError(2, "no such bank", str(path))
    try:
        bank = h5py.File(path, "r")
    except OSError as error:
        raise DamagedArtifact(path, f"not a readable HDF5 bank ({error})") from None
    with bank:
        _check_bank_layout(path, bank)
        if read_data:
            for name in sorted(n for n in bank if n.startswith("layer_")):
                dataset = bank[name]
                with bank_read(path, name):
                    for row in range(dataset.shape[0]):
                        dataset[row]


@contextmanager
def bank_read(path: str | os.PathLike, name: str) -> Iterator[None]:
    """Reads of dataset ``name`` of a bank; a chunk that fails (a Fletcher-32 sum, damaged
    bytes) raises :class:`DamagedArtifact`."""
    try:
        yield
    except OSError as error:
        raise DamagedArtifact(
            path, f"{name} does not read: a checksum failed or the file is damaged ({error})"
        ) from None


def _check_bank_layout(path: str | os.PathLike, bank) -> None:
    names = sorted(name for name in bank if name.startswith("layer_"))
    if not names:
        raise DamagedArtifact(path, "it holds no layer_XX datasets")
    expected = [f"layer_{i:02d}" for i in range(len(names))]
    if names != expected:
        raise DamagedArtifact(path, f"layers are not contiguous: {names}")
    n_layers = bank.attrs.get("n_layers")
    if n_layers is not None and len(names) != n_layers:
        raise DamagedArtifact(path, f"it holds {len(names)} layers, written with {n_layers}")
    shapes = {bank[name].shape for name in names}
    if len(shapes) != 1:
        raise DamagedArtifact(path, f"layers differ in shape: {sorted(shapes)}")
    missing = [key for key in BANK_ATTRS if key not in bank.attrs]
    if missing:
        raise DamagedArtifact(path, f"file attributes {missing} are missing")
