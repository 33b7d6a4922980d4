"""Every architecture of the table runs the whole pipeline: one Snakemake run, one model each.

Causal LMs on a text corpus, masked LMs with a fixed masked-evaluation corruption, and a ViT on a
local folder of class sub-folders.
"""

import json

import numpy as np
import pytest

from neuron_ablation.io import read_model_inputs
from tests.helpers.tiny_models import (
    CAUSAL_ARCHITECTURES,
    MASKED_ARCHITECTURES,
    VISION_ARCHITECTURES,
    image_folder,
    save_model,
    task_of,
)
from tests.helpers.workflow import run_snakemake

ALL = CAUSAL_ARCHITECTURES + MASKED_ARCHITECTURES + VISION_ARCHITECTURES


@pytest.fixture(scope="module")
def all_architectures_run(tmp_path_factory, corpus_file):
    root = tmp_path_factory.mktemp("architectures")
    models = {
        architecture: {
            "source": str(save_model(root / "models" / architecture, architecture)),
            "task": task_of(architecture),
            "dataset": "images" if architecture in VISION_ARCHITECTURES else "corpus",
            "seq_len": 16,
            "batch_size": 8,
            "device": "cpu",
        }
        for architecture in ALL
    }
    config = {
        "models": models,
        "datasets": {
            "corpus": {"source": str(corpus_file), "eval_share": 0.25},
            "images": {"source": str(image_folder(root / "images")), "eval_share": 0.3},
        },
        "methods": ["zero", "mean", "peak"],
        "seeds": [0],
        "fractions": [0.0, 0.5],
        "stats": {"n_tokens": 256, "n_images": 40, "bin_width": 0.01, "range": [-4.0, 4.0]},
        "eval": {"n_tokens": 128, "n_images": 20},
    }
    workdir = root / "run"
    run_snakemake(workdir, config, "--cores", "2")
    return workdir, config


@pytest.mark.parametrize("architecture", ALL)
def test_pipeline_runs_for(all_architectures_run, architecture):
    workdir, _ = all_architectures_run
    for method in ("zero", "mean", "peak"):
        result = json.loads(
            (workdir / f"results/{architecture}/eval/{method}/seed0/frac0.50.json").read_text()
        )
        assert result["n_ablated"] == 2 * 16
        assert np.isfinite(result["loss"]) and 0 <= result["top1"] <= 1
    assert (workdir / f"results/figures/{architecture}.png").exists()


def test_masked_lm_scores_only_the_fixed_corrupted_positions(all_architectures_run):
    workdir, _ = all_architectures_run
    inputs = read_model_inputs(workdir / "results/roberta/tokens/eval.arrow")
    labels = inputs["labels"]
    scored = labels != -100
    assert 0.05 < scored.mean() < 0.3  # ~15 % of the non-special positions
    assert (inputs["input_ids"][scored] == 4).mean() > 0.5  # mostly <mask> (id 4)
    assert (inputs["input_ids"][~scored] != 4).all()
    result = json.loads((workdir / "results/roberta/eval/zero/seed0/frac0.50.json").read_text())
    assert result["n_tokens"] == int(scored.sum())
    # statistics are collected on clean text: no mask tokens there
    assert "labels" not in read_model_inputs(workdir / "results/roberta/tokens/stats.arrow")


def test_image_inputs_are_preprocessed_pixels_with_labels(all_architectures_run):
    workdir, _ = all_architectures_run
    stats = read_model_inputs(workdir / "results/vit/tokens/stats.arrow")
    evals = read_model_inputs(workdir / "results/vit/tokens/eval.arrow")
    assert stats["pixel_values"].shape == (40, 1, 8, 8)
    assert evals["pixel_values"].shape == (20, 1, 8, 8)
    assert set(np.unique(evals["label"])) <= {0, 1, 2}
    assert stats["pixel_values"].min() >= -1.0 and stats["pixel_values"].max() <= 1.0
    # disjoint images: no evaluation image also feeds the statistics
    flat_stats = {row.tobytes() for row in stats["pixel_values"].reshape(40, -1)}
    assert not any(row.tobytes() in flat_stats for row in evals["pixel_values"].reshape(20, -1))
    result = json.loads((workdir / "results/vit/eval/peak/seed0/frac0.50.json").read_text())
    assert result["n_tokens"] == 20


@pytest.mark.parametrize("architecture", ALL)
def test_python_api_ablation_scores_equal_the_pipeline_json(all_architectures_run, architecture):
    """``neuron_ablation.ablated`` folds what the ``evaluate`` stage folded: inside the block the
    model scores the pipeline's JSON exactly (every per-sequence sum), for each method; after
    it every weight is bit for bit what it was."""
    import torch

    import neuron_ablation as na

    workdir, _ = all_architectures_run
    run = na.open_run(workdir)  # run_snakemake left the config as workdir/config.yaml
    model = run.load_model(architecture)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    for method in ("zero", "mean", "peak"):
        with na.ablated(model, run, architecture, method=method, fraction=0.5, seed=0):
            scored = na.evaluate(model, run, architecture)
        expected = run.evaluation(architecture, method, 0, 0.5)
        assert expected["n_ablated"] == 2 * 16
        for key in ("top1", "loss", "n_tokens", "seq_loss_sum", "seq_correct", "seq_n"):
            assert scored[key] == expected[key], (method, key)
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key].view(torch.uint8), value.view(torch.uint8)), key
