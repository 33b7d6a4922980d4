"""Paired comparison of ablation methods, and a plain verdict on the paper's claim per model.

Seeds pair the methods: seed ``s`` selects the same neurons for every method of a model (and
the same evaluation tokens are scored), so ``metric(A, s) - metric(B, s)`` isolates the effect of
the constant written into those neurons. For each (model, metric, fraction, A, B) we report the
per-seed differences, their mean and a two-sided t confidence interval with ``n - 1`` degrees of
freedom (no interval with one seed). Top-1 is in percentage points, cross-entropy in nats; a
positive top-1 difference or a negative loss difference means A did better.

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

import polars as pl

from neuron_ablation.integrity import TABLE_COLUMNS, read_csv_table
from neuron_ablation.io import atomic_output

CLAIM_ORDER = ("peak", "mean", "zero")
METRICS = {"top1": "top-1", "loss": "CE"}
# +1: higher is better (top-1), -1: lower is better (loss).
DIRECTION = {"top1": 1.0, "loss": -1.0}
TIE_TOLERANCE = 1e-9


# --- Student's t quantile without scipy -------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz method)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast only on this side of the mean; use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`t_cdf`, |error| < 1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    while hi - lo > 1e-10:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


# --- paired differences -----------------------------------------------------------------------


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences with a t interval (None bounds with fewer than 2 seeds)."""

    diffs: tuple[float, ...]
    mean: float
    ci_low: float | None
    ci_high: float | None

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes 0; None without an interval."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low > 0 or self.ci_high < 0


def paired_difference(diffs: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """Mean and two-sided t interval of paired differences."""
    n = len(diffs)
    if n == 0:
        raise ValueError("no paired differences")
    mean = math.fsum(diffs) / n
    if n < 2:
        return PairedDifference(tuple(diffs), mean, None, None)
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return PairedDifference(tuple(diffs), mean, mean - half, mean + half)


def method_order(methods: Sequence[str]) -> list[str]:
    """Claim order (peak, mean, zero), then every other (resampling) method alphabetically."""
    present = set(methods)
    return [m for m in CLAIM_ORDER if m in present] + sorted(present - set(CLAIM_ORDER))


def _scaled(results: pl.DataFrame) -> pl.DataFrame:
    """Long (model, method, seed, fraction, metric, value); top-1 in percent."""
    return results.with_columns(pl.col("top1") * 100).unpivot(
        index=["model", "method", "seed", "fraction"],
        on=list(METRICS),
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
        .with_columns(score=pl.col("value") * pl.col("metric").replace_strict(DIRECTION))
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
    return pl.DataFrame(rows).sort(["model", "metric", "fraction"])


def compare_methods(results: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """Every pair of methods at every (model, metric, fraction), paired by seed.

    Args:
        results: one row per evaluation with model, method, seed, fraction, top1 and loss
            (``results/tables/ablation.csv``).

    Returns:
        One row per (model, metric, fraction, method_a, method_b) with ``method_a`` before
        ``method_b`` in :func:`method_order`: seeds, per-seed ``diffs`` (a - b, in seed order),
        ``mean_diff``, ``ci_low``, ``ci_high``, ``better`` (the method with the better mean, or
        "tie"), ``significant`` and ``best_method`` at that fraction.
    """
    long = _scaled(results)
    rows = []
    for (model, metric, fraction), group in long.group_by(["model", "metric", "fraction"]):
        by_method = {
            method: dict(zip(g["seed"].to_list(), g["value"].to_list(), strict=True))
            for (method,), g in group.group_by("method")
        }
        for a, b in itertools.combinations(method_order(list(by_method)), 2):
            seeds = sorted(set(by_method[a]) & set(by_method[b]))
            if not seeds:
                continue
            diff = paired_difference([by_method[a][s] - by_method[b][s] for s in seeds], confidence)
            # Per-seed differences that cancel leave float noise (e.g. 2e-15 pp): that is a tie.
            mean = 0.0 if abs(diff.mean) < TIE_TOLERANCE else diff.mean
            advantage = mean * DIRECTION[metric]
            rows.append(
                {
                    "model": model,
                    "metric": metric,
                    "fraction": fraction,
                    "method_a": a,
                    "method_b": b,
                    "n_seeds": len(seeds),
                    "seeds": " ".join(str(s) for s in seeds),
                    "diffs": " ".join(f"{d:.6g}" for d in diff.diffs),
                    "mean_diff": mean,
                    "ci_low": diff.ci_low,
                    "ci_high": diff.ci_high,
                    "better": a
                    if advantage > TIE_TOLERANCE
                    else b
                    if advantage < -TIE_TOLERANCE
                    else "tie",
                    "significant": diff.significant,
                }
            )
    table = pl.DataFrame(rows, schema_overrides={"ci_low": pl.Float64, "ci_high": pl.Float64})
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
        advantage = row["mean_diff"] * DIRECTION[metric]
        if advantage < -TIE_TOLERANCE:
            check.against.setdefault(metric, []).append(fraction)
            if row["significant"]:
                check.contradicted.setdefault(metric, []).append(fraction)
        elif strong and (advantage <= TIE_TOLERANCE or row["significant"] is False):
            check.not_significant.setdefault(metric, []).append(fraction)
    return check


def _fractions(values: Sequence[float]) -> str:
    return ", ".join(f"{round(f * 100):d} %" for f in sorted(values))


def _by_metric(found: dict[str, list[float]]) -> str:
    return "; ".join(
        f"{label} at {_fractions(found[m])}" for m, label in METRICS.items() if found.get(m)
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
    resampling = [m for m in method_order(list(methods)) if m not in CLAIM_ORDER]
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
    header = ["fraction", "best top-1", "best CE"]
    header += [f"{a} − {b} top-1 (pp) [{level} CI]" for a, b in adjacent]
    header += [f"{a} − {b} CE [{level} CI]" for a, b in adjacent]
    lines = [f"## {model}", "", claim_verdict(comparison, model), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fraction in sorted(rows["fraction"].unique().to_list()):
        cells = [f"{fraction * 100:.0f} %", best.get(("top1", fraction), "–")]
        cells.append(best.get(("loss", fraction), "–"))
        for metric in METRICS:
            cells += [_cell(lookup.get((metric, fraction, a, b))) for a, b in adjacent]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def comparison_markdown(comparison: pl.DataFrame, confidence: float = 0.95) -> str:
    lines = [
        "# Paired comparison of ablation methods",
        "",
        "Each seed selects the same neurons for every method, so differences are taken per seed "
        f"and averaged; intervals are two-sided {confidence:.0%} Student t intervals over seeds "
        "(n − 1 degrees of freedom). Top-1 differences are in percentage points (positive: the "
        "first method is better), cross-entropy differences in nats (negative: the first method "
        "is better). Fraction 0 ablates nothing and is excluded from the verdicts. All pairs are "
        "in comparison.csv.",
        "",
    ]
    for model in comparison["model"].unique(maintain_order=True).to_list():
        lines += model_markdown(comparison, model, confidence)
    return "\n".join(lines)


def write_comparison(
    ablation_csv: str | Path, csv: str | Path, markdown: str | Path, confidence: float = 0.95
) -> pl.DataFrame:
    """ablation.csv -> comparison.csv and comparison.md (atomically); returns the table."""
    results = read_csv_table(ablation_csv, TABLE_COLUMNS["ablation.csv"])
    table = compare_methods(results, confidence)
    with atomic_output(csv) as tmp:
        table.write_csv(tmp, float_precision=6)
    with atomic_output(markdown) as tmp:
        tmp.write_text(comparison_markdown(table, confidence))
    return table
