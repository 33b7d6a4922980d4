"""Forward hooks for the duration of a block: the one place that installs and removes them.

Every hook site of the package (statistics, reference ablation, resampling, the resample bank,
the learned constants, the masked-LM head) goes through :func:`hooks_installed`, so a hook never
outlives its block: all are removed when the block ends, raises, or when installing a later one
fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from torch import nn
from torch.utils.hooks import RemovableHandle

ModuleHook = tuple[nn.Module, Callable]


@contextmanager
def hooks_installed(
    pre: Iterable[ModuleHook] = (),
    *,
    pre_with_kwargs: Iterable[ModuleHook] = (),
    post: Iterable[ModuleHook] = (),
) -> Iterator[None]:
    """Install ``(module, hook)`` pairs while the block runs.

    Args:
        pre: forward pre-hooks ``hook(module, args) -> None | new args``.
        pre_with_kwargs: forward pre-hooks ``hook(module, args, kwargs)``.
        post: forward hooks ``hook(module, args, output)``.
    """
    handles: list[RemovableHandle] = []
    try:
        for module, hook in pre:
            handles.append(module.register_forward_pre_hook(hook))
        for module, hook in pre_with_kwargs:
            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        for module, hook in post:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in reversed(handles):
            handle.remove()
