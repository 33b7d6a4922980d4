"""Estimate the GPU memory of the paper models from their published configs.

Built on the meta device: nothing is downloaded.  python benchmarks/paper_memory.py
"""

import torch
import transformers as T

cfgs = {
    "opt-1.3b": (
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
        512,
        16,
        50272,
    ),
    "mistral-7b": (
        T.MistralConfig(
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=32000,
        ),
        T.AutoModelForCausalLM,
        512,
        8,
        32000,
    ),
    "roberta-large": (
        T.RobertaConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            vocab_size=50265,
            max_position_embeddings=514,
        ),
        T.AutoModelForMaskedLM,
        512,
        16,
        50265,
    ),
    "vit-base": (T.ViTConfig(num_labels=1000), T.AutoModelForImageClassification, 1, 64, 1000),
}
for name, (cfg, auto, seq, batch, vocab) in cfgs.items():
    with torch.device("meta"):
        m = auto.from_config(cfg)
    n = sum(p.numel() for p in m.parameters())
    layers = cfg.num_hidden_layers
    width = cfg.num_attention_heads * (cfg.hidden_size // cfg.num_attention_heads)
    hist = layers * width * 2002 * 8
    logits = batch * seq * vocab * 4
    print(
        f"{name:14s} params {n / 1e9:5.2f} B  bf16 weights {n * 2 / 2**30:5.1f} GiB  "
        f"histograms {hist / 2**30:4.2f} GiB  fp32 logits/batch {logits / 2**30:4.2f} GiB  "
        f"neurons {layers}x{width}"
    )
