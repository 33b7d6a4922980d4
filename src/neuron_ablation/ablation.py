"""Replacing chosen attention pre-out neurons (z) with constants, at zero run-time cost.

The attention output projection computes ``y = W z + b``. Setting the neurons ``S`` of ``z`` to
constants ``c`` gives ``y = W[:, ~S] z[~S] + (b + W[:, S] c)``, so the ablation is folded into the
weights once: the columns ``S`` of ``W`` are zeroed and ``W[:, S] @ c`` is added to the bias (a bias
is created where the model has none). The ablated forward pass is then an ordinary forward pass.
:func:`folded_constant_ablation` undoes the fold on exit, so one loaded model scores many
fractions, each exactly as a freshly loaded model would.

:func:`overwrite_z_hooks` does the same thing the slow, obvious way (a forward pre-hook that
overwrites z); tests use it as the reference that the fold-in must match.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from neuron_ablation.architectures import (
    WeightLayout,
    architecture_of,
    attention_output_projections,
)
from neuron_ablation.hooks import hooks_installed


@torch.no_grad()
def fold_constants_into_projection(
    projection: nn.Module,
    layout: WeightLayout,
    ablate: torch.Tensor,
    values: torch.Tensor,
) -> None:
    """Make ``projection`` behave as if its input neurons ``ablate`` were fixed to ``values``.

    Args:
        projection: an attention output projection (``nn.Linear`` or GPT-2 ``Conv1D``).
        layout: ``"linear"`` (weight [d_model, neuron]) or ``"conv1d"`` (weight [neuron, d_model]).
        ablate: bool [neuron], the neurons to replace.
        values: float [neuron], the constant for each neuron (entries outside ``ablate`` unused).
    """
    weight = projection.weight
    ablate = ablate.to(weight.device)
    if not bool(ablate.any()):
        return
    constants = values.to(device=weight.device, dtype=torch.float64)[ablate]
    # The bias shift is computed in float64 so that folding is as exact as the model's dtype allows.
    if layout == "linear":
        shift = weight[:, ablate].double() @ constants
        weight[:, ablate] = 0
    else:
        shift = constants @ weight[ablate, :].double()
        weight[ablate, :] = 0
    if projection.bias is None:
        projection.bias = nn.Parameter(torch.zeros_like(shift, dtype=weight.dtype))
    projection.bias += shift.to(weight.dtype)


def fold_constant_ablation(
    model: nn.Module,
    ablate: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
) -> None:
    """Fold a constant ablation into every layer of ``model`` in place.

    Args:
        ablate: per layer, bool [neuron].
        values: per layer, float [neuron] constants (zeros for zero ablation).
    """
    layout = architecture_of(model).layout
    projections = attention_output_projections(model)
    _check_layer_count(projections, ablate, values)
    for projection, mask, value in zip(projections, ablate, values, strict=True):
        fold_constants_into_projection(projection, layout, mask, value)


@contextmanager
def folded_constant_ablation(
    model: nn.Module,
    ablate: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
) -> Iterator[None]:
    """:func:`fold_constant_ablation` for the duration of the block, then the original weights.

    The projections' weights and biases are copied (on their device) before folding and copied
    back afterwards, bit for bit; a bias the fold created is removed again.
    """
    projections = attention_output_projections(model)
    saved = [_parameters_of(p) for p in projections]
    fold_constant_ablation(model, ablate, values)
    try:
        yield
    finally:
        for projection, (weight, bias) in zip(projections, saved, strict=True):
            _restore_parameters(projection, weight, bias)


def _parameters_of(projection: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    bias = projection.bias
    return projection.weight.detach().clone(), None if bias is None else bias.detach().clone()


@torch.no_grad()
def _restore_parameters(
    projection: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None
) -> None:
    projection.weight.copy_(weight)
    if bias is None:
        projection.bias = None
    else:
        projection.bias.copy_(bias)


@contextmanager
def overwrite_z_hooks(
    model: nn.Module,
    ablate: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
) -> Iterator[None]:
    """Reference ablation: a forward pre-hook that overwrites z[..., ablate] with ``values``.

    ``values[layer]`` is float [neuron] (a constant per neuron) or anything broadcastable to z's
    shape [batch, position, neuron].
    """
    projections = attention_output_projections(model)
    _check_layer_count(projections, ablate, values)

    def make_hook(mask: torch.Tensor, value: torch.Tensor):
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]):
            z = args[0]
            replaced = torch.where(mask.to(z.device), value.to(z.device, z.dtype), z)
            return (replaced, *args[1:])

        return hook

    hooks = [(p, make_hook(m, v)) for p, m, v in zip(projections, ablate, values, strict=True)]
    with hooks_installed(hooks):
        yield


def _check_layer_count(projections: Sequence[nn.Module], *per_layer: Sequence) -> None:
    for items in per_layer:
        if len(items) != len(projections):
            raise ValueError(
                f"expected {len(projections)} layers of masks/values, got {len(items)}"
            )
