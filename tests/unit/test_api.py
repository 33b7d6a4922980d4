"""The Python API (neuron_ablation.api) on a tiny run built by calling the stages directly.

The run holds what Snakemake would write for one tiny Llama (tokens, statistics, a selection,
learned optimal constants, evaluation JSONs and the tables), made with the same `neuron-ablation`
commands the rules run, so the API is checked against the pipeline's own artifacts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import neuron_ablation as na
from neuron_ablation import paths
from neuron_ablation.ablation import overwrite_z_hooks
from neuron_ablation.architectures import attention_output_projections
from neuron_ablation.cli import main
from neuron_ablation.integrity import DamagedArtifact
from neuron_ablation.io import read_json
from tests.helpers.workflow import tiny_config

NAME = "tiny"
SEED = 0
FRACTION = 0.5
METHODS = ("zero", "mean", "peak", "optimal")
BIN_WIDTH, RANGE = 0.01, (-4.0, 4.0)


def _stage_run(root, model_dir, corpus_path) -> None:
    """The tiny pipeline's artifacts under ``root/results``, one `neuron-ablation` call each."""
    config = tiny_config(
        model_dir,
        corpus_path,
        methods=list(METHODS),
        seeds=[SEED],
        fractions=[0.0, FRACTION],
        optimal={"fractions": [FRACTION]},
    )
    (root / "config.yaml").write_text(yaml.safe_dump(config))

    def at(relative: str) -> str:
        return str(root / relative)

    def stage(command: str) -> None:  # the tmp paths hold no spaces
        main(command.split())

    model = f"--model-source {model_dir} --task causal-lm"
    runtime = "--device cpu --batch-size 4"
    stats, selection = at(paths.stats(NAME)), at(paths.selection(NAME, SEED))
    tokens = {part: at(paths.tokens(NAME, part)) for part in ("stats", "eval")}
    for part, n in (("stats", 512), ("eval", 128)):
        stage(
            f"tokenize {model} --dataset-source {corpus_path} --part {part} --n {n} "
            f"--seq-len 16 --eval-share 0.25 --out {tokens[part]}"
        )
    stage(
        f"statistics {model} --tokens {tokens['stats']} {runtime} --bin-width {BIN_WIDTH} "
        f"--range {RANGE[0]} {RANGE[1]} --model-name {NAME} --out {stats}"
    )
    stage(f"select {model} --seed {SEED} --out {selection}")
    optimal = at(paths.optimal(NAME, SEED))
    stage(
        f"optimal {model} --tokens {tokens['stats']} {runtime} --stats {stats} --selection "
        f"{selection} --seed {SEED} --fraction {FRACTION} --steps 3 --out {optimal}"
    )
    baseline = at(paths.baseline(NAME))
    stage(
        f"baseline {model} --tokens {tokens['eval']} {runtime} --model-name {NAME} --out {baseline}"
    )
    results = []
    for method in METHODS:
        outputs = [at(paths.eval_result(NAME, method, SEED, f)) for f in (0.0, FRACTION)]
        stage(
            f"evaluate {model} --tokens {tokens['eval']} {runtime} --model-name {NAME} "
            f"--method {method} --seed {SEED} --selection {selection} --stats {stats} "
            f"--optimal {optimal} --baseline {baseline} --fraction 0.00 {FRACTION:.2f} "
            f"--out {' '.join(outputs)}"
        )
        results += outputs
    stage(f"aggregate --tables {root / paths.RESULTS / 'tables'} {' '.join(results)}")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_llama, corpus_file):
    root = tmp_path_factory.mktemp("api_run")
    _stage_run(root, tiny_llama, corpus_file)
    return root


@pytest.fixture(scope="module")
def run(run_dir) -> na.Run:
    return na.open_run(run_dir)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def _assert_bit_identical(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()  # a bias the fold created is gone again
    for key, value in before.items():
        assert after[key].dtype == value.dtype and after[key].device == value.device, key
        assert torch.equal(after[key].view(torch.uint8), value.view(torch.uint8)), key


# --- the package surface ----------------------------------------------------------------------


def test_public_surface_resolves_and_import_stays_light():
    assert na.__version__ == "0.1.0"
    for name in na.__all__:
        assert getattr(na, name) is not None, name
    assert set(na.__all__) - {"__version__"} == set(na.api.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        na.nope  # noqa: B018
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, neuron_ablation; print(sorted(m for m in ('torch', 'xarray', 'polars') "
            "if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def test_every_public_function_is_typed_and_documented():
    import inspect

    for name in na.api.__all__:
        obj = getattr(na.api, name)
        assert inspect.getdoc(obj), name
        if inspect.isfunction(obj):
            signature = inspect.signature(obj)
            assert signature.return_annotation is not inspect.Signature.empty, name
            for parameter in signature.parameters.values():
                assert parameter.annotation is not inspect.Parameter.empty, (name, parameter)


# --- reading a run ----------------------------------------------------------------------------


def test_statistics_is_the_store_as_a_dataset(run, run_dir):
    import zarr

    ds = run.statistics(NAME)
    store = zarr.open_group(str(run_dir / paths.stats(NAME)), mode="r", use_consolidated=False)
    for variable in ("mean", "peak", "count", "hist", "underflow", "overflow"):
        np.testing.assert_array_equal(ds[variable].values, store[variable][...])
    assert ds["hist"].dims == ("layer", "neuron", "bin")
    assert ds["mean"].dims == ("layer", "neuron")
    assert ds.sizes == {"layer": 2, "neuron": 32, "bin": 800}
    assert ds.attrs["bin_width"] == BIN_WIDTH and ds.attrs["model"] == NAME
    total = ds["hist"].sum("bin") + ds["underflow"] + ds["overflow"]
    assert (total == ds["count"]).all()


def test_selection_ranks_and_constants(run):
    ranks = run.ranks(NAME, SEED)
    mask = run.selection(NAME, SEED, FRACTION)
    assert mask.dtype == bool and mask.shape == (2, 32)
    assert (mask.sum(axis=1) == 16).all()
    np.testing.assert_array_equal(mask, ranks < 16)
    ds = run.statistics(NAME)
    np.testing.assert_array_equal(run.constants(NAME, "mean"), ds["mean"].values)
    np.testing.assert_array_equal(run.constants(NAME, "peak"), ds["peak"].values)
    assert not run.constants(NAME, "zero").any()
    heads = run.constants(NAME, "peak", layout="head")
    assert heads.shape == (2, 4, 8)  # 4 heads of d_head 8, the layout of hook_z
    np.testing.assert_array_equal(heads[1, 2, 3], ds["peak"].values[1, 2 * 8 + 3])
    learned = run.constants(NAME, "optimal", seed=SEED, fraction=FRACTION)
    assert np.array_equal(~np.isnan(learned), mask)


def test_results_tables_and_artifacts(run, run_dir):
    results = run.results()
    assert set(results["method"]) == set(METHODS)
    row = results.filter(method="peak", fraction=FRACTION).row(0, named=True)
    assert row["top1"] == run.evaluation(NAME, "peak", SEED, FRACTION)["top1"]
    sequences = run.sequences()
    assert sequences.height == len(METHODS) * 2 * 8  # 128 tokens: 8 sequences of 16
    artifacts = run.artifacts(NAME)
    assert artifacts["statistics"] == run_dir / "results/tiny/stats.zarr"
    assert artifacts["eval/optimal/seed0/frac0.50"].is_file()
    assert artifacts["optimal/seed0"].is_dir()
    assert set(run.inputs(NAME)) == {"input_ids"}
    assert run.inputs(NAME)["input_ids"].shape == (8, 16)


def test_missing_and_damaged_artifacts_raise_what_verify_reports(run, run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="snakemake --cores all results/tables/comparison"):
        run.comparison()  # the tiny stage run has no comparison table
    with pytest.raises(ValueError, match="models: tiny"):
        run.statistics("other")
    damaged = tmp_path / "run"
    shutil.copytree(run_dir, damaged)
    (damaged / paths.stats(NAME) / "peak/c/0/0").unlink()  # its one chunk
    with pytest.raises(DamagedArtifact, match="'peak' is missing chunks") as caught:
        na.open_run(damaged).statistics(NAME)
    assert "--forcerun" in str(caught.value)
    with pytest.raises(DamagedArtifact, match="'peak' is missing chunks"):
        na.open_run(damaged).constants(NAME, "peak")


def test_open_run_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a pipeline run"):
        na.open_run(tmp_path)


# --- ablating a live model --------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_scores_inside_the_block_equal_the_pipeline_json(run, method):
    model = run.load_model(NAME)
    before = _snapshot(model)
    clean = na.evaluate(model, run, NAME)
    with na.ablated(model, run, NAME, method=method, fraction=FRACTION, seed=SEED) as ablation:
        scored = na.evaluate(model, run, NAME)
    expected = run.evaluation(NAME, method, SEED, FRACTION)
    for key in ("top1", "loss", "n_tokens", "seq_loss_sum", "seq_correct", "seq_n"):
        assert scored[key] == expected[key], key
    assert ablation.n_ablated == expected["n_ablated"] == 32
    _assert_bit_identical(model, before)
    assert na.evaluate(model, run, NAME) == clean
    assert clean["loss"] != scored["loss"]


def test_weights_restored_when_the_block_raises(run):
    model = run.load_model(NAME)
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="inside"):  # noqa: SIM117
        with na.ablated(model, run, NAME, method="peak", fraction=1.0):
            assert attention_output_projections(model)[0].bias is not None  # created by the fold
            raise RuntimeError("inside")
    _assert_bit_identical(model, before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_any_dtype_is_restored_bit_for_bit(run, dtype):
    model = run.load_model(NAME).to(dtype)
    before = _snapshot(model)
    ids = torch.tensor(run.inputs(NAME)["input_ids"][:2]).long()
    with na.ablated(model, run, NAME, method="mean", fraction=0.5):
        logits = model(input_ids=ids).logits
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    _assert_bit_identical(model, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_fold_matches_hook_z_and_is_undone_bit_for_bit(run):
    model = run.load_model(NAME, device="cuda", dtype="bfloat16")
    before = _snapshot(model)
    ids = torch.tensor(run.inputs(NAME)["input_ids"][:3], device="cuda").long()
    mask, values = run.selection(NAME, SEED, FRACTION), run.constants(NAME, "peak")
    with torch.no_grad():
        with overwrite_z_hooks(model, list(torch.from_numpy(mask)), list(torch.from_numpy(values))):
            reference = model(input_ids=ids).logits.float()
        with na.ablated(model, run, NAME, method="peak", fraction=FRACTION, seed=SEED):
            folded = model(input_ids=ids).logits.float()
    torch.testing.assert_close(folded, reference, rtol=0.05, atol=0.05)  # bf16 rounding
    _assert_bit_identical(model, before)


def test_given_constants_in_head_layout_equal_overwriting_hook_z(run):
    """The fold with user constants matches the reference that overwrites z in a hook."""
    model = run.load_model(NAME)
    ids = torch.tensor(run.inputs(NAME)["input_ids"][:3]).long()
    mask = run.selection(NAME, SEED, 0.3)
    values = np.random.default_rng(0).normal(size=mask.shape)
    heads, head_mask = na.to_heads(values, 4), na.to_heads(mask, 4)
    with torch.no_grad():
        with overwrite_z_hooks(model, list(torch.from_numpy(mask)), list(torch.from_numpy(values))):
            reference = model(input_ids=ids).logits
        with na.ablated(model, constants=heads, mask=head_mask) as ablation:
            folded = model(input_ids=ids).logits
    torch.testing.assert_close(folded, reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ablation.mask, mask)
    np.testing.assert_array_equal(ablation.values, np.where(mask, values, 0.0))


def test_ablated_refuses_bad_input_before_touching_the_model(run):
    model = run.load_model(NAME)
    before = _snapshot(model)
    cases = [
        (dict(run=run, name=NAME, method="resample-chars"), "resampling bank"),
        (dict(run=run, name=NAME, method="median"), "unknown ablation method 'median'"),
        (dict(run=run, name=NAME, fraction=1.5), r"fraction must be in \[0, 1\]"),
        (dict(run=run, name=NAME, seed=7), "no such artifact"),
        (dict(run=run, name=NAME, method="optimal", fraction=0.9), "trained fractions"),
        (dict(run=run), "name: which model"),
        (dict(), "pass run and name"),
        (dict(constants=np.zeros((2, 16)), mask=np.ones((2, 16), bool)), "different models"),
        (dict(constants=np.zeros((2, 32)), mask=np.ones((2, 32))), "bool array"),
        (dict(constants=np.zeros((2, 32)), mask=np.ones((2, 31), bool)), "one shape"),
    ]
    for kwargs, message in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=message):  # noqa: SIM117
            with na.ablated(model, **kwargs):
                pytest.fail(f"{kwargs} was accepted")
    _assert_bit_identical(model, before)


# --- statistics without Snakemake -------------------------------------------------------------


def test_collect_statistics_equals_the_statistics_stage(run):
    model = run.load_model(NAME)
    ids = run.inputs(NAME, "stats")["input_ids"]
    batches = [torch.tensor(ids[start : start + 4]) for start in range(0, len(ids), 4)]
    ds = na.collect_statistics(model, batches, bin_width=BIN_WIDTH, range=RANGE, name=NAME)
    stage = run.statistics(NAME)
    assert set(ds.data_vars) == set(stage.data_vars)
    for variable in stage.data_vars:
        np.testing.assert_array_equal(ds[variable].values, stage[variable].values)
    for key in ("bin_width", "bin_index_offset", "n_bins", "n_tokens", "hook_point", "model"):
        assert ds.attrs[key] == stage.attrs[key], key


def test_collect_statistics_writes_a_store_when_asked(run, tmp_path):
    model = run.load_model(NAME)
    ids = run.inputs(NAME, "stats")["input_ids"][:4]
    ds = na.collect_statistics(model, [{"input_ids": ids}], 0.05, (-2, 2), out=tmp_path / "s.zarr")
    assert (tmp_path / "s.zarr").is_dir() and ds.sizes["bin"] == 80
    assert int(ds["count"][0, 0]) == ids.size


def test_collect_statistics_refuses_bad_batches(run):
    model = run.load_model(NAME)
    ids = run.inputs(NAME, "stats")["input_ids"][:2]
    cases = [
        ([], "no batch given"),
        ([{"input_ids": ids, "attention_mask": np.ones_like(ids)}], "no attention_mask"),
        ([ids[0]], "2 dimensions"),
        ([ids], "range"),
    ]
    for batches, message in cases:
        kwargs = {"range": (1.0,)} if message == "range" else {}
        with pytest.raises(ValueError, match=message):
            na.collect_statistics(model, batches, **kwargs)


def test_the_pipeline_json_is_what_the_test_compares_against(run_dir):
    """Guards the equality test: the JSONs exist and differ between methods."""
    losses = {
        method: read_json(run_dir / paths.eval_result(NAME, method, SEED, FRACTION))["loss"]
        for method in METHODS
    }
    assert len(set(losses.values())) == len(METHODS)


def test_artifacts_follow_the_config_given_as_a_mapping(run_dir):
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["methods"] = ["zero", "resample-chars"]
    artifacts = na.open_run(run_dir, config=config).artifacts(NAME)
    assert artifacts["resample/chars"] == run_dir / "results/tiny/resample/chars.h5"
    assert artifacts["resample/chars.inputs"].name == "chars.inputs.arrow"
    assert "optimal/seed0" not in artifacts and "eval/peak/seed0/frac0.50" not in artifacts
    assert artifacts["eval/resample-chars/seed0/frac0.50"].parent.name == "seed0"
