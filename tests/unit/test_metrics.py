"""The metric registry: one declaration per metric that scoring, tables and comparison follow."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import polars as pl
import pytest

from neuron_ablation import aggregation, comparison, comparison_report, integrity, metrics
from neuron_ablation.metrics import Metric


def test_registry_order_and_lookup():
    assert metrics.names() == ("top1", "loss")
    assert metrics.order() == {"top1": 0, "loss": 1}
    assert metrics.directions() == {"top1": 1.0, "loss": -1.0}
    top1, loss = metrics.METRICS
    assert metrics.metric("top1") is top1 and metrics.metric("loss") is loss
    assert (top1.scale, top1.higher_is_better, top1.numerator) == (100, True, "seq_correct")
    assert (loss.scale, loss.higher_is_better, loss.numerator) == (1, False, "seq_loss_sum")
    assert (top1.sequence_column, loss.sequence_column) == ("correct", "loss_sum")
    assert (top1.header_label, loss.header_label) == ("top-1 (pp)", "CE")
    with pytest.raises(ValueError, match="unknown metric 'top5'; metrics: top1, loss"):
        metrics.metric("top5")


def test_a_metric_is_a_ratio_of_per_sequence_lists():
    with pytest.raises(ValueError, match="numerator must be a per-sequence list"):
        Metric("x", "X", "x", "x", "x", True, numerator="correct")
    with pytest.raises(ValueError, match="other than seq_n"):
        Metric("x", "X", "x", "x", "x", True, numerator="seq_n")
    with pytest.raises(ValueError, match="scale must be positive"):
        Metric("x", "X", "x", "x", "x", True, numerator="seq_x", scale=0)
    with pytest.raises(ValueError, match="no predictions were scored"):
        metrics.metric("loss").accumulate([], [])


def test_the_registry_imports_no_torch():
    code = "import sys, neuron_ablation.metrics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_every_artifact_schema_carries_exactly_the_registered_metrics():
    names = list(metrics.names())
    # ablation.csv: one column per metric, in registry order (what aggregation writes and
    # integrity requires)
    assert [c for c in aggregation.COLUMNS if c in names] == names
    assert [c for c in integrity.TABLE_COLUMNS["ablation.csv"] if c in names] == names
    assert set(names) <= set(integrity.RESULT_KEYS)  # a result JSON must carry each metric
    # every numerator is one of the per-sequence lists integrity checks and aggregation reads,
    # under the column name the comparison reads from sequences.parquet
    for m in metrics.METRICS:
        assert m.numerator in integrity.SEQUENCE_KEYS
        assert aggregation.SEQUENCE_FIELDS[m.numerator] == m.sequence_column
        assert m.sequence_column in integrity.SEQUENCE_TABLE_COLUMNS
    assert metrics.COUNT_KEY in integrity.SEQUENCE_KEYS


def test_accumulation_matches_score_on_a_hand_made_example():
    torch = pytest.importorskip("torch")
    from neuron_ablation.scoring import Score

    # Two sequences: sequence 0 has predictions 0 and 1, sequence 1 prediction 2 (and 3, which
    # is ignored). Class 0 is the argmax everywhere.
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    targets = torch.tensor([0, 1, 0, -100])
    sequence = torch.tensor([0, 0, 1, 1])
    score = Score()
    score.add(logits, targets, sequence, n_sequences=2)
    result = score.result()

    ce = [math.log1p(math.exp(-2)), 2 + math.log1p(math.exp(-2)), math.log1p(math.exp(-1))]
    assert result["seq_correct"] == [1, 1] and result["seq_n"] == [2, 1]
    assert result["seq_loss_sum"] == pytest.approx([ce[0] + ce[1], ce[2]], rel=1e-6)
    assert result["top1"] == 2 / 3
    assert result["loss"] == pytest.approx(sum(ce) / 3, rel=1e-6)
    assert result["n_tokens"] == 3
    # Score reports every registered metric, each the registry's accumulation of its numerator
    assert [key for key in result if key in metrics.names()] == list(metrics.names())
    for m in metrics.METRICS:
        assert result[m.name] == m.accumulate(result[m.numerator], result[metrics.COUNT_KEY])
    assert metrics.totals(result) == {m.name: result[m.name] for m in metrics.METRICS}


def results_frame(extra: dict[str, float] | None = None) -> pl.DataFrame:
    """Two methods, two seeds, fractions 0, 0.5 and 0.9 of model ``m``; zero worse than mean."""
    rows = []
    for method, offset in (("zero", 0.0), ("mean", 0.05)):
        for seed in (0, 1):
            for fraction in (0.0, 0.5, 0.9):
                top1 = 0.5 - (0.3 - offset) * fraction + 0.01 * seed
                row = {
                    "model": "m",
                    "method": method,
                    "seed": seed,
                    "fraction": fraction,
                    "top1": top1,
                    "loss": 3.0 - 2.0 * top1,
                    "n_tokens": 100,
                    "n_ablated": int(fraction * 64),
                }
                rows.append(row | {name: f(top1) for name, f in (extra or {}).items()})
    return pl.DataFrame(rows)


def test_aggregation_and_comparison_cover_exactly_the_registered_metrics():
    results = results_frame()
    summary = aggregation.summarise(results)
    stats = [c for c in summary.columns if c.endswith(("_mean", "_std"))]
    assert stats == [f"{n}_{s}" for n in metrics.names() for s in ("mean", "std")]
    table = aggregation.table2(summary)
    assert table["metric"].unique(maintain_order=True).to_list() == list(metrics.names())
    compared = comparison.compare_methods(results)
    assert compared["metric"].unique().sort().to_list() == sorted(metrics.names())  # by name
    best = comparison.best_methods(results)
    assert set(best["metric"]) == set(metrics.names())


def test_shown_text_is_unchanged():
    """The sentences built from the registry read as they did when they were written by hand."""
    results = results_frame()
    markdown = comparison_report.comparison_markdown(comparison.compare_methods(results))
    assert (
        "Top-1 differences are in percentage points (positive: the first method is better), "
        "cross-entropy differences in nats (negative: the first method is better). Fraction 0 "
        "ablates nothing and is excluded from the verdicts."
    ) in markdown
    assert "| fraction | best top-1 | best CE | mean − zero top-1 (pp) [95% CI] |" in markdown
    assert "- 50 %, top-1: mean > zero" in markdown and "- 50 %, CE: mean > zero" in markdown
    summary = aggregation.summarise(results.vstack(results_frame().with_columns(
        method=pl.lit("optimal")
    )))  # fmt: skip
    text = aggregation.table2_markdown(aggregation.table2(summary), ["m"])
    assert "### Top-1 accuracy (%)" in text and "### Cross-entropy loss" in text
    assert "(top-1 in percentage points, CE in nats)" in text


ERROR = Metric(
    "error",
    title="Error rate (%)",
    axis_label="error rate (%)",
    label="err",
    noun="error",
    higher_is_better=False,
    numerator="seq_wrong",
    scale=100,
    unit="percentage points",
    unit_abbreviation="pp",
)


def test_a_registered_metric_flows_through_tables_and_comparison(monkeypatch):
    """One more registry entry (plus its column) is all summarise, table2 and compare need."""
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, ERROR))
    results = results_frame({"error": lambda top1: 1 - top1})

    summary = aggregation.summarise(results)
    assert {"error_mean", "error_std"} <= set(summary.columns)
    row = summary.filter((pl.col("method") == "zero") & (pl.col("fraction") == 0.5)).row(
        0, named=True
    )
    assert row["error_mean"] == pytest.approx(100 - row["top1_mean"])  # scaled to percent

    table = aggregation.table2(summary)
    assert table["metric"].unique(maintain_order=True).to_list() == ["top1", "loss", "error"]
    text = aggregation.table2_markdown(table, ["m"])
    assert "### Error rate (%)" in text.split("### Cross-entropy loss")[1]
    assert "| 50 % | zero | 64.50 ± 0.71 |" in text.split("### Error rate (%)")[1]

    compared = comparison.compare_methods(results)
    pair = compared.filter((pl.col("metric") == "error") & (pl.col("fraction") == 0.9))
    pair = pair.row(0, named=True)
    assert (pair["method_a"], pair["method_b"]) == ("mean", "zero")
    assert pair["mean_diff"] == pytest.approx(-4.5)  # 0.05 * 0.9 in percentage points
    assert pair["better"] == "mean"  # lower error is better
    markdown = comparison_report.comparison_markdown(compared)
    assert "best err" in markdown and "mean − zero err (pp)" in markdown
    assert "error differences in percentage points (negative: the first method is better)" in (
        markdown
    )
    assert "- 90 %, err: mean > zero" in markdown

    # per-sequence contributions come from the numerator's column of sequences.parquet
    sequences = pl.DataFrame(
        [
            {"method": method, "seed": seed, "sequence": j, "n": 10, "correct": 5, "loss_sum": 1.0}
            | {"wrong": wrong[j]}
            for method, wrong in (("zero", (4, 6)), ("mean", (3, 5)))
            for seed in (0, 1)
            for j in range(2)
        ]
    )
    found = comparison.contributions(results.filter(pl.col("fraction") == 0.5), sequences)
    assert found["zero"]["error"][0].tolist() == pytest.approx([40.0, 60.0])  # 100 * 2 * w / 20


def test_an_unregistered_metric_is_not_shown():
    results = results_frame({"error": lambda top1: 1 - top1})
    assert "error_mean" not in aggregation.summarise(results).columns
    assert "error" not in set(comparison.compare_methods(results)["metric"])


def test_metrics_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.metric("top1").scale = 1  # type: ignore[misc]


def test_first_rows_are_scored_as_if_only_they_had_been():
    result = {"top1": 0.5, "loss": 2.5, "n_tokens": 40, "seq_correct": [6, 5, 7, 2],
              "seq_loss_sum": [10.0, 20.0, 30.0, 40.0], "seq_n": [10, 10, 10, 10],
              "model": "m", "sweep": {"first_items": 2}}  # fmt: skip
    first = metrics.first_rows(result, 2)
    assert (first["top1"], first["loss"], first["n_tokens"]) == (0.55, 1.5, 20)
    assert (first["seq_n"], first["model"]) == ([10, 10], "m")
    assert "sweep" not in first and "sweep" not in metrics.first_rows(result, None)
    assert metrics.token_set(result, 9) == {"first_items": 9, "n_items": 4, "n_tokens": 40,
                                            "top1": 0.5, "loss": 2.5}  # fmt: skip
    with pytest.raises(ValueError, match="without per-sequence lists"):
        metrics.first_rows({"top1": 0.5, "loss": 2.5, "n_tokens": 40}, 2)


def test_a_baseline_whose_sweep_figures_disagree_with_its_rows_is_damaged(tmp_path):
    from neuron_ablation.io import write_json

    lists = {"seq_correct": [6, 5, 7, 2], "seq_loss_sum": [10.0, 20.0, 30.0, 40.0],
             "seq_n": [10, 10, 10, 10]}  # fmt: skip
    clean = {"top1": 0.5, "loss": 2.5, "n_tokens": 40, "n_ablated": 0, **lists}
    sweep = {"first_items": 2, "n_items": 2, "n_tokens": 20, "top1": 0.55, "loss": 1.5}
    write_json(tmp_path / "baseline.json", clean | {"sweep": sweep})
    assert integrity.read_result(tmp_path / "baseline.json")["sweep"] == sweep
    for damage in ({"top1": 0.5}, {"n_tokens": 40}, {"first_items": 0}):
        write_json(tmp_path / "baseline.json", clean | {"sweep": sweep | damage})
        with pytest.raises(integrity.DamagedArtifact, match="sweep"):
            integrity.read_result(tmp_path / "baseline.json")
