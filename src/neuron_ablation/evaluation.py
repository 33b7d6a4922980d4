"""Stage 4, one job: a (model, method, seed) scored at every requested fraction, and the
clean baseline (:mod:`neuron_ablation.scoring` scores one model; this module says which model,
ablated how, from which artifacts)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from neuron_ablation.architectures import check_widths
from neuron_ablation.finite import of_model
from neuron_ablation.metrics import SWEEP_KEY, first_rows, token_set
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


def evaluation_jobs(
    seeds: Sequence[int], selections: Sequence[str], outputs: Sequence[str], **shared: Any
) -> list[EvaluationJob]:
    """The jobs of one ``evaluate`` command, one per seed: ``selections[i]`` is the selection of
    ``seeds[i]``, and ``outputs`` holds one path per (seed, fraction), seed-major (every
    fraction of the first seed, then of the next); ``shared`` are the other fields."""
    fractions = tuple(shared.pop("fractions"))
    if len(selections) != len(seeds):
        raise ValueError(
            f"--seed and --selection must pair up: got {len(seeds)} seeds and "
            f"{len(selections)} selections"
        )
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seed lists a seed twice: {list(seeds)}")
    if len(seeds) > 1 and shared.get("optimal"):
        raise ValueError("--optimal holds the constants of one seed: give one --seed with it")
    if len(seeds) > 1 and len(outputs) != len(seeds) * len(fractions):
        raise ValueError(
            f"--out needs one path per (seed, fraction), seed-major: got {len(seeds)} seeds x "
            f"{len(fractions)} fractions and {len(outputs)} output paths"
        )
    n = len(fractions) if len(seeds) > 1 else len(outputs)  # one seed: the job checks the pairs
    return [
        EvaluationJob(
            seed=seed,
            selection=selection,
            fractions=fractions,
            outputs=tuple(outputs[i * n : (i + 1) * n]),
            **shared,
        )  # fmt: skip
        for i, (seed, selection) in enumerate(zip(seeds, selections, strict=True))
    ]


def run_evaluation_jobs(jobs: Sequence[EvaluationJob]) -> None:
    """Score several seeds of one (model, method) with the model, evaluation inputs, constants
    or bank loaded once: each seed's results are what :func:`run_evaluation_job` alone writes.

    Every seed's inputs are checked before any compute; a seed's results are written once its
    fractions are scored, and its ranks and masks are released before the next seed.
    """
    _check_same_but_seed(jobs)
    started = time.perf_counter()
    provenances = [checked_job_inputs(job) for job in jobs]
    pending = [_pending(job) for job in jobs]
    score = method_scorer(jobs[0]) if any(pending) else None
    loaded = time.perf_counter()
    tokens = 0
    for job, provenance, todo in zip(jobs, provenances, pending, strict=True):
        tokens += _run_seed(job, provenance, score, todo)
    # The phases' seconds, so that a job's overhead (its wall time, e.g. from its Snakemake
    # benchmark, less the scoring) can be read from its log: benchmarks/job_seconds.py.
    log.info(
        "loaded model and inputs in %.2f s; scored %d fractions (%d tokens) in %.2f s",
        loaded - started, sum(map(len, pending)), tokens, time.perf_counter() - loaded,
    )  # fmt: skip


def run_evaluation_job(job: EvaluationJob) -> None:
    """Score ``job`` at every fraction, loading the model once; write one JSON per fraction.

    Nothing is ablated at fraction 0 (``round(0 * width) == 0``): there the clean baseline,
    computed once per model, is reused when given, on fraction 0's own rows (its first
    ``sweep_items`` when 0 is a sweep fraction, like every other sweep fraction). Every input
    is read and checked before the first result is written, and every fraction is scored before
    any is written (non-finite logits at one fraction leave none).
    """
    run_evaluation_jobs([job])


def _check_same_but_seed(jobs: Sequence[EvaluationJob]) -> None:
    """Jobs scored with one loaded model may differ in seed, selection and outputs only."""
    first = jobs[0]
    for job in jobs[1:]:
        own = {"seed": first.seed, "selection": first.selection, "outputs": first.outputs}
        if dataclasses.replace(job, **own) != first:
            raise ValueError(
                f"seeds {first.seed} and {job.seed} differ in more than seed, selection and "
                "outputs: one model load scores one (model, method) only"
            )


def _pending(job: EvaluationJob) -> list[tuple[float, str]]:
    """(fraction, output) pairs that need the model: all but fraction 0 with a baseline."""
    pairs = zip(job.fractions, job.outputs, strict=True)
    return [(f, out) for f, out in pairs if not (f == 0.0 and job.baseline)]


def _run_seed(
    job: EvaluationJob,
    provenance: Callable[[float, dict], dict[str, Any]],
    score: Scorer | None,
    pending: list[tuple[float, str]],
) -> int:
    """Score one seed's ``pending`` fractions with ``score``, reuse the baseline at the others,
    then write every result of the seed; returns the tokens (items) scored."""
    from neuron_ablation.integrity import read_result
    from neuron_ablation.io import write_json
    from neuron_ablation.selection import ablation_masks, read_ranks

    reused = [pair for pair in zip(job.fractions, job.outputs, strict=True) if pair not in pending]
    ranks = read_ranks(job.selection) if pending else None
    results = []
    for fraction, out in reused:
        record = provenance(fraction, {"baseline": job.baseline})
        clean = first_rows(read_result(job.baseline), job.scored_items(fraction))
        result = clean | job.meta(fraction) | {"n_ablated": 0}
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
    return sum(result["n_tokens"] for _, result in results[len(reused) :])


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

    if method(job.method).needs_bank:
        return _resample_scorer(job)
    return _constant_scorer(job)


def _load(job: EvaluationJob) -> tuple[nn.Module, dict[str, np.ndarray]]:
    from neuron_ablation.models import load_model_and_inputs

    return load_model_and_inputs(job.model_source, job.task, job.tokens, job.device, job.dtype)


def _constant_scorer(job: EvaluationJob) -> Scorer:
    """zero, mean, peak and optimal: constants folded into the output projections."""
    from neuron_ablation.constants import method_constants
    from neuron_ablation.methods import method

    spec = method(job.method)
    if spec.needs_statistics and not job.stats:
        raise ValueError(f"--method {job.method} needs --stats (results/<model>/stats.zarr)")
    if spec.needs_training and not job.optimal:
        raise ValueError("--method optimal needs --optimal (results/<model>/optimal/seed<s>.zarr)")
    # Read before the model loads: a damaged store stops the job before any compute. Nothing
    # is learned at fraction 0 (nothing is ablated there).
    values_at = method_constants(
        job.method,
        stats=job.stats,
        optimal=job.optimal,
        fractions=[f for f in job.fractions if f > 0],
    )
    model, columns = _load(job)
    return _folded_scorer(job, model, columns, values_at)


def _folded_scorer(
    job: EvaluationJob,
    model: nn.Module,
    columns: dict[str, np.ndarray],
    values_at: Callable[[Sequence[torch.Tensor], float], Sequence[torch.Tensor]],
) -> Scorer:
    """A scorer that folds constants (per layer float [neuron], from ``values_at(masks,
    fraction)``) into the output projections."""

    def score(masks: Sequence[torch.Tensor], fraction: float, desc: str) -> dict[str, Any]:
        check_widths(model, masks, job.selection)
        inputs = job.scored_columns(columns, fraction)
        values = values_at(masks, fraction)
        return evaluate_constant_ablation(
            model, inputs, job.task, masks, values, job.batch_size, desc=desc
        )

    return score


def _resample_scorer(job: EvaluationJob) -> Scorer:
    from neuron_ablation.methods import method
    from neuron_ablation.resampling import evaluate_resample_ablation
    from neuron_ablation.resampling_bank import read_bank

    if not job.bank:
        raise ValueError(f"--method {job.method} needs --bank (results/<model>/resample/*.h5)")
    bank = read_bank(job.bank)
    source = method(job.method).source
    if bank.attrs.get("source") != source:
        raise ValueError(
            f"{job.bank} is a bank of source {bank.attrs.get('source')!r}, but --method "
            f"{job.method} needs source {source!r}"
        )
    model, columns = _load(job)

    def score(masks: Sequence[torch.Tensor], fraction: float, desc: str) -> dict[str, Any]:
        check_widths(model, masks, job.selection)
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
    sweep_items: int | None = None,
) -> dict[str, Any]:
    """Score the clean model and write ``out``; returns the result.

    With ``sweep_items`` (``eval.sweep``), the result also records the clean figures on the
    sweep fractions' rows, the first ``sweep_items``, under ``"sweep"``
    (:func:`neuron_ablation.metrics.token_set`, computed from the same per-sequence sums), so
    that every fraction is compared with the clean model on its own tokens; the top-level
    figures stay those of the whole split.
    """
    from neuron_ablation.io import write_json
    from neuron_ablation.models import load_checked_model_and_inputs

    settings = {"dtype": dtype} | ({} if sweep_items is None else {"sweep_items": sweep_items})
    model, columns, provenance = load_checked_model_and_inputs(
        model_source, task, tokens, "tokens", settings,
        device=device, dtype=dtype, model_digest=model_digest,
    )  # fmt: skip
    with of_model(model_name, "baseline"):
        result = evaluate(model, columns, task, batch_size)
    result |= {"model": model_name, "n_ablated": 0, PROVENANCE_KEY: provenance}
    if sweep_items is not None:
        result[SWEEP_KEY] = token_set(result, sweep_items)
    write_json(out, result)
    log.info("baseline top1 %.4f loss %.4f -> %s", result["top1"], result["loss"], out)
    return result
