"""End to end: the whole Snakemake pipeline on a tiny Llama, every artifact opened and checked."""

import copy
import json
import math
import shutil

import numpy as np
import polars as pl
import pytest
import xarray as xr
import zarr

from neuron_ablation.io import read_arrow, read_model_inputs
from neuron_ablation.optimal import require_statistics_split
from tests.helpers.workflow import run_snakemake

N_LAYERS, WIDTH = 2, 32


def test_token_files(pipeline_run):
    workdir, config = pipeline_run
    seq_len = config["models"]["tiny"]["seq_len"]
    for part in ("stats", "eval"):
        table = read_arrow(workdir / f"results/tiny/tokens/{part}.arrow")
        assert str(table.schema.field("input_ids").type) == "list<item: int32>"
        ids = read_model_inputs(workdir / f"results/tiny/tokens/{part}.arrow")["input_ids"]
        assert ids.shape == (math.ceil(config[part]["n_tokens"] / seq_len), seq_len)


def test_statistics_tokens_carry_their_split(pipeline_run):
    workdir, _ = pipeline_run
    for part in ("stats", "eval"):
        metadata = read_arrow(workdir / f"results/tiny/tokens/{part}.arrow").schema.metadata
        assert metadata[b"part"] == part.encode()
    require_statistics_split(workdir / "results/tiny/tokens/stats.arrow")
    # (Their documents are disjoint: tests/unit/test_tokenization.py.)


def test_statistics_store(pipeline_run):
    workdir, config = pipeline_run
    path = workdir / "results/tiny/stats.zarr"
    store = zarr.open_group(str(path), mode="r")
    eps = store.attrs["bin_width"]
    assert eps == config["stats"]["bin_width"]
    assert store.attrs["model"] == "tiny" and store.attrs["n_tokens"] == 512
    assert "hook_z" in store.attrs["hook_point"]
    hist = np.asarray(store["hist"][:])
    count = np.asarray(store["count"][:])
    assert hist.shape[:2] == (N_LAYERS, WIDTH)
    assert (count == 512).all()
    total = hist.sum(-1) + np.asarray(store["underflow"][:]) + np.asarray(store["overflow"][:])
    np.testing.assert_array_equal(total, count)
    k = np.asarray(store["bin"][:])
    assert k[0] == store.attrs["bin_index_offset"] and (np.diff(k) == 1).all()
    expected_peak = (k[np.argmax(hist, axis=-1)] + 0.5) * eps
    np.testing.assert_array_equal(np.asarray(store["peak"][:]), expected_peak)

    dataset = xr.open_zarr(str(path))
    assert dataset["hist"].dims == ("layer", "neuron", "bin")
    assert dataset["mean"].dims == ("layer", "neuron")
    assert dataset["mean"].dtype == np.float64


def test_selection_and_evaluations(pipeline_run):
    workdir, config = pipeline_run
    baseline = json.loads((workdir / "results/tiny/eval/baseline.json").read_text())
    # No eval.sweep: the clean model on the whole split only, the keys it always had.
    assert set(baseline) == {"top1", "loss", "n_tokens", "seq_loss_sum", "seq_correct", "seq_n",
                             "model", "n_ablated", "provenance"}  # fmt: skip
    for seed in config["seeds"]:
        ranks = np.asarray(
            zarr.open_group(str(workdir / f"results/tiny/selection/seed{seed}.zarr"))["rank"][:]
        )
        assert ranks.shape == (N_LAYERS, WIDTH)
        for method in config["methods"]:
            for fraction in config["fractions"]:
                path = workdir / f"results/tiny/eval/{method}/seed{seed}/frac{fraction:.2f}.json"
                result = json.loads(path.read_text())
                assert set(result) >= {"top1", "loss", "n_tokens", "n_ablated"}
                own = {"model": "tiny", "method": method, "seed": seed, "fraction": fraction}
                assert {key: result[key] for key in own} == own  # carried, not parsed back
                assert result["n_ablated"] == N_LAYERS * round(fraction * WIDTH)
                assert result["n_tokens"] == 8 * 15  # 8 sequences x 15 next-token predictions
                if fraction == 0:
                    assert result["loss"] == baseline["loss"]


def test_full_zero_ablation_removes_all_attention_output(pipeline_run):
    """At 100 % zero ablation every projection outputs its bias only: all seeds agree exactly."""
    workdir, _ = pipeline_run
    losses = {
        json.loads((workdir / f"results/tiny/eval/zero/seed{s}/frac1.00.json").read_text())["loss"]
        for s in (0, 1)
    }
    assert len(losses) == 1


def test_tables_and_figures(pipeline_run):
    workdir, config = pipeline_run
    ablation = pl.read_csv(workdir / "results/tables/ablation.csv")
    assert ablation.columns == [
        "model", "method", "seed", "fraction", "top1", "loss", "n_tokens", "n_ablated"
    ]  # fmt: skip
    focus_only = config["eval"]["focus_seeds"] - len(config["seeds"])
    assert ablation.height == len(config["methods"]) * (len(config["seeds"]) * 4 + focus_only * 2)
    table2 = pl.read_csv(workdir / "results/tables/table2.csv")
    assert set(table2["setting"]) == {"baseline", "50 %", "90 %"}
    assert {"mean_tiny", "std_tiny"} <= set(table2.columns)
    markdown = (workdir / "results/tables/table2.md").read_text()
    assert "Top-1 accuracy" in markdown and "| 90 % | peak |" in markdown
    png = (workdir / "results/figures/tiny.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def dry_run_jobs(workdir, config, *targets: str) -> dict[str, int]:
    """Rule -> number of jobs that `snakemake -n` would run (for ``targets``, else all)."""
    output = run_snakemake(workdir, config, "-n", "--cores", "1", *targets).stdout
    lines = output.split("Job stats:")[1].strip().splitlines()[2:]
    jobs = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            # one job per (method, seed) scores every fraction; seed 2 (so far a focus-only
            # seed of eval.focus_seeds) keeps its selection
            lambda c: c.update(seeds=[0, 1, 2]),
            {"evaluate": 3},
        ),
        (
            # a new seed: its selection, and one job per method at the focus fractions, of the
            # block of focus-only seeds 2 and 3 (eval.focus_seeds_per_job: 10)
            lambda c: c["eval"].update(focus_seeds=4),
            {"select_neurons": 1, "evaluate_focus_2_3": 3},
        ),
        (
            # a new fraction is a new output of every (method, seed) job; 30 % is no focus
            # fraction, so the focus-only seed is not rerun
            lambda c: c.update(fractions=[0.0, 0.3, 0.5, 0.9, 1.0]),
            {"evaluate": 6},
        ),
        (
            lambda c: c["stats"].update(bin_width=0.02),
            # statistics and every mean/peak evaluation; zero ablation needs no statistics
            {"statistics": 1, "evaluate": 4, "evaluate_focus_2": 2},
        ),
    ],
)
def test_only_invalidated_jobs_rerun(pipeline_run, change, expected):
    workdir, config = pipeline_run
    changed = copy.deepcopy(config)
    change(changed)
    jobs = dry_run_jobs(workdir, changed)
    upstream = (
        "tokenize",
        "statistics",
        "select_neurons",
        "baseline",
        "evaluate",
    )
    # Stages up to evaluation rerun exactly as expected; aggregation reruns after any change.
    rerun = {r: n for r, n in jobs.items() if r in upstream or r.startswith("evaluate_focus_")}
    assert rerun == expected
    assert jobs["tables"] == 1
    run_snakemake(workdir, config, "-n", "--cores", "1")  # restore the original config file


def test_seeds_go_to_the_focus_methods_and_optimal_has_its_own(pipeline_run):
    """eval.focus_methods: [mean] drops the focus-only seed of zero and peak (nothing reruns);
    optimal.seeds: 3 (seeds [0, 1], focus seed 2) trains and scores optimal on seeds 0-2, the
    seed beyond `seeds` included, with the selection that already exists."""
    workdir, config = pipeline_run
    changed = copy.deepcopy(config)
    changed["eval"]["focus_methods"] = ["mean"]
    jobs = dry_run_jobs(workdir, changed)
    assert not {r for r in jobs if r.startswith(("evaluate", "select", "statistics"))}
    changed["methods"] = [*config["methods"], "optimal"]
    changed["optimal"] = {"seeds": 3, "fractions": [0.5], "steps": 1, "batch_size": 1}
    jobs = dry_run_jobs(workdir, changed)
    assert {r: n for r, n in jobs.items() if r.startswith(("evaluate", "optimal", "select"))} == {
        "optimal": 3,
        "evaluate_optimal": 3,
    }
    run_snakemake(workdir, config, "-n", "--cores", "1")  # restore the original config file


def test_focus_only_seeds_score_the_focus_fractions_only(pipeline_run):
    """eval.focus_seeds: 3 with seeds [0, 1]: seed 2 ablates its own nested selection at 50 % and
    90 % (Table 2's fractions) and is not scored elsewhere."""
    workdir, config = pipeline_run
    (extra,) = set(range(config["eval"]["focus_seeds"])) - set(config["seeds"])
    for method in config["methods"]:
        found = sorted(
            p.name for p in (workdir / f"results/tiny/eval/{method}/seed{extra}").iterdir()
        )
        assert found == ["frac0.50.json", "frac0.90.json"]
    ranks = [
        np.asarray(
            zarr.open_group(str(workdir / f"results/tiny/selection/seed{s}.zarr"))["rank"][:]
        )
        for s in (*config["seeds"], extra)
    ]
    assert not np.array_equal(ranks[0], ranks[-1])  # its own random ranking
    summary = pl.read_csv(workdir / "results/tables/comparison.csv")
    n_seeds = dict(summary.group_by("fraction").agg(pl.col("n_seeds").max()).iter_rows())
    assert n_seeds == {0.0: 2, 0.5: 3, 0.9: 3, 1.0: 2}


def test_focus_only_seeds_run_in_blocks_as_their_one_seed_jobs(pipeline_run, tmp_path):
    """eval.focus_seeds_per_job: 2 cuts the focus-only seeds 2..5 into the blocks 2-3 and 4-5,
    one job per (block, method) that loads the model once; every seed's results are the bytes
    that its own job writes (focus_seeds_per_job: 1)."""
    source, config = pipeline_run
    targets = [
        f"results/tiny/eval/{method}/seed{seed}/frac{fraction}.json"
        for method in config["methods"]
        for seed in range(2, 6)
        for fraction in ("0.50", "0.90")
    ]
    expected = {  # seed 2 alone is the run's own job, done already
        2: {"evaluate_focus_2_3": 3, "evaluate_focus_4_5": 3},
        1: {"evaluate_focus_3": 3, "evaluate_focus_4": 3, "evaluate_focus_5": 3},
    }

    def focus(n_seeds: int, per_job: int) -> dict:
        changed = copy.deepcopy(config)
        changed["eval"] |= {"focus_seeds": n_seeds, "focus_seeds_per_job": per_job}
        return changed

    results = {}
    for per_job, jobs in expected.items():
        workdir = tmp_path / f"per_job{per_job}"
        shutil.copytree(source, workdir, symlinks=True)  # copy2 keeps times: nothing outdated
        changed = focus(6, per_job)
        found = dry_run_jobs(workdir, changed, *targets)
        assert {r: n for r, n in found.items() if r.startswith("evaluate_focus")} == jobs
        run_snakemake(workdir, changed, "--cores", "2", *targets)
        results[per_job] = {target: (workdir / target).read_bytes() for target in targets}
    assert results[2] == results[1]
    assert len(set(results[2].values())) == len(targets)  # every seed its own result
    bench = tmp_path / "per_job2/results/benchmarks/evaluate_focus/tiny"
    assert sorted(p.name for p in bench.glob("peak_*")) == ["peak_seeds2.tsv", "peak_seeds2_3.tsv",
                                                            "peak_seeds4_5.tsv"]  # fmt: skip
    # set-threads and set-resources of evaluate_focus (profiles/slurm) reach the rule of a new
    # block, 6-7, which no profile can name
    options = ["-n", "-p", "--cores", "2", "--set-threads", "evaluate_focus=2",
               "--set-resources", "evaluate_focus:slurm_partition=focus"]  # fmt: skip
    dry = run_snakemake(tmp_path / "per_job2", focus(8, 2), *options).stdout.splitlines()
    commands = [line for line in dry if "neuron-ablation evaluate" in line]
    assert len(commands) == 3 and all("--threads 2 " in line for line in commands), dry
    resources = [line for line in dry if line.strip().startswith("resources:")]
    assert sum("slurm_partition=focus" in line for line in resources) == 3, dry


def test_a_sweep_compares_each_fraction_with_the_clean_model_on_its_own_tokens(
    tmp_path, tiny_llama, corpus_file
):
    """eval.sweep: the baseline scores the sweep's first rows too (as a clean evaluation of
    those rows alone does); fraction 0 (a sweep fraction), every sweep fraction's reference and
    the figure use it, Table 2's 50 % and 90 % the whole split's."""
    from neuron_ablation.api import open_run
    from neuron_ablation.scoring import evaluate
    from tests.helpers.workflow import tiny_config

    sweep = {"n_tokens": 128, "focus_seeds": 3, "sweep": {"n_tokens": 40}}  # 3 of 8 sequences
    config = tiny_config(tiny_llama, corpus_file, methods=["zero"], eval=sweep)
    targets = ["results/tables/table2.md", "results/figures/tiny.png"]
    run_snakemake(tmp_path, config, "--cores", "2", *targets)

    baseline = json.loads((tmp_path / "results/tiny/eval/baseline.json").read_text())
    first = baseline["sweep"]
    assert (first["first_items"], first["n_items"], first["n_tokens"]) == (3, 3, 3 * 15)
    assert baseline["n_tokens"] == 8 * 15  # the whole split, as without a sweep
    run = open_run(tmp_path)
    rows = {name: values[:3] for name, values in run.inputs("tiny").items()}
    direct = evaluate(run.load_model("tiny"), rows, "causal-lm", batch_size=4)
    assert direct["top1"] == first["top1"]
    assert math.isclose(direct["loss"], first["loss"], rel_tol=1e-9)

    ablation = pl.read_csv(tmp_path / "results/tables/ablation.csv")
    assert {"first_items", "n_items", "baseline_top1", "baseline_loss"} <= set(ablation.columns)
    for row in ablation.iter_rows(named=True):
        focus = row["fraction"] in (0.5, 0.9)
        clean = baseline if focus else first
        assert (row["n_tokens"], row["baseline_top1"]) == (clean["n_tokens"], clean["top1"])
        assert row["first_items"] == (None if focus else 3)
        if row["fraction"] == 0.0:  # nothing ablated: the clean model on the sweep's rows
            assert (row["top1"], row["loss"]) == (first["top1"], first["loss"])
    seeds = ablation.group_by("fraction").agg(pl.col("seed").n_unique()).sort("fraction")
    assert seeds.rows() == [(0.0, 2), (0.5, 3), (0.9, 3), (1.0, 2)]

    table2 = pl.read_csv(tmp_path / "results/tables/table2.csv").filter(pl.col("metric") == "top1")
    clean = table2.filter(pl.col("setting") == "baseline")
    assert clean.select("mean_tiny", "n_tokens_tiny").row(0) == (
        baseline["top1"] * 100, baseline["n_tokens"]
    )  # fmt: skip
    ablated = table2.filter(pl.col("setting") != "baseline")
    assert set(ablated["n_seeds_tiny"]) == {3}
    assert set(ablated["n_tokens_tiny"]) == {baseline["n_tokens"]}
    markdown = (tmp_path / "results/tables/table2.md").read_text()
    assert "Scored on: tiny: baseline: one clean evaluation on 8 rows, 120 tokens" in markdown
