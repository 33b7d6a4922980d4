"""Paired comparison of ablation methods: every pair at every (model, metric, fraction).

Seeds pair the methods: seed ``s`` selects the same neurons for every method of a model (and
the same evaluation tokens are scored), so ``metric(A, s) - metric(B, s)`` isolates the effect of
the constant written into those neurons. For each (model, metric, fraction, A, B) we report the
per-seed differences, their mean and a two-sided t confidence interval
(:func:`neuron_ablation.intervals.crossed_interval`; no interval with one seed). Top-1 is in
percentage points, cross-entropy in nats; a positive top-1 difference or a negative loss
difference means A did better. Which metrics are compared, their units and which way is better
come from the registry ``metrics.METRICS``.

The verdict on the paper's claim is :mod:`neuron_ablation.claim`; ``comparison.csv`` and
``comparison.md`` are written by :mod:`neuron_ablation.comparison_report`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import polars as pl

from neuron_ablation import metrics
from neuron_ablation.intervals import TIE_TOLERANCE, decided, exact_tie, paired_difference
from neuron_ablation.intervals import (
    crossed_interval as crossed_interval,  # comparison.md names it here
)

CLAIM_ORDER = ("peak", "mean", "zero")

BEST_SCHEMA = {"model": pl.String, "metric": pl.String, "fraction": pl.Float64,
               "best_method": pl.String}  # fmt: skip
"""Columns of :func:`best_methods`."""

PAIR_SCHEMA = {
    "model": pl.String,
    "metric": pl.String,
    "fraction": pl.Float64,
    "method_a": pl.String,
    "method_b": pl.String,
}
"""The key columns of a pair's row (comparison.csv, plan.csv)."""

COMPARISON_SCHEMA = {
    **PAIR_SCHEMA,
    "n_seeds": pl.Int64,
    "seeds": pl.String,
    "n_sequences": pl.Int64,
    "diffs": pl.String,
    "mean_diff": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "df": pl.Float64,
    "seed_halfwidth": pl.Float64,
    "better": pl.String,
    "significant": pl.Boolean,
    "verdict": pl.String,
}
"""Columns of :func:`compare_methods` before ``best_method`` is joined: given explicitly, so a
run with one method (no pairs) still gets a table with every column, and no rows."""


def method_order(methods: Sequence[str]) -> list[str]:
    """optimal (the yardstick), the claim order (peak, mean, zero), then every other
    (resampling) method alphabetically."""
    present = set(methods)
    first = [m for m in ("optimal", *CLAIM_ORDER) if m in present]
    return first + sorted(present - set(first))


def _scaled(results: pl.DataFrame) -> pl.DataFrame:
    """Long (model, method, seed, fraction, metric, value); in shown units (top-1 in percent)."""
    return results.with_columns(*(pl.col(m.name) * m.scale for m in metrics.METRICS)).unpivot(
        index=["model", "method", "seed", "fraction"],
        on=list(metrics.names()),
        variable_name="metric",
        value_name="value",
    )


def best_methods(results: pl.DataFrame) -> pl.DataFrame:
    """Per (model, metric, fraction): the method with the best mean over seeds ("tie" if all equal).

    Ties within 1e-9 are listed together, e.g. ``"mean=peak=zero"`` at fraction 0.
    """
    means = (
        _scaled(results)
        .group_by(["model", "metric", "fraction", "method"])
        .agg(pl.col("value").mean())
        .with_columns(score=pl.col("value") * pl.col("metric").replace_strict(metrics.directions()))
    )
    rows = []
    for (model, metric, fraction), group in means.group_by(["model", "metric", "fraction"]):
        best = group["score"].max()
        winners = group.filter(pl.col("score") >= best - TIE_TOLERANCE)["method"]
        rows.append(
            {
                "model": model,
                "metric": metric,
                "fraction": fraction,
                "best_method": "=".join(method_order(winners.to_list())),
            }
        )
    return pl.DataFrame(rows, schema=BEST_SCHEMA).sort(["model", "metric", "fraction"])


Contributions = dict[str, dict[str, dict[int, np.ndarray]]]  # method -> metric -> seed -> [seq]


def contributions(results: pl.DataFrame, sequences: pl.DataFrame | None) -> Contributions:
    """Per method, metric and seed: per-sequence contributions whose mean is the seed's metric.

    For a seed scoring ``N`` predictions in ``J`` sequences, sequence ``j`` contributes
    ``J * numerator_j / N`` in shown units (``Metric.scale``; e.g. ``100 * J * correct_j / N``
    for top-1 in percent, ``J * loss_sum_j / N`` for CE), so differences of contributions pair up
    sequence by sequence. Without per-sequence data a seed has one contribution, its metric.

    Args:
        results: rows of one (model, fraction) of ``ablation.csv``.
        sequences: rows of the same (model, fraction) of ``sequences.parquet``, or None.
    """
    found: Contributions = {}
    for row in results.iter_rows(named=True):
        per_metric = found.setdefault(row["method"], {m: {} for m in metrics.names()})
        for m in metrics.METRICS:
            per_metric[m.name][row["seed"]] = np.array([row[m.name] * m.scale])
    if sequences is None:
        return found
    for (method, seed), group in sequences.group_by(["method", "seed"]):
        group = group.sort("sequence")
        n_total, n_seqs = group["n"].sum(), len(group)
        for m in metrics.METRICS:
            values = group[m.sequence_column].to_numpy()
            found[method][m.name][seed] = values * (m.scale * n_seqs / n_total)
    return found


def pair_matrix(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> tuple[list[int], np.ndarray]:
    """(seeds, differences [seed, sequence]) of two methods' contributions."""
    seeds = sorted(set(a) & set(b))
    shapes = {len(a[s]) for s in seeds} | {len(b[s]) for s in seeds}
    if len(shapes) > 1:
        # Mixed per-sequence and per-seed data (or different prefixes): compare seed totals.
        return seeds, np.array([[a[s].mean() - b[s].mean()] for s in seeds])
    if not seeds:
        return seeds, np.empty((0, 0))
    return seeds, np.stack([a[s] - b[s] for s in seeds])


def compare_methods(
    results: pl.DataFrame, confidence: float = 0.95, sequences: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Every pair of methods at every (model, metric, fraction), paired by seed and sequence.

    Args:
        results: one row per evaluation with model, method, seed, fraction, top1 and loss
            (``results/tables/ablation.csv``).
        sequences: per-sequence scores (``results/tables/sequences.parquet``: model, method,
            seed, fraction, sequence, loss_sum, correct, n); None: seeds only.

    Returns:
        One row per (model, metric, fraction, method_a, method_b) with ``method_a`` before
        ``method_b`` in :func:`method_order`: seeds, per-seed ``diffs`` (a - b, in seed order),
        ``n_sequences``, ``mean_diff``, ``ci_low``, ``ci_high`` (:func:`crossed_interval`),
        ``df``, ``seed_halfwidth`` (widest per-seed interval), ``better`` (the method with the
        better mean, or "tie"), ``significant``, ``verdict`` ("<a> better", "<b> better" or
        "tie": the interval contains 0) and ``best_method`` at that fraction.
    """
    rows = []
    for (model, fraction), group in results.group_by(["model", "fraction"]):
        per_sequence = None
        if sequences is not None:
            per_sequence = sequences.filter(
                (pl.col("model") == model) & (pl.col("fraction") == fraction)
            )
        found = contributions(group, per_sequence)
        for metric in metrics.names():
            for a, b in itertools.combinations(method_order(list(found)), 2):
                seeds, matrix = pair_matrix(found[a][metric], found[b][metric])
                if not seeds:
                    continue
                rows.append(_pair_row(model, metric, fraction, a, b, seeds, matrix, confidence))
    table = pl.DataFrame(rows, schema=COMPARISON_SCHEMA)
    order = {m: i for i, m in enumerate(method_order(results["method"].unique().to_list()))}
    return (
        table.join(best_methods(results), on=["model", "metric", "fraction"], how="left")
        .with_columns(
            _a=pl.col("method_a").replace_strict(order, return_dtype=pl.Int64),
            _b=pl.col("method_b").replace_strict(order, return_dtype=pl.Int64),
        )
        .sort(["model", "metric", "fraction", "_a", "_b"])
        .drop("_a", "_b")
    )


def _pair_row(
    model: str,
    metric: str,
    fraction: float,
    a: str,
    b: str,
    seeds: list[int],
    matrix: np.ndarray,
    confidence: float,
) -> dict:
    diff = paired_difference(matrix, confidence)
    mean = 0.0 if exact_tie(diff) else diff.mean
    advantage = mean * metrics.metric(metric).direction
    better = a if advantage > TIE_TOLERANCE else b if advantage < -TIE_TOLERANCE else "tie"
    significant = decided(diff)
    verdict = f"{better} better" if significant else "tie" if significant is False else "-"
    return {
        "model": model,
        "metric": metric,
        "fraction": fraction,
        "method_a": a,
        "method_b": b,
        "n_seeds": len(seeds),
        "seeds": " ".join(str(s) for s in seeds),
        "n_sequences": matrix.shape[1] if matrix.shape[1] > 1 else None,
        "diffs": " ".join(f"{d:.6g}" for d in matrix.mean(axis=1)),
        "mean_diff": mean,
        "ci_low": diff.ci_low,
        "ci_high": diff.ci_high,
        "df": diff.df,
        "seed_halfwidth": diff.seed_halfwidth,
        "better": better,
        "significant": significant,
        "verdict": verdict,
    }
