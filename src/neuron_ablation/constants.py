"""The constants a constant method (zero, mean, peak, optimal) folds into the ablated neurons.

One dispatch from a method to its per-layer values, used by the ``evaluate`` stage
(:func:`neuron_ablation.evaluation.method_scorer`) and by the Python API's ``ablated``, so a
notebook folds in exactly what the stage scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from neuron_ablation.methods import method as method_spec

ValuesAt = Callable[[Sequence[torch.Tensor], float], Sequence[torch.Tensor]]
"""(per layer bool [neuron] masks of the selection, fraction) -> per layer float [neuron]
constants, 0 where a neuron is not ablated or needs no value."""


def method_constants(
    method: str,
    *,
    stats: str | Path | None = None,
    optimal: str | Path | None = None,
    fractions: Iterable[float] = (),
) -> ValuesAt:
    """Read what ``method`` folds in, now (a damaged store stops a job before its model loads),
    and return its constants as a function of the selection's masks and fraction.

    ``zero`` reads nothing; ``mean`` and ``peak`` read the array of their name from the
    statistics store ``stats``; ``optimal`` reads the constants learned at each of ``fractions``
    from ``optimal`` (the store of the selection's seed) and checks that they were trained on
    the neurons the masks ablate.
    """
    from neuron_ablation.optimal import fold_values, read_constants
    from neuron_ablation.statistics import ablation_constants

    spec = method_spec(method)
    if spec.needs_bank:
        raise ValueError(f"method {method!r} replays a resampling bank: it has no constants")
    if spec.needs_training:
        learned = {fraction: read_constants(optimal, fraction) for fraction in fractions}
        return lambda masks, fraction: fold_values(learned[fraction], masks)
    if spec.needs_statistics:
        values = ablation_constants(stats, method)
        return lambda masks, fraction: values
    return lambda masks, fraction: [torch.zeros(len(m), dtype=torch.float64) for m in masks]
