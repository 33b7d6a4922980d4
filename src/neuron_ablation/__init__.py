"""Ablation of attention pre-out neurons: zero, mean, peak and resampling, after Pochinkov et al."""

__version__ = "0.1.0"
