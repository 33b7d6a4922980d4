"""The demo ViT: a :class:`~transformers.ViTForImageClassification`, randomly initialised and
trained on Fashion-MNIST (Debian package ``dataset-fashion-mnist``) or scikit-learn's digits."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neuron_ablation.demo.image_sets import image_dataset_source, load_image_dataset
from neuron_ablation.demo.training import Stopwatch, run_record, setup, train_loop
from neuron_ablation.io import atomic_output, write_json

VIT_DEFAULTS: dict[str, dict[str, Any]] = {
    # Fashion-MNIST: 2 epochs of 2 layers train in about a quarter of the time of the former
    # 4 x 4, for 1.3 points of test accuracy (figures: docs/measurements.md).
    "fashion-mnist": {"patch_size": 7, "epochs": 2, "num_layers": 2},
    "digits": {"patch_size": 2, "epochs": 40, "num_layers": 4},
}


def train_vit(
    data: str,
    out_dir: Path,
    seed: int = 0,
    *,
    epochs: int | None = None,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    hidden_size: int = 128,
    num_layers: int | None = None,
    num_heads: int = 4,
    mlp_ratio: int = 2,
    patch_size: int | None = None,
    max_train: int | None = None,
    max_steps: int | None = None,
    data_dir: Path | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a small ViT from random initialisation and save it with its image processor.

    The images are grayscale, so the model has ``num_channels=1`` and the saved
    ``ViTImageProcessor`` normalises one channel (``image_mean``/``image_std`` of length 1,
    measured on the training images after rescaling to [0, 1]); it does not resize in effect
    (``size`` is the training resolution). Give it single-channel images: PIL images of mode
    ``"L"`` or arrays [h, w, 1] / [1, h, w]; it yields ``pixel_values`` [n, 1, h, w]. RGB
    input must be converted to ``"L"`` first (with 3 channels the 1-element mean is rejected).

    Parameters
    ----------
    data
        ``"fashion-mnist"`` or ``"digits"`` (see :func:`load_image_dataset`).
    out_dir
        Output directory (replaced atomically): model, ``preprocessor_config.json``,
        ``training.json``.
    seed
        Seeds the initialisation, the training-subset choice and the batch order.
    epochs, patch_size, num_layers
        Default per dataset from ``VIT_DEFAULTS``.
    batch_size, lr, weight_decay
        AdamW with 5 % linear warmup and cosine decay, gradient norm clipped to 1.
    hidden_size, num_heads, mlp_ratio
        Transformer size; the MLP width is ``mlp_ratio * hidden_size``.
    max_train
        Train on a seeded random subset of this many images (tests, quick runs).
    max_steps
        Stop after this many optimisation steps (tests); the schedule ends there.
    data_dir
        Fashion-MNIST directory, default ``catalog.FASHION_MNIST_DIR``.
    threads
        ``torch.set_num_threads`` value; None keeps torch's default.
    progress
        Show tqdm bars.

    Returns
    -------
    dict
        The contents of ``training.json``.
    """
    from transformers import ViTConfig, ViTForImageClassification

    setup(seed, threads)
    defaults = VIT_DEFAULTS.get(data, {})
    epochs = epochs or defaults.get("epochs", 4)
    patch_size = patch_size or defaults.get("patch_size", 4)
    num_layers = num_layers or defaults.get("num_layers", 4)
    generator = torch.Generator().manual_seed(seed)
    train_images, train_labels, classes = load_image_dataset(data, "train", data_dir)
    test_images, test_labels, _ = load_image_dataset(data, "test", data_dir)
    if max_train is not None and max_train < len(train_images):
        keep = np.sort(np.random.default_rng(seed).choice(len(train_images), max_train, False))
        train_images, train_labels = train_images[keep], train_labels[keep]
    mean, std = float(train_images.mean() / 255), float(train_images.std() / 255)
    height, width = train_images.shape[1:]
    config = ViTConfig(
        image_size=height,
        patch_size=patch_size,
        num_channels=1,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=mlp_ratio * hidden_size,
        hidden_dropout_prob=0.0,  # a few epochs on 60k images do not overfit; dropout only slows
        attention_probs_dropout_prob=0.0,
        num_labels=len(classes),
        id2label=dict(enumerate(classes)),
        label2id={c: i for i, c in enumerate(classes)},
    )
    model = ViTForImageClassification(config)
    x_train = pixel_values(train_images, mean, std)
    y_train = torch.from_numpy(train_labels)
    total = epochs * math.ceil(len(x_train) / batch_size)
    total = min(max_steps or total, total)
    stopwatch = Stopwatch()

    def loss_of(batch: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(
            model(pixel_values=x_train[batch]).logits, y_train[batch]
        )

    train_loop(
        model, len(x_train), loss_of, steps=total, batch_size=min(batch_size, len(x_train)), lr=lr,
        weight_decay=weight_decay, generator=generator, progress=progress, desc=f"ViT {data}",
    )  # fmt: skip
    train_seconds = stopwatch.seconds()
    accuracy = _classification_accuracy(model, pixel_values(test_images, mean, std), test_labels)
    record = {
        "seed": seed,
        "dataset": data,
        "source": image_dataset_source(data, data_dir),
        "n_train": len(x_train),
        "n_test": len(test_images),
        "test_accuracy": accuracy,
        "train_seconds": train_seconds["wall"],
        "steps": total,
        "hyperparameters": {
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads,
            "mlp_ratio": mlp_ratio, "patch_size": patch_size, "image_size": [height, width],
            "image_mean": mean, "image_std": std, "max_train": max_train, "max_steps": max_steps,
        },
        "run": run_record(seed, train_seconds),
    }  # fmt: skip
    _save_vit(model, _image_processor(height, width, mean, std), record, Path(out_dir))
    return record


def pixel_values(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 [n, h, w] -> float32 [n, 1, h, w], the same arithmetic as the saved processor."""
    x = torch.from_numpy(images).float().unsqueeze(1) * (1 / 255)
    return (x - mean) / std


def _image_processor(height: int, width: int, mean: float, std: float):
    from transformers import ViTImageProcessor

    return ViTImageProcessor(
        do_resize=True,
        size={"height": height, "width": width},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[mean],
        image_std=[std],
    )


@torch.no_grad()
def _classification_accuracy(model: nn.Module, x: torch.Tensor, y: np.ndarray) -> float:
    model.eval()
    predictions = [model(pixel_values=chunk).logits.argmax(-1) for chunk in x.split(1024)]
    return float((torch.cat(predictions).numpy() == y).mean())


def _save_vit(model: nn.Module, processor, record: dict[str, Any], out_dir: Path) -> None:
    with atomic_output(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_json(tmp / "training.json", record)
