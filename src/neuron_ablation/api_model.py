"""The Python API, a live model: :func:`ablated` folds a constant ablation into a model's
attention output projections with :func:`neuron_ablation.ablation.folded_constant_ablation`, the
fold the ``evaluate`` stage scores with, and restores the weights bit for bit on exit;
:func:`evaluate` scores a model as that stage does.

Only torch-free modules are imported at module level (see :mod:`neuron_ablation.api`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neuron_ablation import paths
from neuron_ablation.api_run import Run, constant_method

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


# --- ablating a live model --------------------------------------------------------------------


@dataclass(frozen=True)
class Ablation:
    """What :func:`ablated` folded into the model."""

    mask: np.ndarray
    """bool [layer, neuron]: the ablated neurons."""
    values: np.ndarray
    """float64 [layer, neuron]: the constant written into each ablated neuron (0 elsewhere)."""

    @property
    def n_ablated(self) -> int:
        return int(self.mask.sum())


@contextmanager
def ablated(
    model: nn.Module,
    run: Run | None = None,
    name: str | None = None,
    method: str = "peak",
    fraction: float = 0.5,
    seed: int = 0,
    *,
    constants: np.ndarray | torch.Tensor | None = None,
    mask: np.ndarray | torch.Tensor | None = None,
) -> Iterator[Ablation]:
    """Fold an ablation into ``model`` for the block; the original weights return on exit.

    Either from a run: ``ablated(model, run, name, method="peak", fraction=0.5, seed=0)`` takes
    the run's selection of ``seed`` at ``fraction`` and the constants of ``method`` (zero, mean,
    peak, optimal) of model ``name`` (its name in the run). Or given directly:
    ``ablated(model, constants=c, mask=m)`` with float c and bool m of shape [layer, neuron]
    (or [layer, head, d_head]).

    The fold is :func:`neuron_ablation.ablation.folded_constant_ablation`, the one the
    ``evaluate`` stage scores with, applied on whatever device and dtype the model sits on:
    the ablated columns of each attention output projection are zeroed and their contribution
    W[:, S] c moved into the bias (created where there is none). On exit, also when the block
    raises, the projections' weights and biases are copied back bit for bit.

    Yields:
        the :class:`Ablation` folded in (mask and constants).
    """
    from neuron_ablation.ablation import folded_constant_ablation
    from neuron_ablation.architectures import check_widths

    if run is not None:
        if constants is not None or mask is not None:
            raise ValueError("pass either run and name, or constants and mask, not both")
        if name is None:
            raise ValueError(f"name: which model of the run (models: {', '.join(run.models)})")
        masks, values = _run_ablation(run, name, method, fraction, seed)
    elif constants is not None and mask is not None:
        masks, values = _given_ablation(constants, mask)
    else:
        raise ValueError("pass run and name (with method, fraction, seed), or constants and mask")
    check_widths(model, masks)
    with folded_constant_ablation(model, masks, values):
        yield Ablation(
            mask=_stacked(masks).astype(bool),
            values=_stacked([v.double() * m for v, m in zip(values, masks, strict=True)]),
        )


def _run_ablation(
    run: Run, name: str, method: str, fraction: float, seed: int
) -> tuple[list[torch.Tensor], Sequence[torch.Tensor]]:
    """Per layer bool [neuron] masks and float64 [neuron] constants, as the evaluate stage
    derives them (:func:`neuron_ablation.constants.method_constants`)."""
    from neuron_ablation.constants import method_constants
    from neuron_ablation.selection import ablation_masks

    spec = constant_method(method)
    masks = ablation_masks(run.ranks(name, seed), fraction)
    stats = run._existing(paths.stats(name)) if spec.needs_statistics else None
    optimal = run._existing(paths.optimal(name, seed)) if spec.needs_training else None
    values_at = method_constants(method, stats=stats, optimal=optimal, fractions=[fraction])
    return masks, values_at(masks, fraction)


def _given_ablation(constants, mask) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    import torch

    c = torch.as_tensor(constants, dtype=torch.float64).cpu()
    m = torch.as_tensor(mask).cpu()
    if m.dtype != torch.bool:
        raise ValueError(f"mask: a bool array [layer, neuron], got dtype {m.dtype}")
    if c.shape != m.shape or c.dim() not in (2, 3):
        raise ValueError(
            "constants and mask: arrays of one shape, [layer, neuron] or [layer, head, d_head]; "
            f"got {tuple(c.shape)} and {tuple(m.shape)}"
        )
    if bool(torch.isnan(c[m]).any()):
        raise ValueError("constants: NaN at an ablated neuron")
    c, m = c.flatten(1), m.flatten(1)
    return list(m), list(torch.nan_to_num(c, nan=0.0))


def _stacked(rows: Sequence[torch.Tensor]) -> np.ndarray:
    import numpy as np

    return np.stack([row.cpu().numpy() for row in rows])


# --- scoring ----------------------------------------------------------------------------------


def evaluate(
    model: nn.Module, run: Run, name: str, batch_size: int | None = None
) -> dict[str, Any]:
    """Score ``model`` on the run's evaluation split of ``name``, as the ``evaluate`` stage does
    (:func:`neuron_ablation.scoring.evaluate`): ``top1``, ``loss``, ``n_tokens`` and the
    per-sequence lists. Inside :func:`ablated`, the scores of the ablated model.

    Args:
        batch_size: default the model's ``batch_size`` in the config (the same batches, so the
            same bits as the pipeline's JSON).
    """
    from neuron_ablation.scoring import evaluate as score

    settings = run.model_config(name)
    with eval_mode(model):
        return score(
            model,
            run.inputs(name, "eval"),
            settings["task"],
            batch_size or settings["batch_size"],
            desc=f"evaluating {name}",
        )


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off for the block (the pipeline loads models in eval mode), then as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
