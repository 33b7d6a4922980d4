"""Stage 4: top-1 accuracy and cross-entropy of a (possibly ablated) model.

What is scored, per task:

- causal-lm: ``logits[:, :-1]`` against ``input_ids[:, 1:]`` of every sequence;
- masked-lm: positions whose ``labels`` entry is not -100;
- image-classification: one prediction per image against ``label``.

``loss`` is the mean natural-log cross-entropy over the scored predictions (summed in float64),
``top1`` the share whose argmax is the target, ``n_tokens`` the number of scored predictions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from neuron_ablation import metrics
from neuron_ablation.ablation import folded_constant_ablation
from neuron_ablation.architectures import vocabulary_head
from neuron_ablation.finite import located, require_finite
from neuron_ablation.hooks import hooks_installed
from neuron_ablation.masking import IGNORE
from neuron_ablation.statistics import as_tensor, forward_kwargs, iter_batches

log = logging.getLogger("neuron_ablation")


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
        self.add_scored(*prediction_scores(logits, targets), sequence, n_sequences)

    def add_scored(
        self, losses: torch.Tensor, hits: torch.Tensor, sequence: torch.Tensor, n_sequences: int
    ) -> None:
        """Add one batch's float64 [prediction] losses and int64 [prediction] top-1 hits, with the
        batch row of each prediction, to the per-sequence sums."""
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
        """Every registered metric (``metrics.METRICS``: ``top1``, ``loss``), ``n_tokens`` and
        the per-sequence lists they come from.

        The lists are keyed by each metric's ``numerator`` (and ``seq_n``); a new metric adds its
        per-sequence sum here, as a field filled in :meth:`add`.
        """
        n = sum(self.n)
        if n == 0:
            raise ValueError("no predictions were scored")
        sequence_lists = {
            "seq_loss_sum": self.loss_sum,
            "seq_correct": self.correct,
            metrics.COUNT_KEY: self.n,
        }
        return metrics.totals(sequence_lists) | {"n_tokens": n} | sequence_lists


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


def prediction_scores(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy (float64 [prediction]) and top-1 hits (int64 [prediction]) of logits
    [prediction, class] against targets [prediction].

    Raises:
        NonFiniteError: a logit is NaN or infinite (it would score as a NaN loss and a miss).
    """
    require_finite(logits, "the logits")
    losses = F.cross_entropy(logits.float(), targets, reduction="none").double()
    return losses, (logits.argmax(dim=-1) == targets).long()


LOGITS_BYTES_PER_CHUNK = 24 * 2**20
"""The most logits the chunked vocabulary head computes at once: under glibc's largest mmap
threshold (32 MiB, :mod:`neuron_ablation.memory`), so each chunk reuses the last one's memory."""


def head_inputs(
    model: nn.Module,
    head: nn.Module,
    task: str,
    inputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The vocabulary head's inputs at the scored predictions of one batch, with their targets.

    The model runs with its head handed zero positions (the head is position-wise), so no
    logits are computed; the hidden states it would have received are kept instead.

    Returns:
        hidden float [prediction, d_model], targets int [prediction] (none IGNORE), and the batch
        row of each prediction int [prediction].
    """
    seen: list[torch.Tensor] = []

    def keep_hidden_states(_module: nn.Module, args: tuple[torch.Tensor, ...]):
        seen.append(args[0])
        return (args[0][:, :0], *args[1:])

    with hooks_installed([(head, keep_hidden_states)]):
        model(**inputs)
    if len(seen) != 1:
        raise RuntimeError(f"the vocabulary head ran {len(seen)} times in one forward pass")
    hidden = seen[0]
    if task == "causal-lm":
        hidden, labels = hidden[:, :-1], targets["input_ids"][:, 1:]
    else:
        labels = targets["labels"]
    rows = torch.arange(len(labels), device=labels.device)
    sequence = rows.view(-1, 1).expand_as(labels)
    scored = labels != IGNORE
    return hidden[scored], labels[scored], sequence[scored]


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
    head = vocabulary_head(model)
    if head is None:
        return predictions_and_targets("masked-lm", model(**inputs).logits, {"labels": labels})
    hidden, targets, sequence = head_inputs(model, head, "masked-lm", inputs, {"labels": labels})
    return head(hidden), targets, sequence


def score_batch(model: nn.Module, task: str, batch: dict[str, np.ndarray], score: Score) -> int:
    """Score one batch of evaluation columns into ``score``; returns the rows in the batch.

    For a language model whose vocabulary head the architecture table names, the head runs
    outside the model on chunks of the scored positions (at most ``LOGITS_BYTES_PER_CHUNK`` of
    logits each), so a batch's logits [prediction, vocab] never exist at once (400 MB for
    SmolLM2 at 8 x 256 tokens, written, copied and read three times). Each prediction's loss and
    hit is computed from its own row of logits either way.
    """
    head = vocabulary_head(model) if task != "image-classification" else None
    if head is None:
        predictions, n_rows = batch_predictions(model, task, batch)
        score.add(*predictions, n_rows)
        return n_rows
    inputs, targets = batch_inputs(model, batch)
    hidden, labels, sequence = head_inputs(model, head, task, inputs, targets)
    weight = head_weight(model, head)
    rows = max(1, LOGITS_BYTES_PER_CHUNK // (weight.shape[0] * weight.element_size()))
    chunks = [
        prediction_scores(head(hidden[start : start + rows]), labels[start : start + rows])
        for start in range(0, len(labels), rows)
    ]
    losses = torch.cat([loss for loss, _ in chunks]) if chunks else hidden.new_zeros(0).double()
    hits = torch.cat([hit for _, hit in chunks]) if chunks else labels.new_zeros(0)
    n_rows = len(next(iter(inputs.values())))
    score.add_scored(losses, hits, sequence, n_rows)
    return n_rows


def head_weight(model: nn.Module, head: nn.Module) -> torch.Tensor:
    """The [vocab, d_model] weight that gives the head's output width and dtype."""
    embeddings = model.get_output_embeddings()
    return embeddings.weight if embeddings is not None else next(head.parameters())


def batch_inputs(
    model: nn.Module, batch: dict[str, np.ndarray]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One batch's model inputs and its target columns (``input_ids``, ``labels``, ``label``),
    as tensors on the model's device."""
    device = next(model.parameters()).device
    targets = {
        name: as_tensor(batch[name], device, torch.long)
        for name in ("input_ids", "labels", "label")
        if name in batch
    }
    return forward_kwargs(batch, model), targets


def batch_predictions(
    model: nn.Module, task: str, batch: dict[str, np.ndarray]
) -> tuple[Predictions, int]:
    """Run ``model`` on one batch of evaluation columns; (predictions, rows in the batch)."""
    inputs, targets = batch_inputs(model, batch)
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
    """Score ``model`` on the evaluation columns (see the module docstring).

    Raises:
        NonFiniteError: non-finite logits; the message names the first module whose output is
            not finite.
    """
    score = Score()
    n_items = len(next(iter(columns.values())))
    batch: dict[str, np.ndarray] = {}
    with (
        located(model, lambda: model(**batch_inputs(model, batch)[0])),
        tqdm(total=n_items, unit="seq", desc=desc) as bar,
    ):
        for batch in iter_batches(columns, batch_size):  # noqa: B007 - read by located()
            bar.update(score_batch(model, task, batch, score))
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
