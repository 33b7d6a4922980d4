"""The demo catalog (neuron_ablation.demo.catalog): what a missing asset's message names."""

from __future__ import annotations

import pytest

from neuron_ablation.demo.catalog import FASHION_MNIST_FILES


def test_missing_fashion_mnist_is_named_with_the_fix(tmp_path):
    from neuron_ablation.demo.catalog import fashion_mnist_inputs

    (tmp_path / FASHION_MNIST_FILES["train"][0]).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="are missing") as error:
        fashion_mnist_inputs(tmp_path)
    message = str(error.value)
    assert FASHION_MNIST_FILES["test"][0] in message
    assert FASHION_MNIST_FILES["train"][0] not in message
    assert "apt-get install -y dataset-fashion-mnist" in message and "embedded:digits" in message
    for split in FASHION_MNIST_FILES.values():
        for name in split:
            (tmp_path / name).write_bytes(b"")
    assert len(fashion_mnist_inputs(tmp_path)) == 4
