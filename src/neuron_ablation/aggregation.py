"""Stage 5: evaluation JSONs -> long CSV, per-sequence scores, the paper's Table 2, and one
figure per model.

Spread over seeds is the sample standard deviation (ddof=1). With one seed it is undefined, and so
is the spread of the baseline (one clean evaluation): null (an empty cell) in the CSVs, "–" in
markdown, no band in the figures; never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from neuron_ablation import metrics
from neuron_ablation.integrity import read_result
from neuron_ablation.io import atomic_output

TABLE2_FRACTIONS = (0.5, 0.9)
KEYS = ["model", "method", "seed", "fraction"]
COLUMNS = [*KEYS, *metrics.names(), "n_tokens", "n_ablated"]
"""ablation.csv: what a result is of, its metrics, what was scored and ablated."""
SEQUENCE_FIELDS = {"seq_loss_sum": "loss_sum", "seq_correct": "correct", "seq_n": "n"}


def read_evaluations(paths: Iterable[str | Path]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(one row per evaluation JSON, one row per evaluated sequence of each).

    Model, method, seed and fraction are read from each result (the evaluate command writes
    them), never from its path. The second frame has the columns model, method, seed,
    fraction, sequence (0-based, evaluation-file order), loss_sum, correct and n; it is empty
    for results written without per-sequence lists.
    """
    rows, sequences = [], []
    for path in paths:
        result = read_result(path)
        missing = [key for key in KEYS if key not in result]
        if missing:
            raise ValueError(
                f"{path}: not an evaluation result of one (model, method, seed, fraction): "
                f"{missing} missing (results written before they carried them: rerun the "
                "evaluations, snakemake --cores all --forcerun evaluate evaluate_optimal)"
            )
        keys = {
            "model": result["model"],
            "method": result["method"],
            "seed": int(result["seed"]),
            "fraction": float(result["fraction"]),
        }
        rows.append(keys | {key: result[key] for key in COLUMNS[4:]})
        if all(field in result for field in SEQUENCE_FIELDS):
            frame = pl.DataFrame(
                {name: result[field] for field, name in SEQUENCE_FIELDS.items()},
                schema={"loss_sum": pl.Float64, "correct": pl.Int64, "n": pl.Int64},
            )
            frame = frame.with_columns(
                *(pl.lit(value).alias(key) for key, value in keys.items()),
                sequence=pl.int_range(pl.len(), dtype=pl.Int64),
            )
            sequences.append(frame)
    results = pl.DataFrame(rows).select(COLUMNS).sort(KEYS)
    columns = [*KEYS, "sequence", "loss_sum", "correct", "n"]
    per_sequence = (
        pl.concat(sequences).select(columns).sort([*KEYS, "sequence"])
        if sequences
        else pl.DataFrame(schema=dict.fromkeys(columns, pl.Float64)).select(columns)
    )
    return results, per_sequence


def read_results(paths: Iterable[str | Path]) -> pl.DataFrame:
    """One row per evaluation JSON (see :func:`read_evaluations`)."""
    return read_evaluations(paths)[0]


def summarise(results: pl.DataFrame) -> pl.DataFrame:
    """Mean and std over seeds per (model, method, fraction): ``<metric>_mean`` and
    ``<metric>_std`` per registered metric (``metrics.METRICS``, in its order), in shown units
    (``Metric.scale``: top-1 in %), then ``n_seeds``."""
    per_metric = []
    for m in metrics.METRICS:
        per_metric += [
            (pl.col(m.name).mean() * m.scale).alias(f"{m.name}_mean"),
            (pl.col(m.name).std(ddof=1) * m.scale).alias(f"{m.name}_std"),
        ]
    return (
        results.group_by(["model", "method", "fraction"])
        .agg(*per_metric, pl.len().alias("n_seeds"))
        .sort(["model", "method", "fraction"])
    )


def table2(summary: pl.DataFrame) -> pl.DataFrame:
    """The paper's Table 2: rows (metric, setting, method), columns mean, std and ``gap`` (the
    method's mean minus optimal's at that setting, where optimal ran) per model."""
    names = metrics.names()
    baseline = (
        summary.filter(pl.col("fraction") == 0.0)
        .group_by("model")
        .agg(*(pl.col(f"{name}_mean").first() for name in names))
        .with_columns(
            setting=pl.lit("baseline"),
            method=pl.lit(""),
            **{f"{name}_std": pl.lit(None, pl.Float64) for name in names},
        )
    )
    pruned = summary.filter(pl.col("fraction").is_in(TABLE2_FRACTIONS)).with_columns(
        setting=(pl.col("fraction") * 100).round(0).cast(pl.Int64).cast(pl.Utf8) + " %"
    )
    columns = ["model", "setting", "method"]
    columns += [f"{name}_{stat}" for name in names for stat in ("mean", "std")]
    long = pl.concat([baseline.select(columns), pruned.select(columns)])
    frames = []
    for metric in names:
        frame = long.select(
            pl.lit(metric).alias("metric"),
            "setting",
            "method",
            "model",
            pl.col(f"{metric}_mean").alias("mean"),
            pl.col(f"{metric}_std").alias("std"),
        )
        frames.append(frame)
    stacked = pl.concat(frames)
    optimal = stacked.filter(pl.col("method") == "optimal").select(
        "metric", "setting", "model", pl.col("mean").alias("optimal")
    )
    stacked = stacked.join(optimal, on=["metric", "setting", "model"], how="left").with_columns(
        gap=pl.when(pl.col("method").is_in(["", "optimal"]))
        .then(None)
        .otherwise(pl.col("mean") - pl.col("optimal"))
    )
    wide = stacked.pivot(
        on="model", index=["metric", "setting", "method"], values=["mean", "std", "gap"]
    )
    order = {"baseline": 0, "50 %": 1, "90 %": 2}
    return wide.sort(
        [
            pl.col("metric").replace_strict(metrics.order(), return_dtype=pl.Int64),
            pl.col("setting").replace_strict(order, default=9, return_dtype=pl.Int64),
            "method",
        ]
    )


def table2_markdown(table: pl.DataFrame, models: list[str]) -> str:
    """Mean ± std over seeds per model; with optimal, each method's gap to it in brackets."""
    lines = []
    for metric in metrics.METRICS:
        lines += [f"### {metric.title}", "", "| | | " + " | ".join(models) + " |"]
        lines.append("|---|---|" + "---|" * len(models))
        for row in table.filter(pl.col("metric") == metric.name).iter_rows(named=True):
            spread = row["setting"] != "baseline"  # one clean evaluation: no spread to show
            cells = [
                _cell(row.get(f"mean_{m}"), row.get(f"std_{m}"), row.get(f"gap_{m}"), spread)
                for m in models
            ]
            lines.append(f"| {row['setting']} | {row['method']} | " + " | ".join(cells) + " |")
        lines.append("")
    if table.height == 0:
        shown = ", ".join(f"{f * 100:.0f} %" for f in TABLE2_FRACTIONS)
        lines.append(
            f"No rows: Table 2 shows the baseline (fraction 0) and fractions {shown}, and none of "
            "them was run. Every result is in ablation.csv."
        )
    if any(table[c].is_not_null().any() for c in table.columns if c.startswith("gap_")):
        units = ", ".join(f"{m.label} in {m.unit}" for m in metrics.METRICS)
        lines.append(
            "Mean ± sample std over seeds (– where one seed leaves it undefined); [Δ] is the "
            f"method's mean minus optimal's at the same setting ({units}); - where a method was "
            "not run. Intervals: comparison.md."
        )
    return "\n".join(lines)


UNDEFINED = "–"
NOT_RUN = "-"


def _cell(
    mean: float | None, std: float | None, gap: float | None = None, spread: bool = True
) -> str:
    """``mean ± std [gap]``: "–" for an undefined spread (one seed), "-" for a method not run."""
    if mean is None:
        return NOT_RUN
    cell = f"{mean:.2f}"
    if spread:
        cell += f" ± {UNDEFINED if std is None else f'{std:.2f}'}"
    return cell + ("" if gap is None else f" [{gap:+.2f}]")


def plot_model(summary: pl.DataFrame, model: str, out: Path) -> None:
    """Each metric (a panel per ``metrics.METRICS`` entry, in its order) against fraction
    ablated, one line per method, a band of +- one std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = summary.filter(pl.col("model") == model)
    panels = metrics.METRICS
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), 4), constrained_layout=True, squeeze=False
    )
    axes = axes[0]
    for (method,), group in sorted(data.group_by("method"), key=lambda g: g[0][0]):
        group = group.sort("fraction")
        x = group["fraction"].to_numpy() * 100
        for ax, metric in zip(axes, panels, strict=True):
            mean = group[f"{metric.name}_mean"].to_numpy()
            std = group[f"{metric.name}_std"].to_numpy()
            (line,) = ax.plot(x, mean, marker="o", markersize=3, label=method)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    for ax, metric in zip(axes, panels, strict=True):
        ax.set_ylabel(metric.axis_label)
    for ax in axes:
        ax.set_xlabel("attention pre-out neurons ablated (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(title="method")
    fig.suptitle(f"{model}: random ablation of attention neurons (mean ± std over seeds)")
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_tables(eval_files: Iterable[str | Path], tables_dir: Path) -> None:
    """Write ablation.csv, sequences.parquet, table2.csv and table2.md (each atomically).

    ``sequences.parquet`` records every result it was made from (path and identity, Parquet
    metadata ``provenance``), so ``verify`` reports a result deleted or replaced since; results
    without a record of their own (written by hand) are listed with the identity None."""
    from neuron_ablation.provenance import canonical_json, input_record, make_record

    eval_files = list(eval_files)
    results, sequences = read_evaluations(eval_files)
    inputs = {str(path): input_record(path, required=False) for path in eval_files}
    check_one_model_identity(eval_files)
    provenance = canonical_json(make_record(inputs, {}))
    table = table2(summarise(results))
    models = results["model"].unique(maintain_order=True).to_list()
    with atomic_output(tables_dir / "ablation.csv") as tmp:
        results.write_csv(tmp)
    with atomic_output(tables_dir / "sequences.parquet") as tmp:
        sequences.write_parquet(tmp, metadata={"provenance": provenance})
    with atomic_output(tables_dir / "table2.csv") as tmp:
        table.write_csv(tmp)
    with atomic_output(tables_dir / "table2.md") as tmp:
        tmp.write_text(table2_markdown(table, models))


def check_one_model_identity(eval_files: Sequence[str | Path]) -> None:
    """Results of one model name must come from one model (the digest of its files): a result
    of other weights, put in place, would mix two models in one row of the tables."""
    from neuron_ablation.provenance import ProvenanceMismatch, read_provenance

    first: dict[str, tuple[str, str]] = {}
    for path in eval_files:
        record = read_provenance(path) or {}
        model_id = record.get("inputs", {}).get("model", {}).get("id")
        name = read_result(path)["model"]
        seen = first.setdefault(name, (model_id, str(path)))
        if model_id != seen[0]:
            raise ProvenanceMismatch(
                path,
                f"its provenance says inputs.model = {model_id!r}, but {seen[1]} (model "
                f"{name!r} too) says {seen[0]!r}",
            )


def write_figure(eval_files: Iterable[str | Path], out: Path) -> None:
    """Plot one model's results (all files must belong to one model)."""
    summary = summarise(read_results(eval_files))
    models = summary["model"].unique().to_list()
    if len(models) != 1:
        raise ValueError(f"expected results of one model, got {models}")
    plot_model(summary, models[0], out)
