"""Non-finite numbers (NaN, +inf, -inf) stop the run with an error that says where they began.

The checks sit where the pipeline already holds the numbers: the statistics pass checks each
layer's activations before they reach the histogram (so a NaN is never binned, e.g. as
overflow) and the model body's output; evaluation and the baseline check every chunk of logits.
Each check is one reduction, ``torch.isfinite(x).all()``. Only when one fails is the batch run
again with a hook on every module, to name the first module whose output is not finite, its
layer, and the parameters that hold non-finite values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from neuron_ablation.architectures import transformer_blocks
from neuron_ablation.hooks import hooks_installed


class NonFiniteError(ValueError):
    """NaN or infinity in activations or logits: the model or its inputs are damaged."""


def require_finite(values: torch.Tensor, what: str) -> None:
    """Raise :class:`NonFiniteError` naming ``what`` unless every entry of ``values`` is finite.

    Args:
        values: float [...], any shape.
    """
    if not bool(torch.isfinite(values).all()):
        raise NonFiniteError(f"{what} {kind_of(values)}")


def kind_of(values: torch.Tensor) -> str:
    """E.g. ``hold 3 NaN and 1 inf (of 512 values)`` for a float tensor [...]."""
    n_nan = int(torch.isnan(values).sum())
    n_inf = int(torch.isinf(values).sum())
    found = [f"{n_nan} NaN"] * bool(n_nan) + [f"{n_inf} inf"] * bool(n_inf)
    return f"hold {' and '.join(found) or 'no non-finite value'} (of {values.numel()} values)"


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """The floating-point tensors in a module's output (a tensor, tuple, list, dict or
    ``ModelOutput``; caches and other objects are skipped)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _not_finite(value: Any) -> torch.Tensor | None:
    return next((t for t in _tensors(value) if not bool(torch.isfinite(t).all())), None)


def first_nonfinite_module(model: nn.Module, forward: Callable[[], Any]) -> tuple[str, str] | None:
    """Run ``forward`` (one pass of ``model``) with a hook on every module: the name of the first
    module to finish whose output is not finite, with what it holds; None if none.

    Modules finish innermost first, so in a layer whose value projection holds a NaN weight this
    names ``...self_attn.v_proj``, not the attention block around it.
    """
    found: list[tuple[str, str]] = []

    def watch(name: str):
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            if not found and (bad := _not_finite(output)) is not None:
                found.append((name, kind_of(bad)))

        return hook

    hooks = [(module, watch(name)) for name, module in model.named_modules() if name]
    with hooks_installed(post=hooks):
        forward()
    return found[0] if found else None


def nonfinite_parameters(model: nn.Module, limit: int = 5) -> list[str]:
    """Names of (at most ``limit``) parameters and buffers that hold NaN or infinity."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    bad = [
        f"{name} ({kind_of(t)})"
        for name, t in tensors
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    return bad[:limit] + [f"and {len(bad) - limit} more"] * (len(bad) > limit)


def layer_of(model: nn.Module, module_name: str) -> int | None:
    """The index of the transformer block that ``module_name`` lies in; None outside the blocks
    (embeddings, final norm, head)."""
    blocks = {id(block): i for i, block in enumerate(transformer_blocks(model))}
    for name, module in model.named_modules():
        if id(module) in blocks and (module_name + ".").startswith(name + "."):
            return blocks[id(module)]
    return None


def where_it_began(model: nn.Module, forward: Callable[[], Any]) -> str:
    """A sentence on where non-finite values first appear in one pass, and which parameters
    hold them (run only after a check failed)."""
    first = first_nonfinite_module(model, forward)
    if first is None:
        where = "no module's output was non-finite when the batch was run again"
    else:
        name, kind = first
        layer = layer_of(model, name)
        place = f"layer {layer}" if layer is not None else "outside the transformer layers"
        where = f"the first module whose output is not finite is {name} ({place}; its outputs "
        where += f"{kind})"
    parameters = nonfinite_parameters(model)
    held = (
        f"non-finite parameters: {', '.join(parameters)}"
        if parameters
        else "no parameter holds NaN or inf (damaged inputs, or an overflow in half precision: "
        "try dtype float32)"
    )
    return f"{where}; {held}"


@contextmanager
def located(model: nn.Module, forward: Callable[[], Any]) -> Iterator[None]:
    """Add :func:`where_it_began` (by running ``forward`` again) to a :class:`NonFiniteError`
    raised inside."""
    try:
        yield
    except NonFiniteError as error:
        raise NonFiniteError(f"{error}: {where_it_began(model, forward)}") from None


@contextmanager
def of_model(model_name: str, stage: str) -> Iterator[None]:
    """Name the model and the stage in a :class:`NonFiniteError` raised inside, and say that
    nothing was written."""
    try:
        yield
    except NonFiniteError as error:
        raise NonFiniteError(
            f"model {model_name!r}, {stage}: {error}. Nothing was written. Non-finite numbers "
            "are not counted or scored: check the model's weights (docs/troubleshooting-errors.md)"
        ) from None
