"""The evaluation metrics: one registry that scoring, tables, figures and the comparison use.

Imports neither torch nor anything that does, so aggregation and the comparison (which run without
a model) can use it cheaply. A metric is a ratio of per-sequence sums: an evaluation stores, per
scored sequence, the metric's numerator (e.g. ``seq_correct``) and the number of scored
predictions (``seq_n``); the metric is ``sum(numerator) / sum(seq_n)``. Keeping the sums rather
than per-sequence means is what lets the comparison pair two methods sequence by sequence and
still add up exactly to each evaluation's total.

The order of :data:`METRICS` is the order of the ``*_mean``/``*_std`` pairs of the summary, of
the metric blocks of ``table2.csv``/``table2.md``, of the panels of the figures and of every
per-metric list and column group in ``comparison.md``; reordering it changes those artifacts.
``comparison.csv`` sorts its rows by metric *name*, and the metric columns of ``ablation.csv`` are
listed by ``aggregation.COLUMNS`` (in registry order, which a test checks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

COUNT_KEY = "seq_n"
"""The per-sequence list of scored predictions in an evaluation JSON: every metric's denominator."""

SEQUENCE_PREFIX = "seq_"


@dataclass(frozen=True)
class Metric:
    """One metric: where its sums come from, how it is shown, and which way is better."""

    name: str
    """Its key in an evaluation JSON and its column in ``ablation.csv``; the ``metric`` value of
    ``table2.csv`` and ``comparison.csv``."""
    title: str
    """Heading of its block in ``table2.md``."""
    axis_label: str
    """Y axis label of its panel in the figures."""
    label: str
    """Short name in ``comparison.md`` (column headers, rankings, verdicts) and table footnotes."""
    noun: str
    """Its name in running prose (the comparison's introduction)."""
    higher_is_better: bool
    """Whether a larger value is a better model; decides ``better``, verdicts and rankings."""
    numerator: str
    """The per-sequence list in the evaluation JSON that is summed and divided by the summed
    ``seq_n`` (:meth:`accumulate`); its ``sequences.parquet`` column is :attr:`sequence_column`.
    """
    scale: float = 1
    """Shown value per stored value: stored as a share in [0, 1] and shown in percent is 100.
    Means, spreads and paired differences in the tables are in shown units."""
    unit: str = ""
    """Unit of a shown difference, in prose (``percentage points``, ``nats``)."""
    unit_abbreviation: str = ""
    """Unit in the comparison's column headers (``pp``); empty: the header names no unit."""
    decision_halfwidth: float | None = None
    """Default target half-width of a paired difference's 95 % interval, in shown units, for
    which ``plan.csv`` designs the cheapest study (``neuron-ablation plan --target``)."""

    def __post_init__(self) -> None:
        if not self.numerator.startswith(SEQUENCE_PREFIX) or self.numerator == COUNT_KEY:
            raise ValueError(
                f"metric {self.name!r}: numerator must be a per-sequence list "
                f"{SEQUENCE_PREFIX}<name> other than {COUNT_KEY}, not {self.numerator!r}"
            )
        if self.scale <= 0:
            raise ValueError(f"metric {self.name!r}: scale must be positive, not {self.scale!r}")

    @property
    def sequence_column(self) -> str:
        """The numerator's column in ``sequences.parquet`` (``seq_correct`` -> ``correct``)."""
        return self.numerator.removeprefix(SEQUENCE_PREFIX)

    @property
    def direction(self) -> float:
        """+1.0 where higher is better, -1.0 where lower is: ``difference * direction > 0`` means
        the first of two methods did better."""
        return 1.0 if self.higher_is_better else -1.0

    @property
    def header_label(self) -> str:
        """:attr:`label` with the unit abbreviation, as in the comparison's column headers."""
        return f"{self.label} ({self.unit_abbreviation})" if self.unit_abbreviation else self.label

    def accumulate(self, numerators: Sequence[float], counts: Sequence[int]) -> float:
        """The metric (stored units) of per-sequence ``numerators`` over per-sequence ``counts``.

        Summed exactly (``math.fsum``): a total over many sequences does not depend on their
        order, and integer sums (correct predictions) stay exact.
        """
        n = sum(counts)
        if n == 0:
            raise ValueError("no predictions were scored")
        return math.fsum(numerators) / n


METRICS: tuple[Metric, ...] = (
    Metric(
        "top1",
        title="Top-1 accuracy (%)",
        axis_label="top-1 accuracy (%)",
        label="top-1",
        noun="top-1",
        higher_is_better=True,
        numerator="seq_correct",
        scale=100,
        unit="percentage points",
        unit_abbreviation="pp",
        decision_halfwidth=1.5,
    ),
    Metric(
        "loss",
        title="Cross-entropy loss",
        axis_label="cross-entropy loss",
        label="CE",
        noun="cross-entropy",
        higher_is_better=False,
        numerator="seq_loss_sum",
        unit="nats",
        decision_halfwidth=0.2,
    ),
)

if len({m.name for m in METRICS}) != len(METRICS):
    raise ValueError("metric names in METRICS must be unique")

# The helpers below read METRICS when called (no lookup table built at import), and the modules
# that use them refer to ``metrics.METRICS``, so a test can register a metric by replacing it.


def metric(name: str) -> Metric:
    """The metric called ``name``; a ValueError naming the allowed values otherwise."""
    for m in METRICS:
        if m.name == name:
            return m
    raise ValueError(f"unknown metric {name!r}; metrics: {', '.join(names())}")


def names() -> tuple[str, ...]:
    """The metrics' names, in registry order."""
    return tuple(m.name for m in METRICS)


def order() -> dict[str, int]:
    """Each metric's position in the registry, for sorting tables by metric."""
    return {m.name: i for i, m in enumerate(METRICS)}


def directions() -> dict[str, float]:
    """Each metric's :attr:`Metric.direction`, for polars ``replace_strict``."""
    return {m.name: m.direction for m in METRICS}


def totals(sequence_lists: dict[str, Sequence[float]]) -> dict[str, float]:
    """Every metric, in registry order, from an evaluation's per-sequence lists.

    Args:
        sequence_lists: ``seq_n`` and each metric's numerator (the ``seq_*`` keys of an
            evaluation JSON).
    """
    counts = sequence_lists[COUNT_KEY]
    return {m.name: m.accumulate(sequence_lists[m.numerator], counts) for m in METRICS}


# --- an evaluation restricted to its first rows (the token set of eval.sweep) -----------------

SWEEP_KEY = "sweep"
"""The baseline's figures on the sweep rows, when ``eval.sweep`` is set (a :func:`token_set`
record in ``eval/baseline.json``)."""


def first_rows(result: dict[str, Any], items: int | None) -> dict[str, Any]:
    """``result`` (an evaluation JSON with per-sequence lists) restricted to its first ``items``
    rows: every metric, ``n_tokens`` and the lists recomputed from those rows' sums, as if only
    they had been scored; ``result`` without its :data:`SWEEP_KEY` record when ``items`` is
    None.

    Raises:
        ValueError: ``items`` given and ``result`` has no per-sequence lists.
    """
    result = {key: value for key, value in result.items() if key != SWEEP_KEY}
    if items is None:
        return result
    keys = [COUNT_KEY, *(m.numerator for m in METRICS)]
    missing = [key for key in keys if key not in result]
    if missing:
        raise ValueError(
            f"the first {items} rows of a result without per-sequence lists {missing}: rerun it"
        )
    lists = {key: result[key][:items] for key in keys}
    return result | totals(lists) | {"n_tokens": sum(lists[COUNT_KEY])} | lists


def token_set(result: dict[str, Any], items: int | None) -> dict[str, Any]:
    """What ``result`` scores on its first ``items`` rows (None: all): the rows asked for
    (``first_items``), the rows and scored predictions there were (``n_items``, ``n_tokens``),
    and every metric."""
    rows = first_rows(result, items)
    counts = {"first_items": items, "n_items": len(rows[COUNT_KEY]), "n_tokens": rows["n_tokens"]}
    return counts | {name: rows[name] for name in names()}
