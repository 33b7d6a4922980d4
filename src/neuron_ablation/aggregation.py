"""Stage 5: evaluation JSONs -> long CSV, per-sequence scores, the paper's Table 2, and one
figure per model.

Spread over seeds is the sample standard deviation (ddof=1). With one seed it is undefined, and so
is the spread of the baseline (one clean evaluation): null (an empty cell) in the CSVs, "–" in
markdown, no band in the figures; never 0.

With ``eval.sweep``, fractions are scored on two token sets (the focus fractions on the whole
evaluation split, the others on its first rows), and the workflow hands each model's clean
baseline (``eval/baseline.json``, which records both) to the tables and the figure: every row
then carries the rows and tokens it was scored on and the clean model's figures on those same
tokens, Table 2's baseline row is the one of its fractions' token set, and the figure draws each
fraction's change from the clean model on its own tokens (docs/methods.md, "Sweep and focus
fractions"). Without baselines every output is as before.
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


BASELINE_PREFIX = "baseline_"
"""``baseline_<metric>``: the clean model's figure on a row's own tokens (stored units)."""


def read_baselines(paths: Iterable[str | Path]) -> pl.DataFrame:
    """One row per token set a clean baseline was scored on: model, ``first_items`` (null for
    the whole evaluation split, else the sweep's rows), ``n_items``, ``n_tokens`` and
    ``baseline_<metric>`` per registered metric (stored units)."""
    from neuron_ablation.metrics import SWEEP_KEY, token_set

    rows = []
    for path in paths:
        result = read_result(path)
        sets = [token_set(result, None)] + ([result[SWEEP_KEY]] if SWEEP_KEY in result else [])
        for figures in sets:
            row = {"model": result["model"], "first_items": figures["first_items"]}
            row |= {key: figures[key] for key in ("n_items", "n_tokens")}
            rows.append(row | {BASELINE_PREFIX + m: float(figures[m]) for m in metrics.names()})
    schema = {"model": pl.String, "first_items": pl.Int64, "n_items": pl.Int64}
    schema |= {"n_tokens": pl.Int64} | dict.fromkeys(map(_baseline, metrics.names()), pl.Float64)
    return pl.DataFrame(rows, schema=schema).unique(["model", "n_tokens"], keep="first")


def _baseline(metric: str) -> str:
    return BASELINE_PREFIX + metric


def with_baselines(results: pl.DataFrame, baselines: pl.DataFrame) -> pl.DataFrame:
    """``results`` with the token set each row was scored on (``first_items``, ``n_items``) and
    the clean model's figures on it (``baseline_<metric>``), matched by model and scored tokens:
    the sweep's rows are a prefix of the split, so equal counts are the same tokens.

    Raises:
        ValueError: a result scored on tokens no baseline of its model was scored on.
    """
    joined = results.join(baselines, on=["model", "n_tokens"], how="left")
    unmatched = joined.filter(pl.col("n_items").is_null())
    if unmatched.height:
        row = unmatched.row(0, named=True)
        sets = baselines.filter(pl.col("model") == row["model"])["n_tokens"].to_list()
        raise ValueError(
            f"{row['model']} {row['method']} seed {row['seed']} fraction {row['fraction']}: "
            f"scored on {row['n_tokens']} tokens, but the clean baseline of {row['model']!r} "
            f"was scored on {sets or 'none'} (rerun it with the run's eval.sweep: snakemake "
            "--cores all --forcerun baseline)"
        )
    clean = [_baseline(name) for name in metrics.names()]
    return joined.select(*results.columns, "first_items", "n_items", *clean)


def read_results(paths: Iterable[str | Path]) -> pl.DataFrame:
    """One row per evaluation JSON (see :func:`read_evaluations`)."""
    return read_evaluations(paths)[0]


def summarise(results: pl.DataFrame) -> pl.DataFrame:
    """Mean and std over seeds per (model, method, fraction): ``<metric>_mean`` and
    ``<metric>_std`` per registered metric (``metrics.METRICS``, in its order), in shown units
    (``Metric.scale``: top-1 in %), then ``n_seeds``; for rows with baselines
    (:func:`with_baselines`) also ``first_items``, ``n_items``, ``n_tokens`` and
    ``baseline_<metric>`` (shown units) before ``n_seeds``."""
    per_metric = []
    for m in metrics.METRICS:
        per_metric += [
            (pl.col(m.name).mean() * m.scale).alias(f"{m.name}_mean"),
            (pl.col(m.name).std(ddof=1) * m.scale).alias(f"{m.name}_std"),
        ]
    if has_baselines(results):  # one token set per (model, fraction)
        per_metric += [pl.col("first_items", "n_items", "n_tokens").first()]
        per_metric += [(pl.col(_baseline(m.name)).first() * m.scale) for m in metrics.METRICS]
    return (
        results.group_by(["model", "method", "fraction"])
        .agg(*per_metric, pl.len().alias("n_seeds"))
        .sort(["model", "method", "fraction"])
    )


def has_baselines(frame: pl.DataFrame) -> bool:
    """Whether ``frame``'s rows carry their token set and clean figures (:func:`with_baselines`,
    or a :func:`summarise` of such rows): a run with ``eval.sweep``."""
    return "first_items" in frame.columns


def table2(summary: pl.DataFrame) -> pl.DataFrame:
    """The paper's Table 2: rows (metric, setting, method), columns mean, std and ``gap`` (the
    method's mean minus optimal's at that setting, where optimal ran) per model; with baselines
    (:func:`has_baselines`) also ``n_seeds``, ``n_items`` and ``n_tokens`` per model, and the
    baseline row(s) of the token set(s) of Table 2's fractions (:func:`clean_rows`)."""
    names = metrics.names()
    pruned = summary.filter(pl.col("fraction").is_in(TABLE2_FRACTIONS)).with_columns(
        setting=(pl.col("fraction") * 100).round(0).cast(pl.Int64).cast(pl.Utf8) + " %"
    )
    # With baselines, the clean row(s) of the token set(s) Table 2's fractions were scored on,
    # and each row's seeds and tokens; else fraction 0's results (the same clean evaluation).
    counts = list(TOKEN_SET_COUNTS) if has_baselines(summary) else []
    baseline = clean_rows(pruned) if counts else _fraction0_rows(summary)
    columns = ["model", "setting", "method"]
    columns += [f"{name}_{stat}" for name in names for stat in ("mean", "std")]
    long = pl.concat([baseline.select(*columns, *counts), pruned.select(*columns, *counts)])
    frames = []
    for metric in names:
        frame = long.select(
            pl.lit(metric).alias("metric"),
            "setting",
            "method",
            "model",
            pl.col(f"{metric}_mean").alias("mean"),
            pl.col(f"{metric}_std").alias("std"),
            *counts,
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
        on="model", index=["metric", "setting", "method"], values=["mean", "std", "gap", *counts]
    )
    order = {"baseline": 0, SWEEP_BASELINE: 1, "50 %": 2, "90 %": 3}
    return wide.sort(
        [
            pl.col("metric").replace_strict(metrics.order(), return_dtype=pl.Int64),
            pl.col("setting").replace_strict(order, default=9, return_dtype=pl.Int64),
            "method",
        ]
    )


TOKEN_SET_COUNTS = ("n_seeds", "n_items", "n_tokens")
"""Table 2's counts per row and model, with baselines: seeds, evaluation rows and tokens."""
SWEEP_BASELINE = "baseline (sweep rows)"


def _fraction0_rows(summary: pl.DataFrame) -> pl.DataFrame:
    """Table 2's baseline row per model without baselines: the (clean) fraction-0 results."""
    names = metrics.names()
    return (
        summary.filter(pl.col("fraction") == 0.0)
        .group_by("model")
        .agg(*(pl.col(f"{name}_mean").first() for name in names))
        .with_columns(
            setting=pl.lit("baseline"),
            method=pl.lit(""),
            **{f"{name}_std": pl.lit(None, pl.Float64) for name in names},
        )
    )


def clean_rows(summary: pl.DataFrame) -> pl.DataFrame:
    """One clean row per (model, token set) of ``summary``'s rows (a :func:`summarise` frame
    with baselines): the clean model's figures on those tokens, no spread (one evaluation),
    setting "baseline" for the whole split and :data:`SWEEP_BASELINE` for the sweep's rows."""
    names = metrics.names()
    return (
        summary.group_by("model", "first_items", "n_items", "n_tokens")
        .agg(*(pl.col(_baseline(name)).first().alias(f"{name}_mean") for name in names))
        .with_columns(
            setting=pl.when(pl.col("first_items").is_null())
            .then(pl.lit("baseline"))
            .otherwise(pl.lit(SWEEP_BASELINE)),
            method=pl.lit(""),
            n_seeds=pl.lit(None, pl.UInt32),
            **{f"{name}_std": pl.lit(None, pl.Float64) for name in names},
        )
        .sort("model", "n_tokens")
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
    if any(column.startswith("n_tokens_") for column in table.columns):
        lines += (
            ["", token_set_note(table, models)] if lines[-1] else [token_set_note(table, models)]
        )
    return "\n".join(lines)


def token_set_note(table: pl.DataFrame, models: list[str]) -> str:
    """What each setting of Table 2 was scored on, per model: seeds, rows and tokens (a run
    with ``eval.sweep`` scores fractions on two token sets; each is compared with the clean
    model on its own)."""
    first = table.filter(pl.col("metric") == metrics.METRICS[0].name)
    parts = []
    for model in models:
        scored = []  # (setting, method, what it was scored on)
        for row in first.iter_rows(named=True):
            if row.get(f"n_tokens_{model}") is None:
                continue
            seeds = row[f"n_seeds_{model}"]
            what = "one clean evaluation" if seeds is None else f"{seeds} seed" + "s" * (seeds > 1)
            where = f"{row[f'n_items_{model}']} rows, {row[f'n_tokens_{model}']} tokens"
            scored.append((row["setting"], row["method"], f"{what} on {where}"))
        # A setting whose methods all share seeds and tokens is named once, else per method.
        shared = {s for s, _, _ in scored if len({w for t, _, w in scored if t == s}) == 1}
        sets: dict[str, list[str]] = {}
        for setting, method, where in scored:
            label = setting if setting in shared else f"{setting} {method}"
            if label not in sets.setdefault(where, []):
                sets[where].append(label)
        parts.append(f"{model}: " + "; ".join(f"{', '.join(v)}: {k}" for k, v in sets.items()))
    return "Scored on: " + ". ".join(parts) + "."


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
    ablated, one line per method, a band of +- one std.

    With baselines (a :func:`summarise` frame of :func:`with_baselines` rows) each point is
    instead the change from the clean model on that fraction's own tokens, so that fractions
    scored on the sweep's first rows (circles) and on the whole split (diamonds) compare point
    to point; the caption names each token set's clean figures and each fraction's seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    changes = has_baselines(summary)
    data = summary.filter(pl.col("model") == model)
    panels = metrics.METRICS
    height = 4.6 if changes else 4  # room for the caption
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), height), constrained_layout=True, squeeze=False
    )
    axes = axes[0]
    for (method,), group in sorted(data.group_by("method"), key=lambda g: g[0][0]):
        group = group.sort("fraction")
        x = group["fraction"].to_numpy() * 100
        whole = group["first_items"].is_null().to_numpy() if changes else None
        for ax, metric in zip(axes, panels, strict=True):
            mean = group[f"{metric.name}_mean"]
            mean = (mean - group[_baseline(metric.name)] if changes else mean).to_numpy()
            std = group[f"{metric.name}_std"].to_numpy()
            if changes:
                (line,) = ax.plot(x, mean, label=method)
                for where, marker in ((~whole, "o"), (whole, "D")):
                    ax.plot(x[where], mean[where], marker, color=line.get_color(), markersize=4)
            else:
                (line,) = ax.plot(x, mean, marker="o", markersize=3, label=method)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    for ax, metric in zip(axes, panels, strict=True):
        if changes:
            ax.axhline(0.0, color="black", linewidth=0.8)
            unit = metric.unit_abbreviation or metric.unit
            ax.set_ylabel(f"{metric.label} change from clean, same tokens ({unit})")
        else:
            ax.set_ylabel(metric.axis_label)
    for ax in axes:
        ax.set_xlabel("attention pre-out neurons ablated (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(title="method")
    fig.suptitle(f"{model}: random ablation of attention neurons (mean ± std over seeds)")
    if changes:
        fig.text(0.5, 0, token_set_caption(data), ha="center", va="bottom", fontsize=7)
        fig.get_layout_engine().set(rect=(0, 0.08, 1, 0.92))
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def token_set_caption(summary: pl.DataFrame) -> str:
    """The figure's caption: per token set (diamonds: the whole split, circles: the sweep's
    first rows), its clean figures and each fraction's seeds."""
    lines = []
    for key, group in sorted(
        summary.group_by("first_items", "n_items", "n_tokens"), key=lambda g: g[0][2], reverse=True
    ):
        _, n_items, n_tokens = key
        marker = "diamonds, the whole split" if key[0] is None else "circles, the sweep's rows"
        clean = ", ".join(
            f"{m.label} {group[_baseline(m.name)][0]:.2f}" + (" %" if m.scale == 100 else "")
            for m in metrics.METRICS
        )
        seeds: dict[int, list[str]] = {}
        for fraction, n in group.select("fraction", "n_seeds").unique().sort("fraction").rows():
            seeds.setdefault(n, []).append(f"{fraction * 100:g} %")
        seeded = "; ".join(f"{', '.join(f)}: {n} seed{'s' * (n > 1)}" for n, f in seeds.items())
        lines.append(f"{marker}: {n_items} rows, {n_tokens} tokens (clean model {clean}); {seeded}")
    return "\n".join(lines)


def write_tables(
    eval_files: Iterable[str | Path], tables_dir: Path, baselines: Sequence[str | Path] = ()
) -> None:
    """Write ablation.csv, sequences.parquet, table2.csv and table2.md (each atomically).

    ``sequences.parquet`` records every result it was made from (path and identity, Parquet
    metadata ``provenance``), so ``verify`` reports a result deleted or replaced since; results
    without a record of their own (written by hand) are listed with the identity None. With
    ``baselines`` (each model's ``eval/baseline.json``) every row carries its token set and the
    clean figures on it (:func:`with_baselines`), and they are recorded as inputs too."""
    from neuron_ablation.provenance import canonical_json, input_record, make_record

    eval_files = list(eval_files)
    results, sequences = read_evaluations(eval_files)
    if baselines:
        results = with_baselines(results, read_baselines(baselines))
    inputs = {str(path): input_record(path, required=False) for path in [*eval_files, *baselines]}
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


def write_figure(
    eval_files: Iterable[str | Path], out: Path, baselines: Sequence[str | Path] = ()
) -> None:
    """Plot one model's results (all files must belong to one model); with its ``baselines``
    (``eval/baseline.json``), as changes from the clean model on each fraction's tokens."""
    results = read_results(eval_files)
    if baselines:
        results = with_baselines(results, read_baselines(baselines))
    summary = summarise(results)
    models = summary["model"].unique().to_list()
    if len(models) != 1:
        raise ValueError(f"expected results of one model, got {models}")
    plot_model(summary, models[0], out)
