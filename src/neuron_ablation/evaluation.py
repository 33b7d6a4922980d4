"""Stage 4: top-1 accuracy and cross-entropy of a (possibly ablated) model.

What is scored, per task:

- causal-lm: ``logits[:, :-1]`` against ``input_ids[:, 1:]`` of every sequence;
- masked-lm: positions whose ``labels`` entry is not -100;
- image-classification: one prediction per image against ``label``.

``loss`` is the mean natural-log cross-entropy over the scored predictions (summed in float64),
``top1`` the share whose argmax is the target, ``n_tokens`` the number of scored predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from neuron_ablation.ablation import folded_constant_ablation
from neuron_ablation.architectures import masked_lm_head
from neuron_ablation.masking import IGNORE
from neuron_ablation.statistics import as_tensor, iter_batches, model_inputs


@dataclass
class Score:
    loss_sum: float = 0.0
    correct: int = 0
    n: int = 0

    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """logits float [prediction, class]; targets int [prediction] (IGNORE is skipped)."""
        keep = targets != IGNORE
        logits, targets = logits[keep].float(), targets[keep]
        self.loss_sum += float(F.cross_entropy(logits, targets, reduction="sum").double())
        self.correct += int((logits.argmax(dim=-1) == targets).sum())
        self.n += int(targets.numel())

    def result(self) -> dict[str, float | int]:
        if self.n == 0:
            raise ValueError("no predictions were scored")
        return {"top1": self.correct / self.n, "loss": self.loss_sum / self.n, "n_tokens": self.n}


def predictions_and_targets(
    task: str, logits: torch.Tensor, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten one batch's logits to [prediction, class] and its targets to [prediction]."""
    if task == "causal-lm":
        return logits[:, :-1].flatten(0, 1), batch["input_ids"][:, 1:].flatten()
    if task == "masked-lm":
        return logits.flatten(0, 1), batch["labels"].flatten()
    if task == "image-classification":
        return logits, batch["label"]
    raise ValueError(f"unknown task {task!r}")


def masked_lm_predictions(
    model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [scored, vocab] and targets [scored] at the labelled positions of one batch.

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

    handle = head.register_forward_pre_hook(keep_scored)
    try:
        logits = model(**inputs).logits
    finally:
        handle.remove()
    return logits[0], labels[scored]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    columns: dict[str, np.ndarray],
    task: str,
    batch_size: int = 8,
    desc: str = "evaluating",
) -> dict[str, float | int]:
    """Score ``model`` on the evaluation columns (see the module docstring)."""
    device = next(model.parameters()).device
    score = Score()
    n_items = len(next(iter(columns.values())))
    with tqdm(total=n_items, unit="seq", desc=desc) as bar:
        for batch in iter_batches(columns, batch_size):
            targets = {
                name: as_tensor(batch[name], device, torch.long)
                for name in ("input_ids", "labels", "label")
                if name in batch
            }
            inputs = model_inputs(batch, model)
            if task == "masked-lm":
                score.add(*masked_lm_predictions(model, inputs, targets["labels"]))
            else:
                logits = model(**inputs).logits
                score.add(*predictions_and_targets(task, logits, targets))
            bar.update(len(next(iter(inputs.values()))))
    return score.result()


def evaluate_constant_ablation(
    model: nn.Module,
    columns: dict[str, np.ndarray],
    task: str,
    ablate: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    batch_size: int = 8,
    desc: str = "evaluating",
) -> dict[str, float | int]:
    """Score ``model`` with the ablation folded in (undone afterwards); adds ``n_ablated``."""
    with folded_constant_ablation(model, ablate, values):
        result = evaluate(model, columns, task, batch_size, desc=desc)
    return result | {"n_ablated": int(sum(int(mask.sum()) for mask in ablate))}
