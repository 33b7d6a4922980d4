"""Paired comparison of ablation methods, and a plain verdict on the paper's claim per model.

Seeds pair the methods: seed ``s`` selects the same neurons for every method of a model (and
the same evaluation tokens are scored), so ``metric(A, s) - metric(B, s)`` isolates the effect of
the constant written into those neurons. For each (model, metric, fraction, A, B) we report the
per-seed differences, their mean and a two-sided t confidence interval with ``n - 1`` degrees of
freedom (no interval with one seed). Top-1 is in percentage points, cross-entropy in nats; a
positive top-1 difference or a negative loss difference means A did better. Which metrics are
compared, their units and which way is better come from the registry ``metrics.METRICS``.

The paper's claim is ``peak >= mean >= zero >> resampling``. It is checked at every fraction above
0 (at 0 nothing is ablated and all methods coincide), on both metrics:

* ``A >= B`` is *contradicted* at a fraction when B is better and the interval excludes 0, and
  *against in the point estimate* when B is better but the interval includes 0;
* ``zero >> R`` (R a resampling method) *holds* at a fraction only when zero is significantly
  better (interval above 0), or better at all with a single seed.

Verdicts: *holds* (every fraction and metric agrees), *holds within noise* (some point estimates
disagree, none significantly), *does not hold* (a significant contradiction, or with one seed any
disagreement).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from neuron_ablation import metrics
from neuron_ablation.integrity import TABLE_COLUMNS, read_csv_table, read_sequence_table
from neuron_ablation.io import atomic_output

CLAIM_ORDER = ("peak", "mean", "zero")
TIE_TOLERANCE = 1e-9

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


# --- intervals over seeds and sequences ---------------------------------------------------------


@dataclass(frozen=True)
class PairedDifference:
    """Mean paired difference with its interval (None bounds where nothing can be estimated).

    ``df`` is the (Satterthwaite) degrees of freedom of the t interval; ``seed_halfwidth`` the
    largest half-width of the per-seed intervals (sequence noise only), None without sequences.
    """

    mean: float
    ci_low: float | None
    ci_high: float | None
    df: float | None = None
    seed_halfwidth: float | None = None

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes 0; None without an interval."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low > 0 or self.ci_high < 0


def crossed_interval(a: np.ndarray, confidence: float = 0.95) -> PairedDifference:
    """Interval of the grand mean of paired differences ``a`` [seed, sequence].

    Seeds (which neurons are ablated) and sequences (which text is scored) are crossed random
    factors: every seed scores the same sequences. With ``a = mu + seed + sequence + residual``,
    the grand mean has variance ``var_seed / S + var_seq / J + var_res / (S J)``. The three
    components are estimated from the two-way ANOVA mean squares (each truncated at zero), and
    the t interval takes Satterthwaite's degrees of freedom. With one seed this is the paired t
    interval over sequences; with one sequence per seed (no per-sequence data) the paired t
    interval over seeds.
    """
    a = np.asarray(a, dtype=np.float64)
    n_seeds, n_seqs = a.shape
    mean = float(a.mean())
    if n_seeds * n_seqs < 2:
        return PairedDifference(mean, None, None)
    seed_means, seq_means = a.mean(axis=1), a.mean(axis=0)
    # (coefficient, mean square, its degrees of freedom) terms of the variance of the mean
    if n_seeds > 1 and n_seqs > 1:
        n = n_seeds * n_seqs
        ms_seed = n_seqs * np.sum((seed_means - mean) ** 2) / (n_seeds - 1)
        ms_seq = n_seeds * np.sum((seq_means - mean) ** 2) / (n_seqs - 1)
        residual = a - seed_means[:, None] - seq_means[None, :] + mean
        df_res = (n_seeds - 1) * (n_seqs - 1)
        ms_res = np.sum(residual**2) / df_res
        coefficient_res = 1 / n
        terms = []
        for ms, df in ((ms_seed, n_seeds - 1), (ms_seq, n_seqs - 1)):
            if ms > ms_res:  # a component estimated below zero is set to zero
                terms.append((1 / n, ms, df))
                coefficient_res -= 1 / n
        terms.append((coefficient_res, ms_res, df_res))
    elif n_seeds > 1:
        terms = [(1 / n_seeds, np.var(seed_means, ddof=1), n_seeds - 1)]
    else:
        terms = [(1 / n_seqs, np.var(seq_means, ddof=1), n_seqs - 1)]
    variance = float(sum(c * ms for c, ms, _ in terms))
    if variance <= 0:
        return PairedDifference(mean, mean, mean, math.inf)
    df = variance**2 / float(sum((c * ms) ** 2 / d for c, ms, d in terms if c * ms != 0))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(variance)
    return PairedDifference(mean, mean - half, mean + half, df)


def paired_difference(a: np.ndarray, confidence: float = 0.95) -> PairedDifference:
    """:func:`crossed_interval` plus the widest per-seed interval (sequence noise alone)."""
    a = np.asarray(a, dtype=np.float64)
    overall = crossed_interval(a, confidence)
    if a.shape[1] < 2:
        return overall
    halves = []
    for row in a:
        one = crossed_interval(row[None, :], confidence)
        halves.append(0.0 if one.ci_high is None else one.ci_high - one.mean)
    return PairedDifference(overall.mean, overall.ci_low, overall.ci_high, overall.df, max(halves))


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


def exact_tie(diff: PairedDifference) -> bool:
    """Differences that cancel leave float noise (e.g. 2e-15 pp): that is a tie."""
    return abs(diff.mean) < TIE_TOLERANCE


def decided(diff: PairedDifference) -> bool | None:
    """Whether the interval excludes 0 (False for an exact tie; None without an interval)."""
    return False if exact_tie(diff) else diff.significant


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


# --- the claim --------------------------------------------------------------------------------


@dataclass
class RelationCheck:
    """One relation of the claim (``a >= b`` or ``a >> b``) over fractions and metrics."""

    a: str
    b: str
    strong: bool
    n_checked: int = 0
    against: dict[str, list[float]] | None = None  # metric -> fractions, point estimate wrong
    contradicted: dict[str, list[float]] | None = None  # metric -> fractions, significantly wrong
    not_significant: dict[str, list[float]] | None = None  # ">>" only: right sign, CI covers 0

    @property
    def symbol(self) -> str:
        return ">>" if self.strong else ">="

    def failures(self) -> int:
        return sum(len(v) for v in (self.against or {}).values()) + sum(
            len(v) for v in (self.not_significant or {}).values()
        )


def check_relation(
    comparison: pl.DataFrame, model: str, a: str, b: str, strong: bool
) -> RelationCheck:
    """Check ``a >= b`` (or ``a >> b`` when ``strong``) at every fraction > 0 of ``model``."""
    rows = comparison.filter(
        (pl.col("model") == model)
        & (pl.col("method_a") == a)
        & (pl.col("method_b") == b)
        & (pl.col("fraction") > 0)
    )
    check = RelationCheck(a, b, strong, against={}, contradicted={}, not_significant={})
    check.n_checked = rows["fraction"].n_unique()
    for row in rows.iter_rows(named=True):
        metric, fraction = row["metric"], row["fraction"]
        advantage = row["mean_diff"] * metrics.metric(metric).direction
        if advantage < -TIE_TOLERANCE:
            check.against.setdefault(metric, []).append(fraction)
            if row["significant"]:
                check.contradicted.setdefault(metric, []).append(fraction)
        elif strong and (advantage <= TIE_TOLERANCE or row["significant"] is False):
            check.not_significant.setdefault(metric, []).append(fraction)
    return check


def _percent(fraction: float) -> str:
    return f"{round(fraction * 100):d} %"


def _fractions(values: Sequence[float]) -> str:
    return ", ".join(_percent(f) for f in sorted(values))


def _by_metric(found: dict[str, list[float]]) -> str:
    return "; ".join(
        f"{m.label} at {_fractions(found[m.name])}" for m in metrics.METRICS if found.get(m.name)
    )


def describe_relation(check: RelationCheck) -> str:
    """One clause, e.g. ``peak >= mean fails (top-1 at 30 %, significant at 30 %)``."""
    name = f"{check.a} {check.symbol} {check.b}"
    if check.n_checked == 0:
        return f"{name} cannot be checked (no paired results)"
    if not check.failures():
        return f"{name} holds at all {check.n_checked} fractions"
    parts = []
    if check.against:
        parts.append(f"{check.b} did better: {_by_metric(check.against)}")
    if check.contradicted:
        parts.append(f"significantly: {_by_metric(check.contradicted)}")
    if check.not_significant:
        parts.append(f"not significantly better: {_by_metric(check.not_significant)}")
    return f"{name} fails ({'; '.join(parts)})"


def claim_verdict(comparison: pl.DataFrame, model: str) -> str:
    """A plain sentence on whether ``peak >= mean >= zero >> resampling`` holds for ``model``."""
    rows = comparison.filter(pl.col("model") == model)
    methods = set(rows["method_a"].to_list()) | set(rows["method_b"].to_list())
    missing = [m for m in CLAIM_ORDER if m not in methods]
    if missing:
        return (
            f"The claim peak >= mean >= zero >> resampling cannot be checked for {model}: "
            f"method(s) {', '.join(missing)} were not run."
        )
    resampling = [m for m in method_order(list(methods)) if m.startswith("resample-")]
    checks = [check_relation(comparison, model, "peak", "mean", False)]
    checks.append(check_relation(comparison, model, "mean", "zero", False))
    checks += [check_relation(comparison, model, "zero", r, True) for r in resampling]
    one_seed = rows["n_seeds"].max() < 2
    if any(c.contradicted for c in checks) or (one_seed and any(c.failures() for c in checks)):
        verdict = "does not hold"
    elif any(c.failures() for c in checks):
        verdict = "holds within noise (no disagreement is significant)"
    else:
        verdict = "holds"
    claim = "peak >= mean >= zero" + (" >> resampling" if resampling else "")
    sentence = f"For {model}, the paper's claim {claim} {verdict}: "
    sentence += "; ".join(describe_relation(c) for c in checks) + "."
    if not resampling:
        sentence += (
            " Resampling methods were not run for this model, so '>> resampling' is untested."
        )
    if one_seed:
        sentence += " With one seed there are no confidence intervals: point estimates only."
    return sentence


# --- outputs ----------------------------------------------------------------------------------


def _cell(row: dict | None) -> str:
    """``mean [low, high]`` with three significant digits (CE differences can be tiny); "–" for
    what is undefined (no pair, or the interval of one seed)."""
    if row is None:
        return "–"
    mean = f"{row['mean_diff']:+.3g}"
    if row["ci_low"] is None:
        return f"{mean} [–]"
    return f"{mean} [{row['ci_low']:+.3g}, {row['ci_high']:+.3g}]"


def model_markdown(comparison: pl.DataFrame, model: str, confidence: float) -> list[str]:
    """A verdict and a per-fraction table (best methods, adjacent differences) for one model."""
    rows = comparison.filter(pl.col("model") == model)
    methods = method_order(rows["method_a"].to_list() + rows["method_b"].to_list())
    adjacent = list(itertools.pairwise(methods))
    lookup = {
        (r["metric"], r["fraction"], r["method_a"], r["method_b"]): r
        for r in rows.iter_rows(named=True)
    }
    best = {(r["metric"], r["fraction"]): r["best_method"] for r in rows.iter_rows(named=True)}
    level = f"{confidence:.0%}"
    header = ["fraction", *(f"best {m.label}" for m in metrics.METRICS)]
    for m in metrics.METRICS:
        header += [f"{a} − {b} {m.header_label} [{level} CI]" for a, b in adjacent]
    lines = [f"## {model}", "", claim_verdict(comparison, model), ""]
    lines += ranking_markdown(comparison, model, confidence)
    lines += ["### Adjacent methods at every fraction", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fraction in sorted(rows["fraction"].unique().to_list()):
        cells = [f"{fraction * 100:.0f} %"]
        cells += [best.get((metric, fraction), "–") for metric in metrics.names()]
        for metric in metrics.names():
            cells += [_cell(lookup.get((metric, fraction, a, b))) for a, b in adjacent]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _units_sentence() -> str:
    """Each metric's unit of difference and the sign that favours the first method, e.g.
    "Top-1 differences are in percentage points (positive: the first method is better), ..."."""
    parts = [
        f"{m.noun} differences{' are' if i == 0 else ''} in {m.unit} "
        f"({'positive' if m.higher_is_better else 'negative'}: the first method is better)"
        for i, m in enumerate(metrics.METRICS)
    ]
    sentence = ", ".join(parts) + "."
    return sentence[:1].upper() + sentence[1:]


def unpaired_sections(comparison: pl.DataFrame, results: pl.DataFrame) -> list[str]:
    """A short section for every model of ``results`` that has no pair in ``comparison`` (one
    method run, or methods that share no seed): what was run and why nothing is compared."""
    paired = set(comparison["model"].to_list())
    lines = []
    for model in results["model"].unique(maintain_order=True).to_list():
        if model in paired:
            continue
        methods = method_order(results.filter(pl.col("model") == model)["method"].to_list())
        lines += [
            f"## {model}",
            "",
            f"Nothing to compare for {model}: only {', '.join(methods)} "
            f"{'was' if len(methods) == 1 else 'were'} run"
            + (" (no seed in common)" if len(methods) > 1 else "")
            + ". Pairs need two methods scored on the same seed; the claim cannot be checked.",
            "",
        ]
    return lines


def comparison_markdown(
    comparison: pl.DataFrame, confidence: float = 0.95, results: pl.DataFrame | None = None
) -> str:
    """comparison.md: the method note, then per model its verdict and tables; with ``results``
    (ablation.csv), a note for each model that has no pairs."""
    lines = [
        "# Paired comparison of ablation methods",
        "",
        "Each seed selects the same neurons for every method and every method scores the same "
        "evaluation sequences, so differences are paired by seed and by sequence. Intervals are "
        f"two-sided {confidence:.0%} t intervals that count both sources of noise: which neurons "
        "a seed ablates and which text is scored (seeds and sequences as crossed random factors, "
        "variance components from a two-way ANOVA, Satterthwaite degrees of freedom; "
        "`neuron_ablation.comparison.crossed_interval`). *tie* means the interval contains 0. "
        f"{_units_sentence()} Fraction 0 ablates nothing and is excluded from the verdicts. "
        "All pairs are in comparison.csv.",
        "",
    ]
    for model in comparison["model"].unique(maintain_order=True).to_list():
        lines += model_markdown(comparison, model, confidence)
    if results is not None:
        lines += unpaired_sections(comparison, results)
    return "\n".join(lines)


RANKING_FRACTIONS = (0.5, 0.9)


def ranking(comparison: pl.DataFrame, model: str, metric: str, fraction: float) -> str:
    """Methods best first, ``>`` where the next is significantly worse, ``≈`` where tied.

    Methods are ordered by their mean over seeds; a tie is decided by the paired interval of
    the two neighbours.
    """
    rows = comparison.filter(
        (pl.col("model") == model) & (pl.col("metric") == metric) & (pl.col("fraction") == fraction)
    )
    score: dict[str, float] = {}
    direction = metrics.metric(metric).direction
    for row in rows.iter_rows(named=True):
        score.setdefault(row["method_a"], 0.0)
        score.setdefault(row["method_b"], 0.0)
        advantage = row["mean_diff"] * direction
        score[row["method_a"]] += advantage
        score[row["method_b"]] -= advantage
    ordered = sorted(score, key=lambda m: -score[m])
    lookup = {(r["method_a"], r["method_b"]): r for r in rows.iter_rows(named=True)}
    text = ordered[0] if ordered else ""
    for first, second in itertools.pairwise(ordered):
        row = lookup.get((first, second)) or lookup.get((second, first))
        text += (" > " if row and row["significant"] else " ≈ ") + second
    return text


def ranking_markdown(comparison: pl.DataFrame, model: str, confidence: float) -> list[str]:
    """At 50 % and 90 %: the ranking of all methods and each method's distance to optimal."""
    rows = comparison.filter(pl.col("model") == model)
    methods = method_order(rows["method_a"].to_list() + rows["method_b"].to_list())
    fractions = [f for f in RANKING_FRACTIONS if f in set(rows["fraction"].to_list())]
    if not fractions:
        return []
    lines = [f"### Ranking at {' and '.join(_percent(f) for f in fractions)}", ""]
    for fraction in fractions:
        for metric in metrics.METRICS:
            order = ranking(comparison, model, metric.name, fraction)
            lines.append(f"- {_percent(fraction)}, {metric.label}: {order}")
    lines.append("")
    if "optimal" not in methods:
        return lines
    lookup = {
        (r["metric"], r["fraction"], r["method_a"], r["method_b"]): r
        for r in rows.iter_rows(named=True)
    }
    level = f"{confidence:.0%}"
    header = ["method"]
    header += [
        f"{m.label} − optimal at {_percent(f)} [{level} CI]"
        for f in fractions
        for m in metrics.METRICS
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in (m for m in methods if m != "optimal"):
        cells = [method]
        for fraction in fractions:
            for metric in metrics.names():
                row = lookup.get((metric, fraction, "optimal", method))
                cells.append(_cell(_flipped(row)) if row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _flipped(row: dict) -> dict:
    """The row of (a, b) as the row of (b, a)."""
    flip = {"mean_diff": -row["mean_diff"]}
    if row["ci_low"] is not None:
        flip |= {"ci_low": -row["ci_high"], "ci_high": -row["ci_low"]}
    else:
        flip |= {"ci_low": None, "ci_high": None}
    return flip


def write_comparison(
    ablation_csv: str | Path,
    csv: str | Path,
    markdown: str | Path,
    confidence: float = 0.95,
    sequences: str | Path | None = None,
    appendix: str = "",
) -> pl.DataFrame:
    """ablation.csv (+ sequences.parquet) -> comparison.csv and comparison.md (atomically, with
    ``appendix`` as its last section); returns the table."""
    results = read_csv_table(ablation_csv, TABLE_COLUMNS["ablation.csv"])
    per_sequence = read_sequence_table(sequences) if sequences is not None else None
    table = compare_methods(results, confidence, per_sequence)
    with atomic_output(csv) as tmp:
        table.write_csv(tmp, float_precision=6)
    with atomic_output(markdown) as tmp:
        tmp.write_text(comparison_markdown(table, confidence, results) + appendix)
    return table
