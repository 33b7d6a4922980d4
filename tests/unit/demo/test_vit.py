"""The demo ViT (neuron_ablation.demo.vit): tiny runs into tmp_path, reloaded through the Auto*
classes. The image sets they train on: test_image_sets.py."""

from __future__ import annotations

import json

import torch

from neuron_ablation.demo import vit
from neuron_ablation.demo.image_sets import load_image_dataset
from neuron_ablation.demo.vit import train_vit

TINY_VIT = dict(
    max_train=64, max_steps=3, batch_size=16, hidden_size=32, num_layers=1, num_heads=2,
    threads=1, progress=False,
)  # fmt: skip
VIT_KEYS = {
    "seed",
    "dataset",
    "source",
    "n_train",
    "n_test",
    "test_accuracy",
    "train_seconds",
    "run",
}


def test_train_vit_digits_reloads_with_processor(tmp_path):
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    record = train_vit("digits", tmp_path / "vit", seed=0, **TINY_VIT)
    saved = json.loads((tmp_path / "vit" / "training.json").read_text())
    assert saved.keys() >= VIT_KEYS and saved["n_train"] == 64
    assert saved == json.loads(json.dumps(record))
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "vit").eval()
    processor = AutoImageProcessor.from_pretrained(tmp_path / "vit")
    images, _, names = load_image_dataset("digits", "test")
    pixels = processor(images=[Image.fromarray(x) for x in images[:5]], return_tensors="pt")
    pixels = pixels["pixel_values"]
    assert pixels.shape == (5, 1, 8, 8)
    mean, std = saved["hyperparameters"]["image_mean"], saved["hyperparameters"]["image_std"]
    # The processor must reproduce the normalisation used in training.
    torch.testing.assert_close(pixels, vit.pixel_values(images[:5], mean, std))
    with torch.no_grad():
        assert model(pixel_values=pixels).logits.shape == (5, 10)
    assert [model.config.id2label[i] for i in range(10)] == names


def test_train_vit_is_reproducible(tmp_path):
    train_vit("digits", tmp_path / "a", seed=3, **TINY_VIT)
    train_vit("digits", tmp_path / "b", seed=3, **TINY_VIT)
    a, b = ((tmp_path / name / "model.safetensors").read_bytes() for name in ("a", "b"))
    assert a == b


def test_train_vit_cli_passes_hyperparameters(tmp_path):
    from neuron_ablation.cli import main

    out = tmp_path / "vit"
    main(["train-vit", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--lr", "1e-3",
          "--threads", "1", "--out", str(out)])  # fmt: skip
    saved = json.loads((out / "training.json").read_text())["hyperparameters"]
    assert (saved["epochs"], saved["batch_size"], saved["lr"]) == (1, 64, 1e-3)
