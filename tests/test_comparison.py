"""Paired comparison: t quantiles, paired intervals, best methods, the verdict on the claim."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from neuron_ablation import comparison
from neuron_ablation.cli import main

# Two-sided 95 % and 99 % critical values of Student's t (standard tables).
T_TABLE = [(0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 4, 2.7764), (0.975, 30, 2.0423)]
T_TABLE += [(0.995, 3, 5.8409), (0.975, 1000, 1.9623), (0.025, 5, -2.5706)]


@pytest.mark.parametrize(("p", "df", "expected"), T_TABLE)
def test_t_quantile_matches_tables(p, df, expected):
    assert comparison.t_quantile(p, df) == pytest.approx(expected, abs=1e-4)


def test_t_cdf_inverts_quantile():
    for df in (1, 3, 17):
        for p in (0.6, 0.9, 0.999):
            assert comparison.t_cdf(comparison.t_quantile(p, df), df) == pytest.approx(p)


def test_paired_difference():
    diff = comparison.paired_difference([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)  # sd 1, t(0.975, 2)
    assert diff.mean == 2.0
    assert diff.ci_low == pytest.approx(2 - half, rel=1e-6)
    assert diff.ci_high == pytest.approx(2 + half, rel=1e-6)
    assert diff.significant is False
    single = comparison.paired_difference([0.5])
    assert single.ci_low is None and single.significant is None


def synthetic_results(
    offsets: dict[str, float],
    seeds=(0, 1, 2),
    fractions=(0.0, 0.5, 0.9),
    model: str = "m",
    noise: float = 0.001,
) -> pl.DataFrame:
    """Top-1 = clean - drop * fraction + offset[method] * fraction + seed effect (+ noise).

    Seed effects are large (the seed chooses the neurons) and shared by all methods of a seed,
    so only a paired comparison resolves the small method offsets.
    """
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        seed_effect = rng.normal(0, 0.05)
        for fraction in fractions:
            for method, offset in offsets.items():
                top1 = 0.5 - 0.3 * fraction + (offset + seed_effect) * fraction
                top1 += rng.normal(0, noise) * fraction
                rows.append(
                    {
                        "model": model,
                        "method": method,
                        "seed": seed,
                        "fraction": fraction,
                        "top1": top1,
                        "loss": 3.0 - 2.0 * top1,
                        "n_tokens": 100,
                        "n_ablated": int(fraction * 64),
                    }
                )
    return pl.DataFrame(rows)


CLAIM_HOLDS = {"peak": 0.02, "mean": 0.01, "zero": 0.0, "resample-tokens": -0.2}


def test_differences_are_paired_by_seed():
    table = comparison.compare_methods(synthetic_results(CLAIM_HOLDS))
    row = table.filter(
        (pl.col("metric") == "top1")
        & (pl.col("fraction") == 0.5)
        & (pl.col("method_a") == "peak")
        & (pl.col("method_b") == "mean")
    ).row(0, named=True)
    assert row["n_seeds"] == 3 and row["seeds"] == "0 1 2"
    assert row["mean_diff"] == pytest.approx(0.5, abs=0.2)  # 0.01 * 0.5 in percentage points
    # Seed effects (sd 2.5 pp here) cancel: the interval is far narrower than they are.
    assert row["ci_high"] - row["ci_low"] < 0.5
    assert row["better"] == "peak" and row["significant"] is True
    assert len(row["diffs"].split()) == 3


def test_cancelling_seed_differences_are_an_exact_tie():
    # top-1 = correct / 152 per seed; peak - mean is +1, -1, 0 positions: float noise, not 2e-15 pp
    counts = {"peak": (45, 40, 39), "mean": (44, 41, 39)}
    results = pl.DataFrame(
        [
            {
                "model": "m",
                "method": method,
                "seed": seed,
                "fraction": 0.1,
                "top1": correct / 152,
                "loss": 1.0,
                "n_tokens": 152,
                "n_ablated": 1,
            }  # fmt: skip
            for method, per_seed in counts.items()
            for seed, correct in enumerate(per_seed)
        ]
    )
    row = comparison.compare_methods(results).filter(pl.col("metric") == "top1").row(0, named=True)
    assert row["mean_diff"] == 0.0 and row["better"] == "tie"
    assert row["ci_low"] < 0 < row["ci_high"]


def test_pairs_follow_claim_order_and_loss_sign():
    table = comparison.compare_methods(synthetic_results(CLAIM_HOLDS))
    pairs = table.filter((pl.col("metric") == "loss") & (pl.col("fraction") == 0.9))
    assert list(zip(pairs["method_a"], pairs["method_b"], strict=True)) == [
        ("peak", "mean"),
        ("peak", "zero"),
        ("peak", "resample-tokens"),
        ("mean", "zero"),
        ("mean", "resample-tokens"),
        ("zero", "resample-tokens"),
    ]
    # Lower loss is better: peak - mean < 0 and peak is the better method.
    first = pairs.row(0, named=True)
    assert first["mean_diff"] < 0 and first["better"] == "peak"


def test_best_method_per_fraction_and_ties():
    best = comparison.best_methods(synthetic_results(CLAIM_HOLDS))
    at = {(r["metric"], r["fraction"]): r["best_method"] for r in best.iter_rows(named=True)}
    assert at[("top1", 0.0)] == "peak=mean=zero=resample-tokens"  # nothing ablated
    assert at[("top1", 0.5)] == "peak" and at[("loss", 0.9)] == "peak"


def test_verdict_holds():
    table = comparison.compare_methods(synthetic_results(CLAIM_HOLDS))
    verdict = comparison.claim_verdict(table, "m")
    assert "peak >= mean >= zero >> resampling holds:" in verdict
    assert "zero >> resample-tokens holds at all 2 fractions" in verdict


def test_verdict_does_not_hold_when_mean_beats_peak_significantly():
    offsets = {"peak": 0.0, "mean": 0.02, "zero": -0.01}
    verdict = comparison.claim_verdict(comparison.compare_methods(synthetic_results(offsets)), "m")
    assert "does not hold" in verdict
    assert "peak >= mean fails" in verdict and "significantly: top-1 at 50 %, 90 %" in verdict
    assert "mean >= zero holds" in verdict
    assert "Resampling methods were not run" in verdict


def test_verdict_within_noise():
    # At 50 %, mean beats peak by 0.1 pp on average, but the per-seed differences (-0.3, +0.1,
    # -0.1 pp) put 0 inside the interval: a disagreement, not a significant one.
    rows = []
    for seed, peak_minus_mean in enumerate((-0.003, 0.001, -0.001)):
        for method, top1 in {"peak": 0.4 + peak_minus_mean, "mean": 0.4, "zero": 0.3}.items():
            rows.append(
                {"model": "m", "method": method, "seed": seed, "fraction": 0.5}
                | {"top1": top1 + 0.01 * seed, "loss": 2.0 - top1}
            )
    verdict = comparison.claim_verdict(comparison.compare_methods(pl.DataFrame(rows)), "m")
    assert "holds within noise (no disagreement is significant)" in verdict
    assert "peak >= mean fails (mean did better: top-1 at 50 %; CE at 50 %)" in verdict


def test_verdict_with_one_seed_uses_point_estimates():
    offsets = {"peak": 0.0, "mean": 0.02, "zero": -0.01}
    table = comparison.compare_methods(synthetic_results(offsets, seeds=(0,)))
    assert table["ci_low"].null_count() == table.height
    verdict = comparison.claim_verdict(table, "m")
    assert "does not hold" in verdict and "point estimates only" in verdict


def test_verdict_missing_method():
    table = comparison.compare_methods(synthetic_results({"peak": 0.0, "mean": 0.0}))
    assert "cannot be checked" in comparison.claim_verdict(table, "m")
    assert "zero" in comparison.claim_verdict(table, "m")


def test_write_comparison_and_cli(tmp_path):
    results = pl.concat(
        [
            synthetic_results(CLAIM_HOLDS, model="first"),
            synthetic_results({"peak": 0.0, "mean": 0.02, "zero": 0.01}, model="second"),
        ]
    )
    results.write_csv(tmp_path / "ablation.csv")
    csv, markdown = tmp_path / "comparison.csv", tmp_path / "comparison.md"
    args = ["compare", str(tmp_path / "ablation.csv"), "--csv", str(csv), "--markdown"]
    assert main([*args, str(markdown)]) == 0
    table = pl.read_csv(csv)
    assert {"mean_diff", "ci_low", "ci_high", "better", "significant", "best_method"} <= set(
        table.columns
    )
    text = markdown.read_text()
    assert "## first" in text and "## second" in text
    assert "For first, the paper's claim peak >= mean >= zero >> resampling holds" in text
    assert "For second, the paper's claim peak >= mean >= zero does not hold" in text
    assert "| 50 % | peak |" in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
