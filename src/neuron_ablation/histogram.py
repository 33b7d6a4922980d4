"""Streaming per-neuron mean and fixed-width histograms, in memory independent of token count.

Bins are aligned to multiples of the bin width ``eps``: bin ``k`` covers ``[k*eps, (k+1)*eps)``
with ``k*eps`` computed in float64. The tracked bins are ``k_lo <= k < k_hi``; values below
``k_lo*eps`` are counted as underflow, values at or above ``k_hi*eps`` as overflow (NaN counts as
overflow), so every activation is counted exactly once. The peak of a neuron is
``(k_max + 0.5) * eps`` with ``k_max`` its most populated tracked bin, ties to the lowest ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from neuron_ablation.bins import BinGrid


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


class NeuronHistogram:
    """Running count, float64 sum and aligned histogram of one layer's neurons.

    Internally each neuron has ``n_bins + 2`` slots: slot 0 is underflow, slot ``n_bins + 1`` is
    overflow, and slot ``1 + j`` is the tracked bin ``k = k_lo + j``.
    """

    def __init__(self, n_neurons: int, grid: BinGrid, device: torch.device | str = "cpu"):
        self.grid = grid
        self.n_neurons = n_neurons
        self.slots = grid.n_bins + 2
        self.count = 0
        self.sum = torch.zeros(n_neurons, dtype=torch.float64, device=device)
        self.counts = torch.zeros(n_neurons * self.slots, dtype=torch.int64, device=device)
        self._slot_offset = torch.arange(n_neurons, device=device) * self.slots

    @torch.no_grad()
    def update(self, z: torch.Tensor) -> None:
        """Add activations z [..., neuron] (all leading axes are observations)."""
        z = z.reshape(-1, self.n_neurons)
        self.count += z.shape[0]
        self.sum += z.sum(dim=0, dtype=torch.float64)
        # In place on the float64 bins: this update is most of the statistics pass's overhead.
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
    widths: Sequence[int], grid: BinGrid, device: torch.device | str = "cpu"
) -> list[NeuronHistogram]:
    return [NeuronHistogram(width, grid, device) for width in widths]
