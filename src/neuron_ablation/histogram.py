"""Streaming per-neuron mean and fixed-width histograms, in memory independent of token count.

Bins are aligned to multiples of the bin width ``eps``: bin ``k`` covers ``[k*eps, (k+1)*eps)``
with ``k*eps`` computed in float64. The tracked bins are ``k_lo <= k < k_hi``; values below
``k_lo*eps`` are counted as underflow, values at or above ``k_hi*eps`` as overflow (NaN counts as
overflow), so every activation is counted exactly once. The peak of a neuron is
``(k_max + 0.5) * eps`` with ``k_max`` its most populated tracked bin, ties to the lowest ``k``.

Two exact implementations of the count update, identical bin for bin (tested):

- ``numba``: one fused pass on the CPU (sum, bin against the float64 edges, count in place),
  about 2.5 ns per activation, so the statistics pass costs about what a forward pass does.
- ``torch``: vectorised tensor operations, for GPUs (and CPUs without numba): float64 binning
  and a ``bincount`` over every slot of the layer per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from neuron_ablation.bins import BinGrid

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the torch path still works
    numba = None

Backend = Literal["auto", "numba", "torch"]


def bin_of(values: torch.Tensor, bin_width: float) -> torch.Tensor:
    """The aligned bin ``k`` with ``k*eps <= value < (k+1)*eps`` (float64 [...], NaN stays NaN).

    ``floor(value / eps)`` can be off by one next to an edge because of rounding; the two
    corrections make the result agree exactly with comparisons against the float64 edges. Both
    are taken against the first estimate: if it is one too high, only ``below`` holds, if one too
    low, only ``above`` (the estimate's relative error is ~1e-16, so it is never off by two for
    finite values inside any tracked range).
    """
    x = values.double()
    k = torch.mul(x, 1.0 / bin_width).floor_()
    below = x < k * bin_width
    above = x >= (k + 1) * bin_width
    return k.sub_(below.to(k.dtype)).add_(above.to(k.dtype))


def _accumulate(
    z: np.ndarray, sums: np.ndarray, counts: np.ndarray, bin_width: float, k_lo: int, k_hi: int
) -> None:
    """Add z [observation, neuron] into sums float64 [neuron] and counts int64 [neuron, slot]
    (slots as in :class:`NeuronHistogram`), with the arithmetic of :func:`bin_of`.

    Neuron-major order keeps one neuron's slots (a few KiB) in L1 while its column is read; the
    column's cache lines are shared by the next neurons, so z streams through memory once.
    """
    inverse = 1.0 / bin_width
    low, high = k_lo * bin_width, k_hi * bin_width
    overflow = counts.shape[1] - 1
    for n in range(z.shape[1]):
        row = counts[n]
        total = 0.0
        for r in range(z.shape[0]):
            x = np.float64(z[r, n])
            total += x
            if x >= low and x < high:
                k = np.floor(x * inverse)
                if x < k * bin_width:
                    k -= 1.0
                elif x >= (k + 1.0) * bin_width:
                    k += 1.0
                row[int(k) - k_lo + 1] += 1
            elif x < low:
                row[0] += 1
            else:  # at or above the range, or NaN
                row[overflow] += 1
        sums[n] += total


_fused_accumulate = numba.njit(nogil=True, cache=True)(_accumulate) if numba else None


def resolve_backend(backend: Backend, device: torch.device | str) -> Literal["numba", "torch"]:
    """``auto``: the fused kernel on a CPU where numba is installed, else torch."""
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"histogram backend must be auto, numba or torch, got {backend!r}")
    fused_available = torch.device(device).type == "cpu" and _fused_accumulate is not None
    if backend == "numba" and not fused_available:
        raise ValueError("the numba histogram backend needs numba and a CPU device")
    if backend == "auto":
        return "numba" if fused_available else "torch"
    return backend


class NeuronHistogram:
    """Running count, float64 sum and aligned histogram of one layer's neurons.

    Internally each neuron has ``n_bins + 2`` slots: slot 0 is underflow, slot ``n_bins + 1`` is
    overflow, and slot ``1 + j`` is the tracked bin ``k = k_lo + j``.
    """

    def __init__(
        self,
        n_neurons: int,
        grid: BinGrid,
        device: torch.device | str = "cpu",
        backend: Backend = "auto",
    ):
        self.grid = grid
        self.n_neurons = n_neurons
        self.slots = grid.n_bins + 2
        self.backend = resolve_backend(backend, device)
        self.count = 0
        self.sum = torch.zeros(n_neurons, dtype=torch.float64, device=device)
        self.counts = torch.zeros(n_neurons * self.slots, dtype=torch.int64, device=device)
        self._slot_offset = torch.arange(n_neurons, device=device) * self.slots

    @torch.no_grad()
    def update(self, z: torch.Tensor) -> None:
        """Add activations z [..., neuron] (all leading axes are observations)."""
        z = z.reshape(-1, self.n_neurons)
        self.count += z.shape[0]
        if self.backend == "numba":
            self._update_fused(z)
        else:
            self._update_torch(z)

    def _update_fused(self, z: torch.Tensor) -> None:
        if z.dtype not in (torch.float32, torch.float64):
            z = z.float()  # float16 / bfloat16 -> float32 is exact
        counts = self.counts.view(self.n_neurons, self.slots).numpy()
        grid = self.grid
        _fused_accumulate(z.numpy(), self.sum.numpy(), counts, grid.bin_width, grid.k_lo, grid.k_hi)

    def _update_torch(self, z: torch.Tensor) -> None:
        self.sum += z.sum(dim=0, dtype=torch.float64)
        # In place on the float64 bins: fewer temporaries of the layer's whole batch.
        slot = bin_of(z, self.grid.bin_width).sub_(self.grid.k_lo - 1)
        slot = slot.nan_to_num_(nan=self.slots - 1).clamp_(0, self.slots - 1)
        slot = slot.long().add_(self._slot_offset)
        self.counts += torch.bincount(slot.view(-1), minlength=self.counts.numel())

    def mean(self) -> np.ndarray:
        """float64 [neuron]."""
        return (self.sum / max(self.count, 1)).cpu().numpy()

    def histogram(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hist int64 [neuron, bin], underflow int64 [neuron], overflow int64 [neuron])."""
        counts = self.counts.view(self.n_neurons, self.slots).cpu().numpy()
        return counts[:, 1:-1], counts[:, 0], counts[:, -1]


def peak_values(hist: np.ndarray, grid: BinGrid) -> np.ndarray:
    """Centre of the most populated tracked bin, float64 [...]; ties go to the lowest k.

    Args:
        hist: int [..., bin] counts over ``grid``'s tracked bins.
    """
    k_max = grid.k_lo + np.argmax(hist, axis=-1)
    return (k_max.astype(np.float64) + 0.5) * grid.bin_width


def layer_histograms(
    widths: Sequence[int],
    grid: BinGrid,
    device: torch.device | str = "cpu",
    backend: Backend = "auto",
) -> list[NeuronHistogram]:
    return [NeuronHistogram(width, grid, device, backend) for width in widths]
