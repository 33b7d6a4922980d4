"""Tables show undefined statistics as undefined: one seed has no spread, not a spread of 0."""

from __future__ import annotations

import polars as pl

from neuron_ablation.aggregation import write_tables
from neuron_ablation.comparison import compare_methods
from neuron_ablation.comparison_report import comparison_markdown
from neuron_ablation.io import read_json, write_json

TOP1 = {("zero", 0.5): 0.30, ("mean", 0.5): 0.40, ("zero", 0.9): 0.10, ("mean", 0.9): 0.20}


def write_results(root, seeds: list[int]) -> list:
    """Result JSONs of model ``m``: baseline top-1 0.5, a seed's offset of +0.01 per seed."""
    paths = []
    for method in ("zero", "mean"):
        for seed in seeds:
            for fraction in (0.0, 0.5, 0.9):
                top1 = 0.5 if fraction == 0.0 else TOP1[(method, fraction)] + 0.01 * seed
                path = root / f"m/eval/{method}/seed{seed}/frac{fraction:.2f}.json"
                result = {"top1": top1, "loss": 2.0 - top1, "n_tokens": 100, "n_ablated": 0}
                keys = {"model": "m", "method": method, "seed": seed, "fraction": fraction}
                write_json(path, result | keys)
                paths.append(path)
    return paths


def test_one_seed_has_no_spread(tmp_path):
    write_tables(write_results(tmp_path / "results", [0]), tmp_path / "tables")
    markdown = (tmp_path / "tables/table2.md").read_text()
    assert "± 0.00" not in markdown
    assert "| 50 % | mean | 40.00 ± – |" in markdown
    assert "| baseline |  | 50.00 |" in markdown  # one clean evaluation: no ± at all
    table = pl.read_csv(tmp_path / "tables/table2.csv")
    assert table["std_m"].null_count() == table.height  # empty cells, not 0
    assert table["mean_m"].null_count() == 0


def test_several_seeds_have_a_spread(tmp_path):
    write_tables(write_results(tmp_path / "results", [0, 1]), tmp_path / "tables")
    markdown = (tmp_path / "tables/table2.md").read_text()
    assert "| 50 % | mean | 40.50 ± 0.71 |" in markdown  # std of 40 and 41
    assert "| baseline |  | 50.00 |" in markdown
    table = pl.read_csv(tmp_path / "tables/table2.csv")
    assert table.filter(pl.col("setting") != "baseline")["std_m"].null_count() == 0


def test_comparison_with_one_seed_shows_no_interval(tmp_path):
    write_tables(write_results(tmp_path / "results", [0]), tmp_path / "tables")
    comparison = compare_methods(pl.read_csv(tmp_path / "tables/ablation.csv"))
    assert comparison["ci_low"].null_count() == comparison.height
    markdown = comparison_markdown(comparison)
    assert "+10 [–]" in markdown  # mean − zero top-1 at 50 %: 10 pp, no interval


def test_no_table2_fraction_writes_an_empty_table_with_a_note(tmp_path):
    """Only fraction 1.0 (no baseline, neither 50 % nor 90 %): Table 2 has no row, says why,
    and ``verify`` accepts it."""
    from neuron_ablation.verify import artifact_kind

    path = tmp_path / "results/m/eval/zero/seed0/frac1.00.json"
    keys = {"model": "m", "method": "zero", "seed": 0, "fraction": 1.0}
    write_json(path, {"top1": 0.1, "loss": 3.0, "n_tokens": 100, "n_ablated": 32} | keys)
    tables = tmp_path / "results/tables"
    write_tables([path], tables)
    assert pl.read_csv(tables / "table2.csv").height == 0
    assert "No rows: Table 2 shows the baseline (fraction 0) and fractions 50 %, 90 %" in (
        (tables / "table2.md").read_text()
    )
    for name in ("table2.csv", "table2.md", "ablation.csv"):
        kind, check = artifact_kind(tables / name)
        check(tables / name)


# --- a run with eval.sweep: two token sets, each fraction against the clean model on its own ---

CLEAN = {"seq_correct": [6, 5, 7, 2], "seq_loss_sum": [10.0, 20.0, 30.0, 40.0], "seq_n": [10] * 4}
"""The clean model on 4 rows of 10 tokens: top-1 50 %, CE 2.5 on all; 55 %, 1.5 on the first 2."""


def with_totals(lists: dict) -> dict:
    n = sum(lists["seq_n"])
    return lists | {
        "top1": sum(lists["seq_correct"]) / n,
        "loss": sum(lists["seq_loss_sum"]) / n,
        "n_tokens": n,
    }


def write_sweep_run(root) -> tuple[list, str]:
    """(results, baseline) of model ``m`` with ``--sweep-items 2 --focus 0.5``: fractions 0 and
    0.3 on the first 2 rows with seeds 0 and 1, fraction 0.5 on all 4 with seeds 0, 1 and 2.
    Every ablated row loses one correct token and gains 1 nat of loss per sequence."""
    from neuron_ablation.evaluation import first_rows

    baseline = root / "m/eval/baseline.json"
    clean = with_totals(CLEAN) | {"model": "m", "n_ablated": 0}
    write_json(baseline, clean | {"sweep": {"first_items": 2, "n_items": 2, "n_tokens": 20,
                                            "top1": 0.55, "loss": 1.5}})  # fmt: skip
    paths = []
    for fraction, items, seeds in ((0.0, 2, [0, 1]), (0.3, 2, [0, 1]), (0.5, None, [0, 1, 2])):
        for method in ("zero", "mean"):
            for seed in seeds:
                lists = first_rows(with_totals(CLEAN), items)
                if fraction > 0:
                    lists["seq_correct"] = [c - 1 for c in lists["seq_correct"]]
                    lists["seq_loss_sum"] = [v + 1 + seed for v in lists["seq_loss_sum"]]
                path = root / f"m/eval/{method}/seed{seed}/frac{fraction:.2f}.json"
                keys = {"model": "m", "method": method, "seed": seed, "fraction": fraction}
                write_json(path, with_totals(lists) | keys | {"n_ablated": 0})
                paths.append(path)
    return paths, str(baseline)


def test_each_fraction_is_tabulated_against_the_clean_model_on_its_own_tokens(tmp_path):
    results, baseline = write_sweep_run(tmp_path / "results")
    write_tables(results, tmp_path / "tables", [baseline])
    rows = pl.read_csv(tmp_path / "tables/ablation.csv")
    by_fraction = rows.group_by("fraction").agg(
        pl.col("n_items", "n_tokens", "baseline_top1", "baseline_loss", "first_items").unique()
    )
    got = {r[0]: tuple(v[0] for v in r[1:]) for r in by_fraction.sort("fraction").rows()}
    assert got == {
        0.0: (2, 20, 0.55, 1.5, 2),  # fraction 0 is a sweep fraction: the sweep's clean figures
        0.3: (2, 20, 0.55, 1.5, 2),
        0.5: (4, 40, 0.5, 2.5, None),
    }
    table = pl.read_csv(tmp_path / "tables/table2.csv").filter(pl.col("metric") == "top1")
    clean = table.filter(pl.col("setting") == "baseline")
    # Table 2's fractions (50 %) are on the whole split: so is its baseline row, not the 55 %
    # that fraction 0 (scored on the sweep's rows) shows.
    assert clean.select("mean_m", "n_tokens_m", "n_items_m").row(0) == (50.0, 40, 4)
    assert clean["n_seeds_m"].null_count() == 1
    half = table.filter(pl.col("setting") == "50 %").sort("method")
    assert half.select("method", pl.col("mean_m").round(6), "n_seeds_m", "n_tokens_m").rows() == [
        ("mean", 40.0, 3, 40),
        ("zero", 40.0, 3, 40),
    ]
    markdown = (tmp_path / "tables/table2.md").read_text()
    assert "| baseline |  | 50.00 |" in markdown
    assert "baseline: one clean evaluation on 4 rows, 40 tokens" in markdown
    assert "50 %: 3 seeds on 4 rows, 40 tokens" in markdown


def test_without_baselines_the_tables_keep_their_columns(tmp_path):
    """No eval.sweep: no baseline is handed over, and the tables are as before (Table 2's
    baseline row is fraction 0's results)."""
    results, _ = write_sweep_run(tmp_path / "results")
    write_tables(results, tmp_path / "tables")
    rows = pl.read_csv(tmp_path / "tables/ablation.csv")
    assert rows.columns == ["model", "method", "seed", "fraction", "top1", "loss", "n_tokens",
                            "n_ablated"]  # fmt: skip
    table = pl.read_csv(tmp_path / "tables/table2.csv")
    assert table.columns == ["metric", "setting", "method", "mean_m", "std_m", "gap_m"]
    assert "Scored on" not in (tmp_path / "tables/table2.md").read_text()


def test_a_result_on_tokens_no_baseline_was_scored_on_is_an_error(tmp_path):
    import pytest

    results, baseline = write_sweep_run(tmp_path / "results")
    clean = read_json(baseline)
    del clean["sweep"]  # a baseline of a run without eval.sweep
    write_json(baseline, clean)
    with pytest.raises(ValueError, match=r"mean seed 0 fraction 0.0: scored on 20 tokens.*\[40\]"):
        write_tables(results, tmp_path / "tables", [baseline])


def test_the_figure_draws_changes_from_the_clean_model_on_the_same_tokens(tmp_path):
    from neuron_ablation.aggregation import (
        read_baselines,
        read_results,
        summarise,
        token_set_caption,
        with_baselines,
        write_figure,
    )

    results, baseline = write_sweep_run(tmp_path / "results")
    summary = summarise(with_baselines(read_results(results), read_baselines([baseline])))
    zero = summary.filter(pl.col("method") == "zero").sort("fraction")
    change = (zero["top1_mean"] - zero["baseline_top1"]).round(6).to_list()
    assert change == [0.0, -10.0, -10.0]  # one token in ten lost, on either token set
    assert token_set_caption(summary).splitlines() == [
        "diamonds, the whole split: 4 rows, 40 tokens (clean model top-1 50.00 %, CE 2.50); "
        "50 %: 3 seeds",
        "circles, the sweep's rows: 2 rows, 20 tokens (clean model top-1 55.00 %, CE 1.50); "
        "0 %, 30 %: 2 seeds",
    ]
    write_figure(results, tmp_path / "m.png", [baseline])
    assert (tmp_path / "m.png").read_bytes().startswith(b"\x89PNG")
