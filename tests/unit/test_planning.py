"""The planner on synthetic studies whose variance components are known."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from neuron_ablation import metrics
from neuron_ablation.comparison import compare_methods
from neuron_ablation.intervals import crossed_interval
from neuron_ablation.planning import (
    VarianceComponents,
    cheapest_design,
    expected_halfwidth,
    parse_targets,
    plan_for_run,
    plan_markdown,
    plan_table,
    seeds_to_decide,
    variance_components,
    write_plan,
)

TRUE = {"var_seed": 4.0, "var_sequence": 9.0, "var_residual": 2.25}


def study(
    rng: np.random.Generator, n_seeds: int, n_sequences: int, mu: float = 0.5, **components
) -> np.ndarray:
    """Paired differences [seed, sequence] = mu + seed + sequence + residual."""
    c = {**TRUE, **components}
    return (
        mu
        + rng.normal(0, np.sqrt(c["var_seed"]), (n_seeds, 1))
        + rng.normal(0, np.sqrt(c["var_sequence"]), (1, n_sequences))
        + rng.normal(0, np.sqrt(c["var_residual"]), (n_seeds, n_sequences))
    )


def true_components(n_seeds: int, n_sequences: int) -> VarianceComponents:
    return VarianceComponents(**TRUE, n_seeds=n_seeds, n_sequences=n_sequences)


def halfwidths(rng: np.random.Generator, n_seeds: int, n_sequences: int, reps: int) -> np.ndarray:
    out = []
    for _ in range(reps):
        interval = crossed_interval(study(rng, n_seeds, n_sequences))
        out.append(interval.ci_high - interval.mean)
    return np.array(out)


def test_components_are_recovered_without_bias():
    rng = np.random.default_rng(0)
    estimates = [variance_components(study(rng, 12, 64)) for _ in range(300)]
    for name, truth in TRUE.items():
        values = np.array([getattr(e, name) for e in estimates])
        standard_error = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - truth) < 3 * standard_error + 0.02 * truth, name


def test_components_match_the_interval_the_comparison_reports():
    """Today's design, planned with its own estimated components and no assurance, has the
    comparison's half-width (the same mean squares, truncation and degrees of freedom)."""
    rng = np.random.default_rng(1)
    a = study(rng, 5, 40)
    interval = crossed_interval(a)
    components = variance_components(a)
    predicted = expected_halfwidth(components, 5, 40, assurance=None)
    assert float(predicted) == pytest.approx(interval.ci_high - interval.mean, rel=1e-9)


@pytest.mark.parametrize("target", [1.0, 2.0])
def test_recommended_design_reaches_its_target_in_nine_studies_of_ten(target):
    design = cheapest_design(true_components(3, 32), target)
    assert design is not None and design.halfwidth <= target
    rng = np.random.default_rng(2)
    reached = np.mean(halfwidths(rng, design.seeds, design.sequences, 400) <= target)
    assert reached >= 0.9, (design, reached)


def test_design_planned_from_a_pilot_reaches_the_target():
    """Planned from a pilot's estimates (12 seeds x 64 sequences), as plan.csv does."""
    rng = np.random.default_rng(3)
    design = cheapest_design(variance_components(study(rng, 12, 64)), 1.0)
    assert design is not None
    reached = np.mean(halfwidths(rng, design.seeds, design.sequences, 400) <= 1.0)
    assert reached >= 0.9, (design, reached)


def test_recommended_design_is_the_cheapest_that_reaches_the_target():
    components = true_components(3, 32)
    design = cheapest_design(components, 1.0)
    for seeds in range(2, 201):
        for sequences in range(2, 600):
            if seeds * sequences >= design.cost:
                break
            assert expected_halfwidth(components, seeds, sequences) > 1.0, (seeds, sequences)


def test_seed_noise_is_bought_with_seeds_and_sequence_noise_with_sequences():
    seed_bound = cheapest_design(VarianceComponents(9.0, 0.1, 0.1, n_seeds=3, n_sequences=32), 1.0)
    text_bound = cheapest_design(VarianceComponents(0.1, 9.0, 0.1, n_seeds=3, n_sequences=32), 1.0)
    assert seed_bound.seeds > text_bound.seeds
    assert text_bound.sequences > seed_bound.sequences


def test_seeds_to_decide_a_tie():
    components = true_components(3, 64)
    seeds = seeds_to_decide(components, 1.2)
    assert seeds is not None
    assert expected_halfwidth(components, seeds, 64, assurance=None) < 1.2
    assert expected_halfwidth(components, seeds - 1, 64, assurance=None) >= 1.2
    # The sequences alone (var 9 / 64 sequences) keep the interval wider than 0.3 at any seed count.
    assert seeds_to_decide(components, 0.3) is None


def test_one_seed_has_no_plan_and_seeds_only_data_plans_seeds():
    assert cheapest_design(variance_components(np.ones((1, 10))), 1.0) is None
    seeds_only = variance_components(np.array([[1.0], [3.0], [2.0]]))
    assert seeds_only.var_sequence is None and seeds_only.var_seed == pytest.approx(1.0)
    design = cheapest_design(seeds_only, 1.0)
    assert design.sequences == 1
    assert expected_halfwidth(seeds_only, design.seeds, 1) <= 1.0


def synthetic_run(rng: np.random.Generator, n_seeds: int = 4, n_sequences: int = 16):
    """ablation.csv and sequences.parquet rows of a run where peak is 2 pp better than mean."""
    results, sequences = [], []
    effect = {"mean": 0.0, "peak": 0.02}
    for method, gain in effect.items():
        for seed in range(n_seeds):
            seed_shift = rng.normal(0, 0.01)
            correct = np.clip(
                np.round(40 * (0.4 + gain + seed_shift + rng.normal(0, 0.05, n_sequences))),
                0,
                40,
            )
            loss = rng.uniform(100, 120, n_sequences) - 40 * gain
            for j in range(n_sequences):
                sequences.append(
                    {
                        "model": "m",
                        "method": method,
                        "seed": seed,
                        "fraction": 0.5,
                        "sequence": j,
                        "loss_sum": loss[j],
                        "correct": int(correct[j]),
                        "n": 40,
                    }
                )
            n = 40 * n_sequences
            results.append(
                {
                    "model": "m",
                    "method": method,
                    "seed": seed,
                    "fraction": 0.5,
                    "top1": correct.sum() / n,
                    "loss": loss.sum() / n,
                    "n_tokens": n,
                    "n_ablated": 10,
                }
            )
    return pl.DataFrame(results), pl.DataFrame(sequences)


def test_plan_table_agrees_with_the_comparison():
    results, sequences = synthetic_run(np.random.default_rng(4))
    plan = plan_table(results, sequences)
    comparison = compare_methods(results, sequences=sequences)
    assert len(plan) == len(comparison) == len(metrics.METRICS)
    joined = plan.join(comparison, on=["model", "metric", "fraction", "method_a", "method_b"])
    for row in joined.iter_rows(named=True):
        assert row["mean_diff"] == pytest.approx(row["mean_diff_right"])
        assert row["halfwidth"] == pytest.approx(row["ci_high"] - row["mean_diff_right"])
        assert row["decided"] == row["significant"]
        assert row["target_halfwidth"] == metrics.metric(row["metric"]).decision_halfwidth
        assert row["plan_cost"] == row["plan_seeds"] * row["plan_sequences"]
        assert row["plan_halfwidth"] <= row["target_halfwidth"]
    text = plan_markdown(plan)
    assert "What a decision costs" in text and "peak − mean" in text


def test_fraction_zero_is_not_planned():
    results, sequences = synthetic_run(np.random.default_rng(5))
    zero = results.with_columns(fraction=pl.lit(0.0))
    assert plan_table(zero, sequences.with_columns(fraction=pl.lit(0.0))).is_empty()


def test_plan_for_a_finished_run(tmp_path):
    results, sequences = synthetic_run(np.random.default_rng(6))
    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    results.write_csv(tables / "ablation.csv")
    sequences.write_parquet(tables / "sequences.parquet")
    text = plan_for_run(tmp_path / "results", ["top1=0.5"], csv=tmp_path / "plan.csv")
    written = pl.read_csv(tmp_path / "plan.csv")
    assert written.filter(pl.col("metric") == "top1")["target_halfwidth"].to_list() == [0.5]
    assert "| m | top-1 | 50 % | peak − mean |" in text
    default = write_plan(tables / "ablation.csv", tables / "sequences.parquet", tmp_path / "b.csv")
    tight, loose = (
        frame.filter(pl.col("metric") == "top1")["plan_cost"].item() for frame in (written, default)
    )
    assert tight > loose  # a third of the half-width costs about nine times the evaluations


def test_plan_for_a_missing_run_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="snakemake --cores all"):
        plan_for_run(tmp_path)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("top1", "METRIC=HALFWIDTH"), ("acc=1", "one of top1, loss"), ("top1=x", "not a number")],
)
def test_bad_targets_name_the_allowed_values(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_targets([spec])


def test_an_exact_tie_is_undecided_as_in_the_comparison():
    """Methods that coincide (float noise aside) are a tie with no seeds that could decide it."""
    results, sequences = synthetic_run(np.random.default_rng(7))
    twin = {"results": results, "sequences": sequences}
    for name, frame in twin.items():
        copy = frame.filter(pl.col("method") == "mean").with_columns(method=pl.lit("zero"))
        twin[name] = pl.concat([frame, copy])
    plan = plan_table(twin["results"], twin["sequences"])
    comparison = compare_methods(twin["results"], sequences=twin["sequences"])
    tie = plan.filter((pl.col("method_a") == "mean") & (pl.col("method_b") == "zero"))
    assert tie["decided"].to_list() == [False, False]
    assert tie["seeds_to_decide"].to_list() == [None, None]
    joined = plan.join(comparison, on=["model", "metric", "fraction", "method_a", "method_b"])
    assert (joined["decided"] == joined["significant"]).all()
