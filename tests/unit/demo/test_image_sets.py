"""Demo image sets (neuron_ablation.demo.image_sets): the digits split, names, Fashion-MNIST."""

from __future__ import annotations

import numpy as np
import pytest

from neuron_ablation.demo.catalog import FASHION_MNIST_APT, FASHION_MNIST_DIR, FASHION_MNIST_FILES
from neuron_ablation.demo.image_sets import load_image_dataset


def _rows(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
    pairs = zip(images, labels, strict=True)
    return sorted(image.tobytes() + bytes([label]) for image, label in pairs)


def test_digits_split_is_a_disjoint_stratified_partition():
    from sklearn.datasets import load_digits

    train_x, train_y, names = load_image_dataset("digits", "train")
    test_x, test_y, _ = load_image_dataset("digits", "test")
    assert train_x.dtype == np.uint8 and train_x.shape[1:] == (8, 8) and train_y.dtype == np.int64
    assert names == [str(d) for d in range(10)]
    assert (len(train_x), len(test_x)) == (1437, 360)
    full = load_digits()
    all_x = np.rint(full.images * (255 / 16)).astype(np.uint8)
    # Together the splits are exactly the dataset, each image once: a partition.
    assert _rows(np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])) == _rows(
        all_x, full.target
    )
    assert set(np.unique(test_y)) == set(range(10))
    again, _, _ = load_image_dataset("digits", "test")
    np.testing.assert_array_equal(again, test_x)


def test_load_image_dataset_rejects_unknown_names():
    with pytest.raises(ValueError, match="split"):
        load_image_dataset("digits", "validation")
    with pytest.raises(ValueError, match="image dataset"):
        load_image_dataset("cifar", "train")


def test_fashion_mnist_loads():
    if not all((FASHION_MNIST_DIR / f).is_file() for f in FASHION_MNIST_FILES["test"]):
        pytest.skip(f"Fashion-MNIST not installed ({FASHION_MNIST_APT})")
    images, labels, names = load_image_dataset("fashion-mnist", "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert names[9] == "Ankle boot"
