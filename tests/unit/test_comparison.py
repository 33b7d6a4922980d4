"""Paired comparison: intervals over seeds and sequences, best methods, the verdict on the claim."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as scipy_stats

from neuron_ablation import claim, comparison, comparison_report, intervals
from neuron_ablation.cli import main


def test_interval_over_seeds_alone_is_the_paired_t_interval():
    diff = intervals.crossed_interval(np.array([[1.0], [2.0], [3.0]]))
    half = 4.302653 / math.sqrt(3)  # sd 1, t(0.975, 2)
    assert diff.mean == 2.0 and diff.df == pytest.approx(2)
    assert diff.ci_low == pytest.approx(2 - half, rel=1e-6)
    assert diff.ci_high == pytest.approx(2 + half, rel=1e-6)
    assert diff.significant is False
    single = intervals.crossed_interval(np.array([[0.5]]))
    assert single.ci_low is None and single.significant is None


def test_interval_over_sequences_of_one_seed_is_the_paired_t_interval():
    a = np.array([[0.5, 1.5, 1.0, 3.0, -1.0]])
    diff = intervals.paired_difference(a)
    half = 2.776445 * a.std(ddof=1) / math.sqrt(5)  # t(0.975, 4)
    assert diff.ci_high - diff.mean == pytest.approx(half, rel=1e-6)
    assert diff.seed_halfwidth == pytest.approx(half, rel=1e-6)


def test_crossed_interval_matches_the_anova_formula():
    """Seeds x sequences: variance (MS_seed + MS_seq - MS_res) / (S J), Satterthwaite df."""
    a = np.random.default_rng(3).normal(size=(3, 6)) + np.array([[2.0], [-1.0], [0.5]])
    a += np.linspace(-3, 3, 6)[None, :]
    s, j = a.shape
    grand, seeds, seqs = a.mean(), a.mean(axis=1), a.mean(axis=0)
    ms_seed = j * ((seeds - grand) ** 2).sum() / (s - 1)
    ms_seq = s * ((seqs - grand) ** 2).sum() / (j - 1)
    ms_res = ((a - seeds[:, None] - seqs[None, :] + grand) ** 2).sum() / ((s - 1) * (j - 1))
    assert ms_seed > ms_res and ms_seq > ms_res  # no component is truncated in this case
    variance = (ms_seed + ms_seq - ms_res) / (s * j)
    df = (variance * s * j) ** 2 / (
        ms_seed**2 / (s - 1) + ms_seq**2 / (j - 1) + ms_res**2 / ((s - 1) * (j - 1))
    )
    diff = intervals.crossed_interval(a)
    assert diff.df == pytest.approx(df, rel=1e-9)
    assert diff.ci_high - diff.mean == pytest.approx(
        scipy_stats.t.ppf(0.975, df) * math.sqrt(variance), rel=1e-9
    )


@pytest.mark.parametrize(
    ("sd_seed", "sd_sequence", "sd_residual"),
    [(1.0, 1.0, 1.0), (3.0, 0.5, 1.0), (0.0, 2.0, 1.0), (0.5, 0.0, 2.0)],
)
def test_crossed_interval_covers_the_true_difference_at_about_the_nominal_rate(
    sd_seed, sd_sequence, sd_residual
):
    """3 seeds x 32 sequences, crossed random effects around a true difference of 0.7."""
    rng = np.random.default_rng(11)
    covered, repeats = 0, 1500
    for _ in range(repeats):
        a = (
            0.7
            + rng.normal(0, sd_seed, (3, 1))
            + rng.normal(0, sd_sequence, (1, 32))
            + rng.normal(0, sd_residual, (3, 32))
        )
        diff = intervals.crossed_interval(a)
        covered += diff.ci_low <= 0.7 <= diff.ci_high
    assert 0.91 <= covered / repeats <= 0.99


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
    assert row["verdict"] == "peak better"
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
    assert row["mean_diff"] == 0.0 and row["better"] == "tie" and row["verdict"] == "tie"
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
    verdict = claim.claim_verdict(table, "m")
    assert "peak >= mean >= zero >> resampling holds:" in verdict
    assert "zero >> resample-tokens holds at all 2 fractions" in verdict


def test_verdict_does_not_hold_when_mean_beats_peak_significantly():
    offsets = {"peak": 0.0, "mean": 0.02, "zero": -0.01}
    verdict = claim.claim_verdict(comparison.compare_methods(synthetic_results(offsets)), "m")
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
    verdict = claim.claim_verdict(comparison.compare_methods(pl.DataFrame(rows)), "m")
    assert "holds within noise (no disagreement is significant)" in verdict
    assert "peak >= mean fails (mean did better: top-1 at 50 %; CE at 50 %)" in verdict


def test_verdict_with_one_seed_uses_point_estimates():
    offsets = {"peak": 0.0, "mean": 0.02, "zero": -0.01}
    table = comparison.compare_methods(synthetic_results(offsets, seeds=(0,)))
    assert table["ci_low"].null_count() == table.height
    verdict = claim.claim_verdict(table, "m")
    assert "does not hold" in verdict and "point estimates only" in verdict


def test_verdict_missing_method():
    table = comparison.compare_methods(synthetic_results({"peak": 0.0, "mean": 0.0}))
    assert "cannot be checked" in claim.claim_verdict(table, "m")
    assert "zero" in claim.claim_verdict(table, "m")


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


def synthetic_sequences(offsets: dict[str, float], seeds=(0, 1, 2), n_sequences: int = 40):
    """(ablation.csv rows, sequences.parquet rows) at fraction 0.5 with per-sequence scores.

    Each sequence scores 50 tokens; a method's chance of a correct token is 0.4 + its offset
    + a seed effect + a sequence effect, shared by all methods (so pairing cancels them).
    """
    rng = np.random.default_rng(5)
    seq_effect = rng.normal(0, 0.1, n_sequences)
    rows, sequences = [], []
    for seed in seeds:
        seed_effect = rng.normal(0, 0.05)
        for method, offset in offsets.items():
            p = np.clip(0.4 + offset + seed_effect + seq_effect, 0.01, 0.99)
            correct = rng.binomial(50, p)
            loss_sum = 50 * (3.0 - 2.0 * p)
            keys = {"model": "m", "method": method, "seed": seed, "fraction": 0.5}
            rows.append(
                keys
                | {"top1": correct.sum() / (50 * n_sequences), "loss": loss_sum.mean() / 50}
                | {"n_tokens": 50 * n_sequences, "n_ablated": 32}
            )
            sequences.append(
                pl.DataFrame(
                    {"sequence": np.arange(n_sequences), "loss_sum": loss_sum, "correct": correct}
                ).with_columns(n=pl.lit(50), **{k: pl.lit(v) for k, v in keys.items()})
            )
    return pl.DataFrame(rows), pl.concat(sequences)


def test_sequences_pair_differences_and_rank_against_optimal(tmp_path):
    offsets = {"optimal": 0.06, "peak": 0.0, "mean": 0.0, "zero": -0.1}
    results, sequences = synthetic_sequences(offsets)
    table = comparison.compare_methods(results, sequences=sequences)
    top1 = {
        (r["method_a"], r["method_b"]): r
        for r in table.filter(pl.col("metric") == "top1").iter_rows(named=True)
    }
    # The per-sequence route gives the same point estimate as the seed totals.
    seeds_only = comparison.compare_methods(results).filter(pl.col("metric") == "top1")
    pairs = zip(seeds_only["method_a"], seeds_only["method_b"], strict=True)
    assert seeds_only["mean_diff"].to_list() == pytest.approx(
        [top1[pair]["mean_diff"] for pair in pairs]
    )
    assert top1[("optimal", "peak")]["n_sequences"] == 40
    assert top1[("optimal", "zero")]["verdict"] == "optimal better"
    assert top1[("peak", "zero")]["verdict"] == "peak better"
    assert top1[("optimal", "peak")]["seed_halfwidth"] > 0
    text = comparison_report.comparison_markdown(table)
    assert "### Ranking at 50 %" in text
    assert "- 50 %, top-1: optimal > " in text
    assert "| zero | -1" in text  # zero is about 16 pp below optimal


def test_compare_cli_reads_sequences(tmp_path):
    results, sequences = synthetic_sequences({"peak": 0.0, "mean": 0.01, "zero": -0.1})
    results.write_csv(tmp_path / "ablation.csv")
    sequences.write_parquet(tmp_path / "sequences.parquet")
    csv, markdown = tmp_path / "comparison.csv", tmp_path / "comparison.md"
    parquet = str(tmp_path / "sequences.parquet")
    main(["compare", str(tmp_path / "ablation.csv"), "--sequences", parquet, "--csv", str(csv),
          "--markdown", str(markdown)])  # fmt: skip
    table = pl.read_csv(csv)
    assert {"verdict", "df", "seed_halfwidth", "n_sequences"} <= set(table.columns)
    assert set(table["n_sequences"].to_list()) == {40}


@pytest.mark.parametrize(
    ("seeds", "fractions"), [((0,), (0.5,)), ((0, 1), (0.0,)), ((3,), (0.0, 1.0))]
)
def test_one_method_writes_an_empty_table_with_every_column_and_a_note(tmp_path, seeds, fractions):
    """A run of a single method (here a resampling one) has no pairs: comparison.csv is its
    header, comparison.md says why, and ``verify`` accepts both."""
    from neuron_ablation.verify import artifact_kind

    tables = tmp_path / "results/tables"
    tables.mkdir(parents=True)
    results = synthetic_results({"resample-tokens": 0.0}, seeds=seeds, fractions=fractions)
    results.write_csv(tables / "ablation.csv")
    csv, markdown = tables / "comparison.csv", tables / "comparison.md"
    table = comparison_report.write_comparison(tables / "ablation.csv", csv, markdown)
    assert table.height == 0
    written = pl.read_csv(csv)
    assert written.columns == [*comparison.COMPARISON_SCHEMA, "best_method"]
    assert written.height == 0
    text = markdown.read_text()
    assert "## m" in text
    assert "Nothing to compare for m: only resample-tokens was run" in text
    for path in (csv, markdown):
        kind, check = artifact_kind(path)
        check(path)  # raises DamagedArtifact on a table verify would reject


def test_a_model_with_one_method_next_to_a_compared_model(tmp_path):
    """Comparisons write what exists: the compared model's pairs, and a note for the other."""
    results = pl.concat(
        [
            synthetic_results(CLAIM_HOLDS, model="first"),
            synthetic_results({"zero": 0.0}, model="second"),
        ]
    )
    table = comparison.compare_methods(results)
    assert set(table["model"].to_list()) == {"first"}
    text = comparison_report.comparison_markdown(table, results=results)
    assert "For first, the paper's claim" in text
    assert "Nothing to compare for second: only zero was run" in text
