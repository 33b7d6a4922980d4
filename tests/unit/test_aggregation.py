"""Tables show undefined statistics as undefined: one seed has no spread, not a spread of 0."""

from __future__ import annotations

import polars as pl

from neuron_ablation.aggregation import write_tables
from neuron_ablation.comparison import compare_methods
from neuron_ablation.comparison_report import comparison_markdown
from neuron_ablation.io import write_json

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
