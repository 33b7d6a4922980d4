"""A plain verdict on the paper's claim per model, from the paired comparison's table.

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

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from neuron_ablation import metrics
from neuron_ablation.comparison import CLAIM_ORDER, method_order
from neuron_ablation.intervals import TIE_TOLERANCE


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


def percent(fraction: float) -> str:
    return f"{round(fraction * 100):d} %"


def _fractions(values: Sequence[float]) -> str:
    return ", ".join(percent(f) for f in sorted(values))


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
