"""The tasks a model may have and the dtypes it may load in: the one list of each.

Imports neither torch nor anything that does, so the config check, the CLI's parser and the
method registry can use it cheaply. ``schemas/config.schema.yaml`` repeats both lists as the
``task`` and ``dtype`` enums (Snakemake validates configs with them; ``tests/unit/test_tasks.py``
keeps them equal); :mod:`neuron_ablation.models` maps each to its transformers Auto class and
torch dtype.
"""

from __future__ import annotations

TASKS: tuple[str, ...] = ("causal-lm", "masked-lm", "image-classification")
TEXT_TASKS: tuple[str, ...] = ("causal-lm", "masked-lm")
VISION_TASKS: tuple[str, ...] = ("image-classification",)

DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
"""The torch dtypes a model loads in, by name (``torch.<name>``)."""
