"""Estimate the GPU memory of the paper models from their published configs.

Built on the meta device: nothing is downloaded.  python benchmarks/paper_memory.py
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import transformers as T

from neuron_ablation.histogram import BinGrid

# The default stats section: bin_width 0.01 over [-10, 10), plus underflow and overflow slots.
SLOTS_PER_NEURON = BinGrid.covering(0.01, -10.0, 10.0).n_bins + 2


@dataclass(frozen=True)
class PaperModel:
    config: T.PretrainedConfig
    auto_class: type
    seq_len: int
    batch_size: int

    @property
    def n_classes(self) -> int:
        """Width of the logits: the vocabulary, or the labels of a classifier."""
        return getattr(self.config, "vocab_size", None) or self.config.num_labels


PAPER_MODELS = {
    "opt-1.3b": PaperModel(
        T.OPTConfig(
            hidden_size=2048,
            ffn_dim=8192,
            num_hidden_layers=24,
            num_attention_heads=32,
            vocab_size=50272,
            word_embed_proj_dim=2048,
            max_position_embeddings=2048,
        ),
        T.AutoModelForCausalLM,
        seq_len=512,
        batch_size=16,
    ),
    "mistral-7b": PaperModel(
        T.MistralConfig(
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=32000,
        ),
        T.AutoModelForCausalLM,
        seq_len=512,
        batch_size=8,
    ),
    "roberta-large": PaperModel(
        T.RobertaConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            vocab_size=50265,
            max_position_embeddings=514,
        ),
        T.AutoModelForMaskedLM,
        seq_len=512,
        batch_size=16,
    ),
    "vit-base": PaperModel(
        T.ViTConfig(num_labels=1000), T.AutoModelForImageClassification, seq_len=1, batch_size=64
    ),
}


def report(name: str, paper: PaperModel) -> str:
    with torch.device("meta"):
        model = paper.auto_class.from_config(paper.config)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = paper.config
    layers = cfg.num_hidden_layers
    width = cfg.num_attention_heads * (cfg.hidden_size // cfg.num_attention_heads)
    histograms = layers * width * SLOTS_PER_NEURON * 8  # int64 counts
    logits = paper.batch_size * paper.seq_len * paper.n_classes * 4  # float32
    return (
        f"{name:14s} params {n_params / 1e9:5.2f} B  bf16 weights {n_params * 2 / 2**30:5.1f} GiB  "
        f"histograms {histograms / 2**30:4.2f} GiB  fp32 logits/batch {logits / 2**30:4.2f} GiB  "
        f"neurons {layers}x{width}"
    )


if __name__ == "__main__":
    for name, paper in PAPER_MODELS.items():
        print(report(name, paper))
