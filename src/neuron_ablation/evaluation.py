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
from collections.abc import Callable, Sequence
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
from neuron_ablation.finite import located, of_model, require_finite
from neuron_ablation.hooks import hooks_installed
from neuron_ablation.masking import IGNORE
from neuron_ablation.provenance import PROVENANCE_KEY
from neuron_ablation.statistics import as_tensor, iter_batches, model_inputs

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
    return model_inputs(batch, model), targets


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


# --- one evaluation job: a (model, method, seed) at every requested fraction -----------------


@dataclass(frozen=True)
class EvaluationJob:
    """What the ``evaluate`` command (one Snakemake job) scores, and where the results go.

    ``outputs[i]`` receives the result at ``fractions[i]``. Which of ``stats``, ``bank`` and
    ``optimal`` is needed follows from the method (:mod:`neuron_ablation.methods`).
    """

    model_name: str
    model_source: str
    task: str
    tokens: str
    method: str
    seed: int
    selection: str
    fractions: tuple[float, ...]
    outputs: tuple[str, ...]
    batch_size: int = 8
    device: str = "auto"
    dtype: str = "float32"
    stats: str | None = None
    bank: str | None = None
    optimal: str | None = None
    baseline: str | None = None
    """The clean result, reused where nothing is ablated (fraction 0)."""
    sweep_items: int | None = None
    """Score fractions outside ``focus`` on the first ``sweep_items`` rows only."""
    focus: tuple[float, ...] = ()
    model_digest: str | None = None
    """The run's ``model.digest.json`` (:mod:`neuron_ablation.provenance`); computed if None."""

    def __post_init__(self) -> None:
        if len(self.fractions) != len(self.outputs):
            raise ValueError(
                f"--fraction and --out must pair up: got {len(self.fractions)} fractions and "
                f"{len(self.outputs)} output paths"
            )

    def meta(self, fraction: float) -> dict[str, Any]:
        """What a result carries about itself, so nothing reads it back from the path."""
        return {"model": self.model_name, "method": self.method, "seed": self.seed,
                "fraction": fraction}  # fmt: skip

    def scored_items(self, fraction: float) -> int | None:
        """How many evaluation rows ``fraction`` is scored on: None (all) for a focus fraction
        or without a sweep, else ``sweep_items``."""
        focus = any(abs(fraction - f) < 1e-9 for f in self.focus)
        return None if focus else self.sweep_items

    def scored_columns(self, columns: dict[str, np.ndarray], fraction: float) -> dict:
        """All evaluation rows for a focus fraction, else the first ``sweep_items`` of them."""
        items = self.scored_items(fraction)
        if items is None:
            return columns
        return {name: values[:items] for name, values in columns.items()}


Scorer = Callable[[Sequence[torch.Tensor], float, str], dict[str, Any]]
"""(ablation masks per layer, fraction, progress label) -> result."""


def run_evaluation_job(job: EvaluationJob) -> None:
    """Score ``job`` at every fraction, loading the model once; write one JSON per fraction.

    Nothing is ablated at fraction 0 (``round(0 * width) == 0``): there the clean baseline,
    computed once per model, is reused when given. Every input is read and checked before the
    first result is written, and every fraction is scored before any is written (non-finite
    logits at one fraction leave none).
    """
    from neuron_ablation.integrity import read_result
    from neuron_ablation.io import write_json
    from neuron_ablation.selection import ablation_masks, read_ranks

    pairs = list(zip(job.fractions, job.outputs, strict=True))
    reused = [(f, out) for f, out in pairs if f == 0.0 and job.baseline]
    pending = [pair for pair in pairs if pair not in reused]
    provenance = checked_job_inputs(job)
    score = method_scorer(job) if pending else None
    ranks = read_ranks(job.selection) if pending else None
    results = []
    for fraction, out in reused:
        record = provenance(fraction, {"baseline": job.baseline})
        result = read_result(job.baseline) | job.meta(fraction) | {"n_ablated": 0}
        results.append((out, result | {PROVENANCE_KEY: record}))
        log.info("fraction 0 ablates nothing: reusing %s for %s", job.baseline, out)
    with of_model(job.model_name, f"evaluation of {job.method} seed {job.seed}"):
        for fraction, out in pending:
            desc = f"{job.method} seed {job.seed} frac {fraction:.2f}"
            result = score(ablation_masks(ranks, fraction), fraction, desc)
            record = provenance(fraction, {})
            results.append((out, result | job.meta(fraction) | {PROVENANCE_KEY: record}))
    for out, result in results:
        write_json(out, result)
        log.info("top1 %.4f loss %.4f -> %s", result["top1"], result["loss"], out)


def checked_job_inputs(job: EvaluationJob) -> Callable[[float, dict], dict[str, Any]]:
    """Check that every input of ``job`` was computed from its model (and the selection from
    its seed, the baseline from its tokens), before any compute; returns the function that
    makes the provenance record of the result at a fraction (extra inputs: role -> path)."""
    from neuron_ablation.provenance import check_artifact, input_record, make_record, model_input

    model = model_input(job.model_source, job.model_digest)
    this_model = {"inputs.model": model["id"]}
    tokens = input_record(job.tokens)
    check_artifact(job.tokens, this_model)
    check_artifact(job.selection, this_model | {"settings.seed": job.seed})
    upstream = {"stats": job.stats, "bank": job.bank, "optimal": job.optimal}
    for role, path in upstream.items():
        if path:  # learned constants are of one seed, like the selection they were trained on
            seeded = {"settings.seed": job.seed} if role == "optimal" else {}
            check_artifact(path, this_model | seeded)
    if job.baseline:
        check_artifact(job.baseline, this_model | {"inputs.tokens": tokens["id"]})
    inputs = {"model": model, "tokens": tokens, "selection": job.selection, **upstream}
    inputs = make_record(inputs, {})["inputs"]  # identities read once, before any compute

    def record(fraction: float, extra: dict) -> dict[str, Any]:
        settings = {"method": job.method, "seed": job.seed, "fraction": fraction,
                    "first_items": job.scored_items(fraction)}  # fmt: skip
        return make_record(inputs | extra, settings)

    return record


def method_scorer(job: EvaluationJob) -> Scorer:
    """The scorer of ``job.method`` on the loaded model and evaluation inputs."""
    from neuron_ablation.methods import method

    spec = method(job.method)
    if spec.needs_bank:
        return _resample_scorer(job)
    if spec.needs_training:
        return _optimal_scorer(job)
    return _constant_scorer(job, spec.needs_statistics)


def _load(job: EvaluationJob) -> tuple[nn.Module, dict[str, np.ndarray]]:
    from neuron_ablation.models import load_model_and_inputs

    return load_model_and_inputs(job.model_source, job.task, job.tokens, job.device, job.dtype)


def _constant_scorer(job: EvaluationJob, needs_statistics: bool) -> Scorer:
    from neuron_ablation.architectures import neuron_widths
    from neuron_ablation.statistics import ablation_constants

    if needs_statistics and not job.stats:
        raise ValueError(f"--method {job.method} needs --stats (results/<model>/stats.zarr)")
    # Read before the model loads: a damaged store stops the job before any compute.
    constants = ablation_constants(job.stats, job.method) if needs_statistics else None
    model, columns = _load(job)
    if constants is None:  # zero
        constants = [torch.zeros(width, dtype=torch.float64) for width in neuron_widths(model)]
    return _folded_scorer(job, model, columns, lambda masks, fraction: constants)


def _optimal_scorer(job: EvaluationJob) -> Scorer:
    from neuron_ablation.optimal import fold_values, read_constants

    if not job.optimal:
        raise ValueError("--method optimal needs --optimal (results/<model>/optimal/seed<s>.zarr)")
    constants = {f: read_constants(job.optimal, f) for f in job.fractions if f > 0}
    model, columns = _load(job)
    return _folded_scorer(
        job, model, columns, lambda masks, fraction: fold_values(constants[fraction], masks)
    )


def _folded_scorer(
    job: EvaluationJob,
    model: nn.Module,
    columns: dict[str, np.ndarray],
    values_at: Callable[[Sequence[torch.Tensor], float], Sequence[torch.Tensor]],
) -> Scorer:
    """A scorer that folds constants (per layer float [neuron], from ``values_at(masks,
    fraction)``) into the output projections."""

    def score(masks: Sequence[torch.Tensor], fraction: float, desc: str) -> dict[str, Any]:
        inputs = job.scored_columns(columns, fraction)
        values = values_at(masks, fraction)
        return evaluate_constant_ablation(
            model, inputs, job.task, masks, values, job.batch_size, desc=desc
        )

    return score


def _resample_scorer(job: EvaluationJob) -> Scorer:
    from neuron_ablation.resampling import evaluate_resample_ablation, read_bank, source_of

    if not job.bank:
        raise ValueError(f"--method {job.method} needs --bank (results/<model>/resample/*.h5)")
    bank = read_bank(job.bank)
    if bank.attrs.get("source") != source_of(job.method):
        raise ValueError(
            f"{job.bank} is a bank of source {bank.attrs.get('source')!r}, but --method "
            f"{job.method} needs source {source_of(job.method)!r}"
        )
    model, columns = _load(job)

    def score(masks: Sequence[torch.Tensor], fraction: float, desc: str) -> dict[str, Any]:
        inputs = job.scored_columns(columns, fraction)
        return evaluate_resample_ablation(
            model, inputs, job.task, masks, bank, job.batch_size, desc=desc
        )

    return score


def run_baseline(
    model_name: str,
    model_source: str,
    task: str,
    tokens: str,
    out: str,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "float32",
    model_digest: str | None = None,
) -> dict[str, Any]:
    """Score the clean model and write ``out``; returns the result."""
    from neuron_ablation.io import write_json
    from neuron_ablation.models import load_model_and_inputs
    from neuron_ablation.provenance import check_artifact, make_record, model_input

    model_record = model_input(model_source, model_digest)
    check_artifact(tokens, {"inputs.model": model_record["id"]})
    provenance = make_record({"model": model_record, "tokens": tokens}, {"dtype": dtype})
    model, columns = load_model_and_inputs(model_source, task, tokens, device, dtype)
    with of_model(model_name, "baseline"):
        result = evaluate(model, columns, task, batch_size)
    result |= {"model": model_name, "n_ablated": 0, PROVENANCE_KEY: provenance}
    write_json(out, result)
    log.info("baseline top1 %.4f loss %.4f -> %s", result["top1"], result["loss"], out)
    return result
