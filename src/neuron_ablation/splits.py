"""The statistics/evaluation split of one collection (text documents or images), shared by
text, images and the demo's training so that every reader holds out the same items."""

from __future__ import annotations

import numpy as np


class NotEnoughDataError(ValueError):
    """A split has fewer tokens (images) than the config asks for."""


def collection_split(n_documents: int, part: str, eval_share: float, split_seed: int) -> np.ndarray:
    """Indices (in file order) of the documents of ``part`` in a single collection."""
    is_eval = np.random.default_rng(split_seed).random(n_documents) < eval_share
    return np.flatnonzero(is_eval if part == "eval" else ~is_eval)
