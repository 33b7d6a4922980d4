"""Intervals of paired differences over seeds and sequences (crossed random factors).

Seeds pair the methods: seed ``s`` selects the same neurons for every method of a model (and
the same evaluation tokens are scored), so ``metric(A, s) - metric(B, s)`` isolates the effect of
the constant written into those neurons. :func:`crossed_interval` is the two-sided t interval of
the mean of such differences that counts both sources of noise, which neurons a seed ablates and
which text is scored; :mod:`neuron_ablation.comparison` tabulates it for every pair of methods and
:mod:`neuron_ablation.planning` sizes designs with the same model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

TIE_TOLERANCE = 1e-9
"""A mean difference (in shown units) below this is a tie: the float noise of terms that cancel."""


@dataclass(frozen=True)
class PairedDifference:
    """Mean paired difference with its interval (None bounds where nothing can be estimated).

    ``df`` is the (Satterthwaite) degrees of freedom of the t interval; ``seed_halfwidth`` the
    largest half-width of the per-seed intervals (sequence noise only), None without sequences.
    """

    mean: float
    ci_low: float | None
    ci_high: float | None
    df: float | None = None
    seed_halfwidth: float | None = None

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes 0; None without an interval."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low > 0 or self.ci_high < 0


def crossed_interval(a: np.ndarray, confidence: float = 0.95) -> PairedDifference:
    """Interval of the grand mean of paired differences ``a`` [seed, sequence].

    Seeds (which neurons are ablated) and sequences (which text is scored) are crossed random
    factors: every seed scores the same sequences. With ``a = mu + seed + sequence + residual``,
    the grand mean has variance ``var_seed / S + var_seq / J + var_res / (S J)``. The three
    components are estimated from the two-way ANOVA mean squares (each truncated at zero), and
    the t interval takes Satterthwaite's degrees of freedom. With one seed this is the paired t
    interval over sequences; with one sequence per seed (no per-sequence data) the paired t
    interval over seeds.
    """
    a = np.asarray(a, dtype=np.float64)
    n_seeds, n_seqs = a.shape
    mean = float(a.mean())
    if n_seeds * n_seqs < 2:
        return PairedDifference(mean, None, None)
    seed_means, seq_means = a.mean(axis=1), a.mean(axis=0)
    # (coefficient, mean square, its degrees of freedom) terms of the variance of the mean
    if n_seeds > 1 and n_seqs > 1:
        n = n_seeds * n_seqs
        ms_seed = n_seqs * np.sum((seed_means - mean) ** 2) / (n_seeds - 1)
        ms_seq = n_seeds * np.sum((seq_means - mean) ** 2) / (n_seqs - 1)
        residual = a - seed_means[:, None] - seq_means[None, :] + mean
        df_res = (n_seeds - 1) * (n_seqs - 1)
        ms_res = np.sum(residual**2) / df_res
        coefficient_res = 1 / n
        terms = []
        for ms, df in ((ms_seed, n_seeds - 1), (ms_seq, n_seqs - 1)):
            if ms > ms_res:  # a component estimated below zero is set to zero
                terms.append((1 / n, ms, df))
                coefficient_res -= 1 / n
        terms.append((coefficient_res, ms_res, df_res))
    elif n_seeds > 1:
        terms = [(1 / n_seeds, np.var(seed_means, ddof=1), n_seeds - 1)]
    else:
        terms = [(1 / n_seqs, np.var(seq_means, ddof=1), n_seqs - 1)]
    variance = float(sum(c * ms for c, ms, _ in terms))
    if variance <= 0:
        return PairedDifference(mean, mean, mean, math.inf)
    df = variance**2 / float(sum((c * ms) ** 2 / d for c, ms, d in terms if c * ms != 0))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(variance)
    return PairedDifference(mean, mean - half, mean + half, df)


def paired_difference(a: np.ndarray, confidence: float = 0.95) -> PairedDifference:
    """:func:`crossed_interval` plus the widest per-seed interval (sequence noise alone)."""
    a = np.asarray(a, dtype=np.float64)
    overall = crossed_interval(a, confidence)
    if a.shape[1] < 2:
        return overall
    halves = []
    for row in a:
        one = crossed_interval(row[None, :], confidence)
        halves.append(0.0 if one.ci_high is None else one.ci_high - one.mean)
    return PairedDifference(overall.mean, overall.ci_low, overall.ci_high, overall.df, max(halves))


def exact_tie(diff: PairedDifference) -> bool:
    """Differences that cancel leave float noise (e.g. 2e-15 pp): that is a tie."""
    return abs(diff.mean) < TIE_TOLERANCE


def decided(diff: PairedDifference) -> bool | None:
    """Whether the interval excludes 0 (False for an exact tie; None without an interval)."""
    return False if exact_tie(diff) else diff.significant
