"""The aligned bin grid of the histograms, without torch: the pre-flight check sizes the
histograms of every model before any job runs (``neuron_ablation.histogram`` re-exports it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BinGrid:
    """Tracked bins ``k_lo <= k < k_hi`` of width ``bin_width``."""

    bin_width: float
    k_lo: int
    k_hi: int

    @classmethod
    def covering(cls, bin_width: float, low: float, high: float) -> BinGrid:
        """The smallest grid of aligned bins that covers ``[low, high)``."""
        if not bin_width > 0:
            raise ValueError(f"bin_width must be > 0, got {bin_width}")
        if not low < high:
            raise ValueError(f"histogram range must have low < high, got [{low}, {high}]")
        # A tolerance keeps e.g. -10/0.01 = -1000.0000000000001 from adding a bin.
        k_lo = math.floor(low / bin_width + 1e-9)
        k_hi = math.ceil(high / bin_width - 1e-9)
        return cls(float(bin_width), k_lo, max(k_hi, k_lo + 1))

    @property
    def n_bins(self) -> int:
        return self.k_hi - self.k_lo

    def bin_indices(self) -> np.ndarray:
        """The integer ``k`` of each tracked bin, int64 [bin]."""
        return np.arange(self.k_lo, self.k_hi, dtype=np.int64)

    def left_edges(self) -> np.ndarray:
        """``k * bin_width`` in float64 for each tracked bin, float64 [bin]."""
        return self.bin_indices().astype(np.float64) * self.bin_width
