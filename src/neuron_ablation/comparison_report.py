"""The paired comparison's outputs: ``comparison.csv`` and ``comparison.md`` (per model the
claim's verdict, a ranking at 50 % and 90 %, and the adjacent methods at every fraction)."""

from __future__ import annotations

import itertools
from pathlib import Path

import polars as pl

from neuron_ablation import metrics
from neuron_ablation.claim import claim_verdict, percent
from neuron_ablation.comparison import compare_methods, method_order
from neuron_ablation.integrity import TABLE_COLUMNS, read_csv_table, read_sequence_table
from neuron_ablation.io import atomic_output


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
    lines = [f"### Ranking at {' and '.join(percent(f) for f in fractions)}", ""]
    for fraction in fractions:
        for metric in metrics.METRICS:
            order = ranking(comparison, model, metric.name, fraction)
            lines.append(f"- {percent(fraction)}, {metric.label}: {order}")
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
        f"{m.label} − optimal at {percent(f)} [{level} CI]"
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
