"""Stage 4, one job: a (model, method, seed) scored at every requested fraction, and the
clean baseline (:mod:`neuron_ablation.scoring` scores one model; this module says which model,
ablated how, from which artifacts)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from neuron_ablation.finite import of_model
from neuron_ablation.provenance import PROVENANCE_KEY
from neuron_ablation.scoring import (
    evaluate,
    evaluate_constant_ablation,
)

log = logging.getLogger("neuron_ablation")


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
    started = time.perf_counter()
    provenance = checked_job_inputs(job)
    score = method_scorer(job) if pending else None
    ranks = read_ranks(job.selection) if pending else None
    loaded = time.perf_counter()
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
    scored = time.perf_counter()
    # The phases' seconds, so that a job's overhead (its wall time, e.g. from its Snakemake
    # benchmark, less the scoring) can be read from its log: benchmarks/job_seconds.py.
    log.info(
        "loaded model and inputs in %.2f s; scored %d fractions (%d tokens) in %.2f s",
        loaded - started, len(pending), sum(r["n_tokens"] for _, r in results[len(reused) :]),
        scored - loaded,
    )  # fmt: skip
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
