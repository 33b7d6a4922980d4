"""Stage 4: top-1 accuracy and cross-entropy of a (possibly ablated) model.

What is scored, per task:

- causal-lm: ``logits[:, :-1]`` against ``input_ids[:, 1:]`` of every sequence;
- masked-lm: positions whose ``labels`` entry is not -100;
- image-classification: one prediction per image against ``label``.

``loss`` is the mean natural-log cross-entropy over the scored predictions (summed in float64),
``top1`` the share whose argmax is the target, ``n_tokens`` the number of scored predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from neuron_ablation.ablation import folded_constant_ablation
from neuron_ablation.architectures import masked_lm_head
from neuron_ablation.hooks import hooks_installed
from neuron_ablation.masking import IGNORE
from neuron_ablation.statistics import as_tensor, iter_batches, model_inputs


@dataclass
class Score:
    """Per-sequence sums of one evaluation: summed CE, correct top-1 predictions, predictions.

    A "sequence" is one row of the evaluation file (one image for vision), in file order, so two
    evaluations of the same file pair up sequence by sequence.
    """

    loss_sum: list[float] = field(default_factory=list)
    correct: list[int] = field(default_factory=list)
    n: list[int] = field(default_factory=list)

    def add(
        self, logits: torch.Tensor, targets: torch.Tensor, sequence: torch.Tensor, n_sequences: int
    ) -> None:
        """Score one batch.

        Args:
            logits: float [prediction, class].
            targets: int [prediction]; IGNORE entries are not scored.
            sequence: int [prediction], the batch row each prediction belongs to.
            n_sequences: rows in the batch (rows without a scored prediction count 0).
        """
        keep = targets != IGNORE
        if not bool(keep.all()):
            logits, targets, sequence = logits[keep], targets[keep], sequence[keep]
        losses = F.cross_entropy(logits.float(), targets, reduction="none").double()
        hits = (logits.argmax(dim=-1) == targets).long()
        device = losses.device
        per_loss = torch.zeros(n_sequences, dtype=torch.float64, device=device)
        per_hits = torch.zeros(n_sequences, dtype=torch.long, device=device)
        per_n = torch.zeros(n_sequences, dtype=torch.long, device=device)
        per_loss.index_add_(0, sequence, losses)
        per_hits.index_add_(0, sequence, hits)
        per_n.index_add_(0, sequence, torch.ones_like(hits))
        self.loss_sum += per_loss.tolist()
        self.correct += per_hits.tolist()
        self.n += per_n.tolist()

    def result(self) -> dict[str, Any]:
        """Totals (``top1``, ``loss``, ``n_tokens``) and the per-sequence lists they come from."""
        n = sum(self.n)
        if n == 0:
            raise ValueError("no predictions were scored")
        return {
            "top1": sum(self.correct) / n,
            "loss": math.fsum(self.loss_sum) / n,
            "n_tokens": n,
            "seq_loss_sum": self.loss_sum,
            "seq_correct": self.correct,
            "seq_n": self.n,
        }


Predictions = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def predictions_and_targets(
    task: str, logits: torch.Tensor, batch: dict[str, torch.Tensor]
) -> Predictions:
    """One batch's logits [prediction, class], targets [prediction] and the batch row of each
    prediction [prediction]."""
    if task == "causal-lm":
        logits, targets = logits[:, :-1], batch["input_ids"][:, 1:]
    elif task == "masked-lm":
        targets = batch["labels"]
    elif task == "image-classification":
        targets = batch["label"]
    else:
        raise ValueError(f"unknown task {task!r}")
    rows = torch.arange(len(targets), device=targets.device)
    sequence = rows.view(-1, *([1] * (targets.dim() - 1))).expand_as(targets)
    return logits.flatten(0, targets.dim() - 1), targets.flatten(), sequence.flatten()


def masked_lm_predictions(
    model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor
) -> Predictions:
    """Logits [scored, vocab], targets [scored] and batch rows [scored] at the labelled positions
    of one batch.

    The vocabulary head is position-wise, so where the architecture table names it, it runs on
    the scored positions' hidden states only (about 15 % of them) instead of every position.

    Args:
        labels: int [batch, position], IGNORE where nothing is scored.
    """
    scored = labels != IGNORE
    head = masked_lm_head(model)
    if head is None:
        return predictions_and_targets("masked-lm", model(**inputs).logits, {"labels": labels})

    def keep_scored(_module: nn.Module, args: tuple[torch.Tensor, ...]):
        return (args[0][scored].unsqueeze(0), *args[1:])

    with hooks_installed([(head, keep_scored)]):
        logits = model(**inputs).logits
    return logits[0], labels[scored], scored.nonzero()[:, 0]


def batch_predictions(
    model: nn.Module, task: str, batch: dict[str, np.ndarray]
) -> tuple[Predictions, int]:
    """Run ``model`` on one batch of evaluation columns; (predictions, rows in the batch)."""
    device = next(model.parameters()).device
    targets = {
        name: as_tensor(batch[name], device, torch.long)
        for name in ("input_ids", "labels", "label")
        if name in batch
    }
    inputs = model_inputs(batch, model)
    n_rows = len(next(iter(inputs.values())))
    if task == "masked-lm":
        return masked_lm_predictions(model, inputs, targets["labels"]), n_rows
    return predictions_and_targets(task, model(**inputs).logits, targets), n_rows


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    columns: dict[str, np.ndarray],
    task: str,
    batch_size: int = 8,
    desc: str = "evaluating",
) -> dict[str, Any]:
    """Score ``model`` on the evaluation columns (see the module docstring)."""
    score = Score()
    n_items = len(next(iter(columns.values())))
    with tqdm(total=n_items, unit="seq", desc=desc) as bar:
        for batch in iter_batches(columns, batch_size):
            predictions, n_rows = batch_predictions(model, task, batch)
            score.add(*predictions, n_rows)
            bar.update(n_rows)
    return score.result()


def evaluate_constant_ablation(
    model: nn.Module,
    columns: dict[str, np.ndarray],
    task: str,
    ablate: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    batch_size: int = 8,
    desc: str = "evaluating",
) -> dict[str, Any]:
    """Score ``model`` with the ablation folded in (undone afterwards); adds ``n_ablated``."""
    with folded_constant_ablation(model, ablate, values):
        result = evaluate(model, columns, task, batch_size, desc=desc)
    return result | {"n_ablated": int(sum(int(mask.sum()) for mask in ablate))}
