"""The embedded image sets: Fashion-MNIST (Debian's ``dataset-fashion-mnist``, read in place)
and scikit-learn's digits, as uint8 arrays with their labels.

Where the files lie: :mod:`neuron_ablation.demo.catalog`. The pipeline reads them through
``sources.load_image_set``; ``demo.vit.train_vit`` trains on them.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from neuron_ablation.demo.catalog import (
    FASHION_MNIST_APT,
    FASHION_MNIST_DIR,
    FASHION_MNIST_FILES,
    IMAGE_SETS,
    missing_fashion_mnist_files,
)

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DIGITS_TEST_SHARE = 0.2


def load_image_dataset(
    name: str, split: str, data_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a grayscale image classification dataset.

    Parameters
    ----------
    name
        ``"fashion-mnist"`` (28x28, 60000 train / 10000 test, read from the IDX files of the
        Debian package, see ``FASHION_MNIST_APT``) or ``"digits"`` (scikit-learn, 8x8, 1797
        images, split 80/20 stratified with a fixed seed, so the split never changes).
    split
        ``"train"`` or ``"test"``.
    data_dir
        Directory of the Fashion-MNIST ``*-ubyte.gz`` files; default ``FASHION_MNIST_DIR``.

    Returns
    -------
    images : np.ndarray
        uint8 [n, height, width], 0 = black, 255 = white (digits' 0..16 is rescaled).
    labels : np.ndarray
        int64 [n].
    class_names : list[str]
        Name of each label id.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name == "fashion-mnist":
        return _load_fashion_mnist(split, data_dir or FASHION_MNIST_DIR)
    if name == "digits":
        return _load_digits(split)
    raise ValueError(f"image dataset must be one of {IMAGE_SETS}, got {name!r}")


def image_dataset_source(name: str, data_dir: Path | None = None) -> str:
    """Where ``load_image_dataset(name)`` reads from, for provenance records."""
    if name == "fashion-mnist":
        return str(data_dir or FASHION_MNIST_DIR)
    return "sklearn.datasets.load_digits"


def _read_idx_gz(path: Path) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes (header: 0, 0, 0x08, ndim, big-endian dims)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise ValueError(f"{path}: header says {shape}, found {data.size} values")
    return data.reshape(shape).copy()


def _load_fashion_mnist(split: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    missing = missing_fashion_mnist_files(data_dir)
    if missing:
        raise FileNotFoundError(f"{missing} missing; install them with: {FASHION_MNIST_APT}")
    image_file, label_file = (Path(data_dir) / f for f in FASHION_MNIST_FILES[split])
    images, labels = _read_idx_gz(image_file), _read_idx_gz(label_file).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels in {data_dir}")
    return images, labels, list(FASHION_MNIST_CLASSES)


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    index = np.arange(len(images))
    train, test = train_test_split(
        index, test_size=DIGITS_TEST_SHARE, random_state=0, stratify=bunch.target
    )
    chosen = np.sort(train if split == "train" else test)
    return (
        images[chosen],
        bunch.target[chosen].astype(np.int64),
        [str(c) for c in bunch.target_names],
    )
