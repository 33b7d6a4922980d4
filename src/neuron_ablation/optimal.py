"""Optimal ablation: the constants that minimise the task loss, learned with frozen weights.

Li & Janson ("Optimal ablation for interpretability", NeurIPS 2024) replace ablated neurons by the
constants ``c`` that minimise the expected loss of the ablated model. No closed-form centre
(zero, mean, peak) can do better on average over the training distribution, so the gap between a
centre and ``optimal`` says how much that centre leaves on the table.

Training, per (model, seed, fraction):

* the neurons are the seed's nested selection at that fraction (``neuron_ablation.selection``);
* every model weight is frozen; the only parameters are ``u`` in ``c = mean + std * u`` (one per
  ablated neuron), so ``u = 0`` is mean ablation and one learning rate fits neurons of every
  scale (``std`` is the neuron's spread from its statistics histogram, at least one bin width);
* the loss is the task's cross-entropy (next token, masked token or image label) on the
  STATISTICS split, never on evaluation data: :func:`train_constants` refuses a token file whose
  metadata says it is an evaluation split;
* Adam for ``steps`` steps of ``batch_size`` sequences, drawn in a seeded order from the
  statistics sequences (cut to ``seq_len`` tokens); a masked LM's batches are corrupted with the
  evaluation's 15 % scheme from a generator seeded with the seed;
* every fraction trains from ``u = 0`` with the same budget (no warm start from a smaller
  fraction), so a fraction's constants do not depend on which other fractions are trained.

Store (``results/{model}/optimal/seed{seed}.zarr``):

========  ========================  ==========================================================
array     dims                      meaning
========  ========================  ==========================================================
constant  fraction, layer, neuron   float64 learned constant; NaN where the neuron is kept
loss      fraction, step            float64 training loss of each step's batch, before its update
fraction  (coordinate)              float64 the fractions trained
========  ========================  ==========================================================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import zarr
from torch import nn
from tqdm import tqdm

from neuron_ablation.architectures import attention_output_projections
from neuron_ablation.hooks import hooks_installed
from neuron_ablation.integrity_zarr import (
    CHECKABLE_CHUNKS,
    INTEGRITY_ATTR,
    create_checkable_array,
    open_optimal_store,
    read_array,
)
from neuron_ablation.io import atomic_output

log = logging.getLogger("neuron_ablation")

PARAMETRISATION = "c = mean + std * u per ablated neuron, u = 0 (mean ablation) at the start"


@dataclass(frozen=True)
class OptimalSettings:
    """How the constants are learned (config section ``optimal``)."""

    steps: int = 40
    batch_size: int = 8
    seq_len: int | None = None  # None: the statistics sequences' own length
    lr: float = 0.1
    seed: int = 0  # the selection seed; also orders the batches and draws MLM corruption

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"optimal.{name} must be >= 1, got {getattr(self, name)}")
        if self.seq_len is not None and self.seq_len < 2:
            raise ValueError(f"optimal.seq_len must be >= 2 or null, got {self.seq_len}")
        if not self.lr > 0:
            raise ValueError(f"optimal.lr must be > 0, got {self.lr}")


@dataclass
class MaskedLMCorruption:
    """What a masked LM's training batches need to be corrupted like its evaluation tokens."""

    special_ids: Sequence[int]
    mask_id: int
    vocab_size: int


def neuron_spread(stats: zarr.Group) -> list[torch.Tensor]:
    """Per layer float64 [neuron]: each neuron's standard deviation from its histogram (bin
    centres, tracked range), at least one bin width so a neuron stuck in one bin still moves."""
    width = float(stats.attrs["bin_width"])
    centres = (np.asarray(stats["bin"][:], dtype=np.float64) + 0.5) * width
    spreads = []
    for layer in range(stats["hist"].shape[0]):
        hist = np.asarray(stats["hist"][layer], dtype=np.float64)
        n = np.maximum(hist.sum(axis=1), 1.0)
        mean = hist @ centres / n
        # Central second moment from deviations: E[x^2] - E[x]^2 cancels for far-off neurons.
        var = (hist * (centres[None, :] - mean[:, None]) ** 2).sum(axis=1) / n
        spreads.append(torch.from_numpy(np.maximum(np.sqrt(var), width)))
    return spreads


def neuron_mean(stats: zarr.Group) -> list[torch.Tensor]:
    """Per layer float64 [neuron]: the exact mean from the statistics pass."""
    return [torch.from_numpy(row) for row in np.asarray(stats["mean"][:], dtype=np.float64)]


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Every parameter's ``requires_grad`` off for the block, restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


@contextmanager
def learnable_constant_hooks(
    model: nn.Module,
    ablate: Sequence[torch.Tensor],
    base: Sequence[torch.Tensor],
    scale: Sequence[torch.Tensor],
    u: Sequence[torch.Tensor],
) -> Iterator[None]:
    """Overwrite z[..., ablate] with ``base + scale * u`` (differentiable in ``u``) per layer.

    Args:
        ablate: per layer bool [neuron].
        base, scale: per layer float [neuron] (mean and spread).
        u: per layer float [n_ablated in that layer], the trained parameters.
    """
    projections = attention_output_projections(model)

    def make_hook(mask: torch.Tensor, b: torch.Tensor, s: torch.Tensor, v: torch.Tensor):
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]):
            z = args[0]
            values = b.clone()
            values[mask] = b[mask] + s[mask] * v
            return (torch.where(mask, values.to(z.dtype), z), *args[1:])

        return hook

    per_layer = zip(projections, ablate, base, scale, u, strict=True)
    hooks = [(p, make_hook(*parts)) for p, *parts in per_layer]
    with hooks_installed(hooks):
        yield


def batch_order(n_sequences: int, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """int [step, batch_size]: statistics rows per step, seeded epochs of permutations."""
    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    epochs = -(-needed // n_sequences)
    order = np.concatenate([rng.permutation(n_sequences) for _ in range(epochs)])
    return order[:needed].reshape(steps, batch_size)


def training_batch(
    columns: dict[str, np.ndarray],
    rows: np.ndarray,
    seq_len: int | None,
    corruption: MaskedLMCorruption | None,
    generator: torch.Generator,
) -> dict[str, np.ndarray]:
    """The columns of ``rows``, cut to ``seq_len`` tokens; a masked LM's ids corrupted."""
    batch = {name: values[rows] for name, values in columns.items()}
    if "input_ids" in batch and seq_len is not None:
        batch["input_ids"] = batch["input_ids"][:, :seq_len]
    if corruption is not None:
        from neuron_ablation.masking import mask_tokens

        inputs, labels = mask_tokens(
            torch.from_numpy(np.array(batch["input_ids"], dtype=np.int64)),
            corruption.special_ids,
            corruption.mask_id,
            corruption.vocab_size,
            generator,
        )
        batch["input_ids"], batch["labels"] = inputs.numpy(), labels.numpy()
    return batch


def batch_loss(model: nn.Module, task: str, batch: dict[str, np.ndarray]) -> torch.Tensor:
    """Mean cross-entropy of one batch (differentiable), scored as the evaluation scores it."""
    from neuron_ablation.masking import IGNORE
    from neuron_ablation.scoring import batch_predictions

    (logits, targets, _rows), _ = batch_predictions(model, task, batch)
    keep = targets != IGNORE
    return F.cross_entropy(logits[keep].float(), targets[keep])


def train_constants(
    model: nn.Module,
    columns: dict[str, np.ndarray],
    task: str,
    ablate: Sequence[torch.Tensor],
    mean: Sequence[torch.Tensor],
    spread: Sequence[torch.Tensor],
    settings: OptimalSettings,
    corruption: MaskedLMCorruption | None = None,
    desc: str = "optimal",
) -> tuple[list[torch.Tensor], np.ndarray]:
    """Learn the constants of one ablation (see the module docstring).

    Args:
        columns: statistics-split model inputs (``input_ids`` [sequence, position], or
            ``pixel_values`` and ``label``).
        ablate: per layer bool [neuron].
        mean, spread: per layer float64 [neuron].

    Returns:
        (per layer float64 [neuron] constants, NaN where not ablated; float64 [step] losses).
    """
    device = next(model.parameters()).device
    masks = [m.to(device) for m in ablate]
    base = [m.to(device=device, dtype=torch.float32) for m in mean]
    scale = [s.to(device=device, dtype=torch.float32) for s in spread]
    u = [torch.zeros(int(m.sum()), device=device, requires_grad=True) for m in masks]
    optimizer = torch.optim.Adam(u, lr=settings.lr)
    n_sequences = len(next(iter(columns.values())))
    order = batch_order(n_sequences, settings.steps, settings.batch_size, settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    losses = np.empty(settings.steps)
    with frozen(model), learnable_constant_hooks(model, masks, base, scale, u):
        bar = tqdm(order, desc=desc, unit="step")
        for step, rows in enumerate(bar):
            batch = training_batch(columns, rows, settings.seq_len, corruption, generator)
            loss = batch_loss(model, task, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[step] = float(loss.detach())
            bar.set_postfix(loss=f"{losses[step]:.4f}")
    constants = []
    for mask, b, s, v in zip(masks, mean, spread, u, strict=True):
        c = torch.full_like(b, float("nan"), dtype=torch.float64)
        c[mask.cpu()] = b[mask.cpu()] + s[mask.cpu()] * v.detach().cpu().double()
        constants.append(c)
    return constants, losses


def write_optimal(
    path: str | Path,
    fractions: Sequence[float],
    constants: Sequence[Sequence[torch.Tensor]],
    losses: Sequence[np.ndarray],
    attrs: dict[str, Any],
) -> None:
    """Write the store of the module docstring (atomically).

    Args:
        constants: per fraction, per layer float64 [neuron].
        losses: per fraction float64 [step].
    """
    constant = np.stack([np.stack([c.numpy() for c in per_layer]) for per_layer in constants])
    arrays = {
        "fraction": (np.asarray(fractions, dtype=np.float64), ["fraction"]),
        "constant": (constant, ["fraction", "layer", "neuron"]),
        "loss": (np.stack(losses), ["fraction", "step"]),
    }
    with atomic_output(path) as tmp:
        group = zarr.open_group(
            str(tmp), mode="w", attributes=attrs | {INTEGRITY_ATTR: CHECKABLE_CHUNKS}
        )
        for name, (data, dims) in arrays.items():
            create_checkable_array(group, name, data, data.shape, dims)
        zarr.consolidate_metadata(str(tmp))


def read_constants(path: str | Path, fraction: float) -> list[torch.Tensor]:
    """Per layer float64 [neuron] constants learned at ``fraction`` (NaN where not ablated)."""
    store = open_optimal_store(path)
    trained = read_array(path, store, "fraction")
    index = np.flatnonzero(np.isclose(trained, fraction, rtol=0, atol=1e-9))
    if len(index) == 0:
        raise ValueError(
            f"{path} has no constants for fraction {fraction:.2f}; trained fractions: "
            f"{[f'{f:.2f}' for f in trained]} (config optimal.fractions)"
        )
    return [torch.from_numpy(row) for row in read_array(path, store, "constant", int(index[0]))]


def fold_values(constants: Sequence[torch.Tensor], ablate: Sequence[torch.Tensor]):
    """Constants ready for ``folded_constant_ablation``: checked against the selection, NaN -> 0.

    Raises:
        ValueError: if the store's ablated neurons are not the selection's (another seed or
            selection file).
    """
    values = []
    for layer, (c, mask) in enumerate(zip(constants, ablate, strict=True)):
        if not torch.equal(~torch.isnan(c), mask):
            raise ValueError(
                f"layer {layer}: the learned constants were trained on other neurons than the "
                "selection ablates (different seed or selection store)"
            )
        values.append(torch.nan_to_num(c, nan=0.0))
    return values


def train_store(
    model: nn.Module,
    columns: dict[str, np.ndarray],
    task: str,
    ranks: np.ndarray,
    stats: zarr.Group,
    fractions: Sequence[float],
    settings: OptimalSettings,
    corruption: MaskedLMCorruption | None = None,
) -> tuple[list[list[torch.Tensor]], list[np.ndarray], dict[str, Any]]:
    """Train every fraction of one seed; returns (constants, losses, attrs) for
    :func:`write_optimal`."""
    from neuron_ablation.selection import ablation_masks

    mean, spread = neuron_mean(stats), neuron_spread(stats)
    started = time.perf_counter()
    constants, losses = [], []
    for fraction in fractions:
        torch.manual_seed(settings.seed)
        c, curve = train_constants(
            model,
            columns,
            task,
            ablation_masks(ranks, fraction),
            mean,
            spread,
            settings,
            corruption,
            desc=f"optimal seed {settings.seed} frac {fraction:.2f}",
        )
        constants.append(c)
        losses.append(curve)
    attrs = {
        "settings": asdict(settings),
        "parametrisation": PARAMETRISATION,
        "spread": "histogram std of the neuron (bin centres), at least one bin width",
        "initialisation": "mean (u = 0)",
        "warm_start": "none: every fraction trains from the mean with the same budget",
        "data": "statistics split only (tokens/stats.arrow)",
        "loss_definition": "mean cross-entropy of each step's batch, before that step's update",
        "seconds": round(time.perf_counter() - started, 3),
    }
    return constants, losses, attrs


def require_statistics_split(path: str | Path) -> None:
    """Refuse to train on anything but a statistics split (the Arrow file's ``part`` metadata).

    Raises:
        ValueError: if the file is an evaluation split or does not say which split it is.
    """
    from neuron_ablation.io import read_arrow

    metadata = read_arrow(path).schema.metadata or {}
    part = metadata.get(b"part", b"").decode()
    if part != "stats":
        raise ValueError(
            f"{path}: optimal constants are trained on the statistics split only, but this file's "
            f"metadata says part={part or '<missing>'!r}; pass results/<model>/tokens/stats.arrow"
        )


def masked_lm_corruption(model_source: str) -> MaskedLMCorruption:
    """The masked LM's tokenizer facts that :func:`training_batch` needs."""
    from neuron_ablation.models import load_tokenizer

    tokenizer = load_tokenizer(model_source)
    return MaskedLMCorruption(tokenizer.all_special_ids, tokenizer.mask_token_id, len(tokenizer))


def learn_optimal(
    model_source: str,
    task: str,
    tokens: str,
    stats: str,
    selection: str,
    seed: int,
    fractions: Sequence[float],
    out: str,
    steps: int = 40,
    seq_len: int | None = None,
    lr: float = 0.1,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "float32",
    model_name: str = "",
    model_digest: str | None = None,
) -> None:
    """Learn the optimal constants of one seed at every fraction on the statistics split
    ``tokens``; write them with their loss curves to the Zarr store ``out``."""
    from neuron_ablation.io import read_model_inputs
    from neuron_ablation.machine import machine_record
    from neuron_ablation.models import load_model
    from neuron_ablation.provenance import check_artifact, input_record, make_record, model_input
    from neuron_ablation.selection import read_ranks
    from neuron_ablation.statistics import open_statistics

    require_statistics_split(tokens)
    settings = OptimalSettings(
        steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, seed=seed
    )
    model_record, tokens_record = model_input(model_source, model_digest), input_record(tokens)
    this_model = {"inputs.model": model_record["id"]}
    check_artifact(tokens, this_model)
    check_artifact(stats, this_model | {"inputs.tokens": tokens_record["id"]})
    check_artifact(selection, this_model | {"settings.seed": seed})
    inputs = {"model": model_record, "tokens": tokens_record, "stats": stats,
              "selection": selection}  # fmt: skip
    provenance = make_record(inputs, asdict(settings) | {"fractions": list(fractions),
                                                          "dtype": dtype})  # fmt: skip
    ranks, store = read_ranks(selection), open_statistics(stats)
    corruption = masked_lm_corruption(model_source) if task == "masked-lm" else None
    model = load_model(model_source, task, device, dtype)
    constants, losses, attrs = train_store(
        model, read_model_inputs(tokens), task, ranks, store, fractions, settings, corruption
    )
    # Where it ran sits beside the provenance, not in it: the record is the artifact's identity,
    # and the same inputs and settings on another machine are the same artifact.
    attrs |= {"model": model_name, "model_source": model_source, "dtype": dtype,
              "provenance": provenance, "machine": machine_record()}  # fmt: skip
    write_optimal(out, fractions, constants, losses, attrs)
    for fraction, curve in zip(fractions, losses, strict=True):
        log.info("frac %.2f: loss %.4f -> %.4f", fraction, curve[0], curve[-1])
    log.info("wrote %s", out)
