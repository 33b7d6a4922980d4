"""Tiny randomly initialised models of the real Hugging Face classes, saved like a user's model.

Every model is written with ``save_pretrained`` (plus a tokenizer or image processor) into a
directory and loaded back through the same ``from_pretrained`` path users take.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

WORDS = [f"w{i}" for i in range(60)]
HIDDEN, HEADS, LAYERS = 32, 4, 2


def corpus(n_documents: int = 120, words_per_document: int = 40) -> list[str]:
    """Deterministic documents with a learnable pattern (word i is often followed by i+1)."""
    return [
        " ".join(WORDS[(d * 3 + j) % len(WORDS)] for j in range(words_per_document))
        for d in range(n_documents)
    ]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def image_folder(root: Path, n_per_class: int = 24) -> Path:
    """8x8 grey PNGs in one sub-folder per class (three classes of distinct brightness), the
    layout of a local image dataset; returns ``root``."""
    rng = np.random.default_rng(0)
    for label, brightness in enumerate((40, 128, 215)):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(n_per_class):
            pixels = np.clip(rng.normal(brightness, 30, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def word_tokenizer(masked: bool = False) -> transformers.PreTrainedTokenizerFast:
    specials = ["<unk>", "<s>", "</s>", "<pad>"] + (["<mask>"] if masked else [])
    model = Tokenizer(models.WordLevel(unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    model.train_from_iterator(corpus(), trainers.WordLevelTrainer(special_tokens=specials))
    extra = {"mask_token": "<mask>", "cls_token": "<s>", "sep_token": "</s>"} if masked else {}
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=model,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        **extra,
    )
    if masked:
        # Masked LMs wrap each document in <s> ... </s> like RoBERTa.
        from tokenizers import processors

        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            special_tokens=[("<s>", tokenizer.bos_token_id), ("</s>", tokenizer.eos_token_id)],
        )
    return tokenizer


def _causal_configs(vocab: int) -> dict[str, transformers.PretrainedConfig]:
    common = {"vocab_size": vocab, "max_position_embeddings": 128}
    return {
        "llama": transformers.LlamaConfig(
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_key_value_heads=2,
            **common,
        ),
        "mistral": transformers.MistralConfig(
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_key_value_heads=2,
            sliding_window=None,
            **common,
        ),
        "opt": transformers.OPTConfig(
            hidden_size=HIDDEN,
            ffn_dim=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            word_embed_proj_dim=HIDDEN,
            **common,
        ),
        "gpt2": transformers.GPT2Config(
            n_embd=HIDDEN,
            n_layer=LAYERS,
            n_head=HEADS,
            n_positions=128,
            vocab_size=vocab,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "gpt_neox": transformers.GPTNeoXConfig(
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            **common,
        ),
        "gemma3_text": transformers.Gemma3TextConfig(
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_key_value_heads=2,
            head_dim=8,
            sliding_window=16,
            **common,
        ),
    }


def _masked_configs(vocab: int) -> dict[str, transformers.PretrainedConfig]:
    common = {
        "vocab_size": vocab,
        "hidden_size": HIDDEN,
        "intermediate_size": 64,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
    }
    return {
        "roberta": transformers.RobertaConfig(
            max_position_embeddings=130, pad_token_id=3, **common
        ),
        "bert": transformers.BertConfig(max_position_embeddings=128, pad_token_id=3, **common),
    }


CAUSAL_ARCHITECTURES = ("llama", "mistral", "opt", "gpt2", "gpt_neox", "gemma3_text")
MASKED_ARCHITECTURES = ("roberta", "bert")
VISION_ARCHITECTURES = ("vit",)


def save_causal_lm(
    path: Path, architecture: str = "llama", seed: int = 0, layers: int | None = None
) -> Path:
    """A tiny causal LM of ``architecture`` (``layers``: other than the default LAYERS)."""
    tokenizer = word_tokenizer()
    config = _causal_configs(len(tokenizer))[architecture]
    if layers is not None:
        config.num_hidden_layers = layers
    torch.manual_seed(seed)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_masked_lm(path: Path, architecture: str = "roberta", seed: int = 0) -> Path:
    tokenizer = word_tokenizer(masked=True)
    config = _masked_configs(len(tokenizer))[architecture]
    torch.manual_seed(seed)
    transformers.AutoModelForMaskedLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_vit(path: Path, seed: int = 0, image_size: int = 8, channels: int = 1) -> Path:
    config = transformers.ViTConfig(
        image_size=image_size,
        patch_size=4,
        num_channels=channels,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_labels=3,
    )
    torch.manual_seed(seed)
    transformers.ViTForImageClassification(config).save_pretrained(path)
    transformers.ViTImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5] * channels,
        image_std=[0.5] * channels,
    ).save_pretrained(path)
    return path


def save_model(path: Path, architecture: str, seed: int = 0) -> Path:
    """Any architecture of the table by its model_type."""
    if architecture in CAUSAL_ARCHITECTURES:
        return save_causal_lm(path, architecture, seed)
    if architecture in MASKED_ARCHITECTURES:
        return save_masked_lm(path, architecture, seed)
    return save_vit(path, seed)


def load(path: Path, architecture: str) -> torch.nn.Module:
    from neuron_ablation.models import load_model

    return load_model(str(path), task_of(architecture), device="cpu")


def task_of(architecture: str) -> str:
    """The pipeline task of a tiny model of ``architecture``."""
    if architecture in CAUSAL_ARCHITECTURES:
        return "causal-lm"
    return "masked-lm" if architecture in MASKED_ARCHITECTURES else "image-classification"


def poison_weight(model_dir: Path, parameter: str, value: float, index: int = 0) -> Path:
    """Set one entry (``index`` of the flattened tensor) of ``parameter`` in a saved model's
    model.safetensors to ``value`` (e.g. NaN or inf): a checkpoint damaged in one number."""
    from safetensors.torch import load_file, save_file

    weights_file = model_dir / "model.safetensors"
    tensors = load_file(weights_file)
    tensors[parameter].view(-1)[index] = value
    save_file(tensors, weights_file, metadata={"format": "pt"})
    return model_dir
