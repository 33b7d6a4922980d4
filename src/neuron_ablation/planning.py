"""What a decision costs: variance components of each paired difference, and the cheapest design.

The comparison's interval (:func:`neuron_ablation.intervals.crossed_interval`) treats seeds
(which neurons are ablated) and sequences (which text is scored) as crossed random factors::

    a[s, j] = mu + seed[s] + sequence[j] + residual[s, j]

so a study of ``S`` seeds scoring the same ``J`` sequences estimates ``mu`` with variance
``var_seed / S + var_sequence / J + var_residual / (S J)``. This module recovers the three
components from a finished run's per-sequence differences (two-way ANOVA mean squares, each
component truncated at zero, exactly as the interval does) and answers two questions per pair:

* **plan**: the design ``(S, J)`` that reaches a target half-width at the least cost. Cost is
  ``S * J`` sequence evaluations per method (forward tokens: times the sequence length). The
  half-width is the one the comparison would report, with Satterthwaite's degrees of freedom
  from the expected mean squares, and with *assurance*: the variance estimate of a new study
  scatters around its expectation like ``chi2(df) / df``, so the design must reach the target at
  that distribution's ``assurance`` quantile (0.9: nine studies in ten reach it), not merely on
  average.
* **seeds to decide** a tie: with today's sequences, the fewest seeds whose expected interval
  would exclude 0 if the observed difference were the true one; none where the sequence
  component alone keeps the interval wider than the difference (more text is needed, not seeds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from neuron_ablation import metrics
from neuron_ablation.comparison import PAIR_SCHEMA, contributions, method_order, pair_matrix
from neuron_ablation.integrity import TABLE_COLUMNS, read_csv_table, read_sequence_table
from neuron_ablation.intervals import crossed_interval, decided
from neuron_ablation.io import atomic_output

ASSURANCE = 0.9
MAX_SEEDS = 200
MAX_SEQUENCES = 4096
PLAN_FRACTIONS = (0.5, 0.9)  # the rows comparison.md shows; plan.csv has every fraction > 0


@dataclass(frozen=True)
class VarianceComponents:
    """Variance components of a paired difference [seed, sequence], in shown units squared.

    ``var_sequence`` and ``var_residual`` are None when the run scored no per-sequence data
    (then ``var_seed`` is the variance of whole-seed differences); ``var_seed`` is None with one
    seed, where the seed component cannot be estimated.
    """

    var_seed: float | None
    var_sequence: float | None
    var_residual: float | None
    n_seeds: int
    n_sequences: int

    @property
    def plannable(self) -> bool:
        return self.var_seed is not None

    def variance_of_mean(self, seeds: np.ndarray, sequences: np.ndarray) -> np.ndarray:
        """Expected variance of the grand mean for designs ``seeds`` x ``sequences``."""
        if self.var_sequence is None:
            return self.var_seed / seeds + 0 * sequences
        return (
            self.var_seed / seeds
            + self.var_sequence / sequences
            + self.var_residual / (seeds * sequences)
        )

    def degrees_of_freedom(self, seeds: np.ndarray, sequences: np.ndarray) -> np.ndarray:
        """Satterthwaite degrees of freedom of the crossed interval for designs ``S x J``, from
        the expected mean squares (the same terms :func:`crossed_interval` keeps)."""
        if self.var_sequence is None:
            return seeds - 1.0 + 0 * sequences
        n = seeds * sequences
        terms = []
        residual_coefficient = 1 / n
        if self.var_seed > 0:
            terms.append((1 / n, sequences * self.var_seed + self.var_residual, seeds - 1.0))
            residual_coefficient = residual_coefficient - 1 / n
        if self.var_sequence > 0:
            terms.append((1 / n, seeds * self.var_sequence + self.var_residual, sequences - 1.0))
            residual_coefficient = residual_coefficient - 1 / n
        terms.append((residual_coefficient, self.var_residual, (seeds - 1.0) * (sequences - 1.0)))
        variance = sum(c * ms for c, ms, _ in terms)
        denominator = sum(np.where(c * ms != 0, (c * ms) ** 2 / d, 0.0) for c, ms, d in terms)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denominator > 0, variance**2 / denominator, np.inf)

    def seed_share(self) -> float | None:
        """Share of today's design's variance of the mean that comes from the seeds."""
        if self.var_seed is None or self.var_sequence is None:
            return None
        total = float(self.variance_of_mean(np.array(self.n_seeds), np.array(self.n_sequences)))
        return self.var_seed / self.n_seeds / total if total > 0 else None


def variance_components(a: np.ndarray) -> VarianceComponents:
    """The components of paired differences ``a`` [seed, sequence] (one column: seeds only)."""
    a = np.asarray(a, dtype=np.float64)
    n_seeds, n_seqs = a.shape
    if n_seeds < 2:
        return VarianceComponents(None, None, None, n_seeds, n_seqs)
    seed_means = a.mean(axis=1)
    if n_seqs < 2:
        return VarianceComponents(float(np.var(seed_means, ddof=1)), None, None, n_seeds, n_seqs)
    mean, seq_means = a.mean(), a.mean(axis=0)
    ms_seed = n_seqs * np.sum((seed_means - mean) ** 2) / (n_seeds - 1)
    ms_seq = n_seeds * np.sum((seq_means - mean) ** 2) / (n_seqs - 1)
    residual = a - seed_means[:, None] - seq_means[None, :] + mean
    ms_res = np.sum(residual**2) / ((n_seeds - 1) * (n_seqs - 1))
    return VarianceComponents(
        var_seed=float(max(ms_seed - ms_res, 0.0) / n_seqs),
        var_sequence=float(max(ms_seq - ms_res, 0.0) / n_seeds),
        var_residual=float(ms_res),
        n_seeds=n_seeds,
        n_sequences=n_seqs,
    )


def expected_halfwidth(
    components: VarianceComponents,
    seeds: np.ndarray,
    sequences: np.ndarray,
    confidence: float = 0.95,
    assurance: float | None = ASSURANCE,
) -> np.ndarray:
    """Half-width of the crossed interval that designs ``seeds x sequences`` reach.

    With ``assurance`` p, the half-width that a fraction p of such studies stays under (the
    variance estimate taken at the p quantile of ``chi2(df) / df``); with None, at the expected
    variance.
    """
    seeds, sequences = np.broadcast_arrays(
        np.asarray(seeds, dtype=np.float64), np.asarray(sequences, dtype=np.float64)
    )
    variance = components.variance_of_mean(seeds, sequences)
    df = components.degrees_of_freedom(seeds, sequences)
    finite_df = np.where(np.isfinite(df), df, 1e12)
    if assurance is not None:
        variance = variance * stats.chi2.ppf(assurance, finite_df) / finite_df
    return stats.t.ppf(0.5 + confidence / 2, finite_df) * np.sqrt(variance)


@dataclass(frozen=True)
class Design:
    seeds: int
    sequences: int
    halfwidth: float

    @property
    def cost(self) -> int:
        """Sequence evaluations per method."""
        return self.seeds * self.sequences


def _sequence_grid(max_sequences: int) -> np.ndarray:
    """1..32 one by one, then about 24 steps per doubling (enough resolution for a cost)."""
    dense = np.arange(1, min(32, max_sequences) + 1)
    sparse = np.unique(np.round(np.geomspace(32, max(max_sequences, 32), 121)).astype(int))
    return np.unique(np.concatenate([dense, sparse[sparse <= max_sequences]]))


def cheapest_design(
    components: VarianceComponents,
    target: float,
    confidence: float = 0.95,
    assurance: float | None = ASSURANCE,
    max_seeds: int = MAX_SEEDS,
    max_sequences: int = MAX_SEQUENCES,
) -> Design | None:
    """The design of least ``seeds * sequences`` whose half-width reaches ``target``.

    Without per-sequence components the sequence count stays today's. None when no design
    within the bounds reaches the target, or the seed component is unknown (one seed).
    """
    if not components.plannable:
        return None
    seeds = np.arange(2, max_seeds + 1)[:, None]
    if components.var_sequence is None:
        sequences = np.array([components.n_sequences])
    else:
        grid = _sequence_grid(max_sequences)
        sequences = grid[grid >= 2]  # a sequence component needs two sequences
    halfwidth = expected_halfwidth(components, seeds, sequences[None, :], confidence, assurance)
    cost = np.where(halfwidth <= target, seeds * sequences[None, :], np.iinfo(np.int64).max)
    best = np.unravel_index(np.argmin(cost), cost.shape)
    if cost[best] == np.iinfo(np.int64).max:
        return None
    return Design(int(seeds[best[0], 0]), int(sequences[best[1]]), float(halfwidth[best]))


def seeds_to_decide(
    components: VarianceComponents,
    difference: float,
    confidence: float = 0.95,
    max_seeds: int = MAX_SEEDS,
) -> int | None:
    """Fewest seeds (today's sequences) whose expected interval excludes 0 around
    ``difference``; None when none up to ``max_seeds`` does."""
    if not components.plannable or difference == 0:
        return None
    seeds = np.arange(2, max_seeds + 1)
    halfwidth = expected_halfwidth(
        components, seeds, np.array(components.n_sequences), confidence, assurance=None
    )
    enough = np.flatnonzero(halfwidth < abs(difference))
    return int(seeds[enough[0]]) if len(enough) else None


def default_targets() -> dict[str, float]:
    """Target half-widths per metric from the registry (``Metric.decision_halfwidth``)."""
    return {m.name: m.decision_halfwidth for m in metrics.METRICS if m.decision_halfwidth}


def plan_table(
    results: pl.DataFrame,
    sequences: pl.DataFrame | None,
    targets: Mapping[str, float] | None = None,
    confidence: float = 0.95,
    assurance: float = ASSURANCE,
) -> pl.DataFrame:
    """One row per (model, metric, fraction > 0, method pair): today's interval, its variance
    components, the cheapest design for the metric's target half-width, and for a tie the seeds
    that would decide it.

    Args:
        results: ``ablation.csv`` rows (model, method, seed, fraction and the metrics).
        sequences: ``sequences.parquet`` rows, or None (then seeds are the only factor).
        targets: target half-width per metric name in shown units; default
            :func:`default_targets`. Metrics without a target get no design.
    """
    targets = default_targets() if targets is None else dict(targets)
    rows = []
    for (model, fraction), group in results.filter(pl.col("fraction") > 0).group_by(
        ["model", "fraction"]
    ):
        per_sequence = None
        if sequences is not None:
            per_sequence = sequences.filter(
                (pl.col("model") == model) & (pl.col("fraction") == fraction)
            )
        found = contributions(group, per_sequence)
        ordered = method_order(list(found))
        for metric in metrics.names():
            for i, a in enumerate(ordered):
                for b in ordered[i + 1 :]:
                    seeds, matrix = pair_matrix(found[a][metric], found[b][metric])
                    if seeds:
                        rows.append(
                            _plan_row(
                                (model, metric, fraction, a, b),
                                matrix,
                                targets.get(metric),
                                confidence,
                                assurance,
                            )
                        )
    # Within a (model, metric, fraction), pairs keep the comparison's method order.
    return pl.DataFrame(rows, schema=PLAN_SCHEMA).sort(
        ["model", "metric", "fraction"], maintain_order=True
    )


PLAN_SCHEMA = {
    **PAIR_SCHEMA,
    "n_seeds": pl.Int64,
    "n_sequences": pl.Int64,
    "mean_diff": pl.Float64,
    "halfwidth": pl.Float64,
    "decided": pl.Boolean,
    "var_seed": pl.Float64,
    "var_sequence": pl.Float64,
    "var_residual": pl.Float64,
    "seed_share": pl.Float64,
    "target_halfwidth": pl.Float64,
    "plan_seeds": pl.Int64,
    "plan_sequences": pl.Int64,
    "plan_cost": pl.Int64,
    "plan_halfwidth": pl.Float64,
    "current_cost": pl.Int64,
    "seeds_to_decide": pl.Int64,
}


def _plan_row(
    key: tuple[str, str, float, str, str],
    matrix: np.ndarray,
    target: float | None,
    confidence: float,
    assurance: float,
) -> dict:
    model, metric, fraction, a, b = key
    interval = crossed_interval(matrix, confidence)
    components = variance_components(matrix)
    halfwidth = None if interval.ci_high is None else interval.ci_high - interval.mean
    is_decided = decided(interval)
    design = None
    if target is not None:
        design = cheapest_design(components, target, confidence, assurance)
    to_decide = None
    if is_decided is False:
        to_decide = seeds_to_decide(components, interval.mean, confidence)
    n_sequences = matrix.shape[1]
    return {
        "model": model,
        "metric": metric,
        "fraction": fraction,
        "method_a": a,
        "method_b": b,
        "n_seeds": matrix.shape[0],
        "n_sequences": n_sequences,
        "mean_diff": float(interval.mean),
        "halfwidth": halfwidth,
        "decided": is_decided,
        "var_seed": components.var_seed,
        "var_sequence": components.var_sequence,
        "var_residual": components.var_residual,
        "seed_share": components.seed_share(),
        "target_halfwidth": target,
        "plan_seeds": design.seeds if design else None,
        "plan_sequences": design.sequences if design else None,
        "plan_cost": design.cost if design else None,
        "plan_halfwidth": design.halfwidth if design else None,
        "current_cost": matrix.shape[0] * n_sequences,
        "seeds_to_decide": to_decide,
    }


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}"


def plan_markdown(
    plan: pl.DataFrame, fractions: tuple[float, ...] = PLAN_FRACTIONS, heading: str = "##"
) -> str:
    """The plan at ``fractions`` as a markdown section (every fraction is in plan.csv)."""
    shown = plan.filter(pl.col("fraction").is_in(list(fractions)))
    lines = [
        f"{heading} What a decision costs",
        "",
        "Variance components of each paired difference (seeds: which neurons are ablated; "
        "sequences: which text is scored) and, per metric, the design of least cost (seeds x "
        "sequences, sequence evaluations per method) whose interval reaches the target "
        f"half-width in {ASSURANCE:.0%} of studies. *seed share*: share of today's interval's "
        "variance that comes from the seeds. *seeds to decide*: for a tie, the seeds (today's "
        "sequences) whose interval would exclude 0 if the observed difference were the true "
        "one ('–': the sequences alone keep it wider, or the seed component is unknown). "
        "Every fraction > 0 is in plan.csv; `neuron-ablation plan` prints it for any target.",
        "",
    ]
    if shown.is_empty():
        return "\n".join([*lines, "No pair at these fractions.", ""])
    header = [
        "model",
        "metric",
        "fraction",
        "pair",
        "diff ± half-width",
        "seeds x seqs",
        "seed share",
        "target",
        "plan seeds x seqs",
        "plan cost / today",
        "seeds to decide",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in shown.iter_rows(named=True):
        cost_ratio = (
            _number(row["plan_cost"] / row["current_cost"]) if row["plan_cost"] is not None else "–"
        )
        plan_design = f"{row['plan_seeds']} x {row['plan_sequences']}" if row["plan_seeds"] else "–"
        to_decide = row["seeds_to_decide"] if row["decided"] is False else "decided"
        if row["decided"] is None:
            to_decide = "–"
        lines.append(
            "| "
            + " | ".join(
                [
                    row["model"],
                    metrics.metric(row["metric"]).label,
                    f"{row['fraction'] * 100:.0f} %",
                    f"{row['method_a']} − {row['method_b']}",
                    f"{row['mean_diff']:+.3g} ± {_number(row['halfwidth'])}",
                    f"{row['n_seeds']} x {row['n_sequences']}",
                    _number(row["seed_share"], 2),
                    _number(row["target_halfwidth"]),
                    plan_design,
                    cost_ratio,
                    str(to_decide if to_decide is not None else "–"),
                ]
            )
            + " |"
        )
    return "\n".join([*lines, ""])


def write_plan(
    ablation_csv: str | Path,
    sequences: str | Path | None,
    csv: str | Path,
    confidence: float = 0.95,
    targets: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """ablation.csv (+ sequences.parquet) -> plan.csv (atomically); returns the plan."""
    results = read_csv_table(ablation_csv, TABLE_COLUMNS["ablation.csv"])
    per_sequence = read_sequence_table(sequences) if sequences is not None else None
    plan = plan_table(results, per_sequence, targets, confidence)
    with atomic_output(csv) as tmp:
        plan.write_csv(tmp, float_precision=6)
    return plan


def parse_targets(specs: list[str]) -> dict[str, float]:
    """``["top1=1.0", ...]`` over the registry's defaults; a clear error for a bad spec."""
    targets = default_targets()
    known = ", ".join(metrics.names())
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or name not in metrics.names():
            raise ValueError(f"--target {spec!r}: expected METRIC=HALFWIDTH, METRIC one of {known}")
        try:
            targets[name] = float(value)
        except ValueError:
            raise ValueError(f"--target {spec!r}: {value!r} is not a number") from None
        if not targets[name] > 0:
            raise ValueError(f"--target {spec!r}: the half-width must be positive")
    return targets


def plan_for_run(
    results: str | Path = "results",
    target: list[str] | None = None,
    fraction: list[float] | None = None,
    confidence: float = 0.95,
    csv: str | Path | None = None,
) -> str:
    """The plan of a finished run (its ``tables/ablation.csv`` and ``sequences.parquet``) as
    markdown at ``fraction`` (default 0.5 and 0.9); the whole plan to ``csv`` if given."""
    tables = Path(results) / "tables"
    ablation = tables / "ablation.csv"
    if not ablation.exists():
        raise FileNotFoundError(
            f"{ablation} does not exist: plan reads a finished run's tables "
            "(run `snakemake --cores all` first, or pass --results)"
        )
    parquet = tables / "sequences.parquet"
    targets = parse_targets(target or [])
    if csv is not None:
        plan = write_plan(ablation, parquet if parquet.exists() else None, csv, confidence, targets)
    else:
        plan = plan_table(
            read_csv_table(ablation, TABLE_COLUMNS["ablation.csv"]),
            read_sequence_table(parquet) if parquet.exists() else None,
            targets,
            confidence,
        )
    return plan_markdown(plan, tuple(fraction) if fraction else PLAN_FRACTIONS, heading="#")
