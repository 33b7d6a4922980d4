"""Inspect a statistics store: layer summary, one neuron's histogram, atypical neurons, Figure 1.

Reads ``results/{model}/stats.zarr`` (layout in :mod:`neuron_ablation.statistics`) through
``xarray.open_zarr``, one layer of histograms at a time, so a 7B model's store never has to fit
in memory at once.

Atypicality score
-----------------
For neuron ``i`` with stored mean ``mu_i`` (exact, over every activation), naive peak ``p_i``
(centre of its fullest ``eps``-wide bin) and standard deviation ``s_i`` estimated from its tracked
histogram (bin centres; under/overflow excluded)::

    score_i = max(|p_i|, |mu_i|, |p_i - mu_i|) / max(s_i, eps)

It is the largest distance between any two of the three constants that zero, mean and peak
ablation would write into the neuron, in units of the neuron's own spread. A zero-centred
symmetric unimodal neuron (the paper's typical case, where the three methods agree) scores about
0; a neuron whose peak sits off zero scores ``|p|/s``; a bimodal or skewed neuron, whose mode and
mean part, scores ``|p - mu|/s``. The floor ``eps`` keeps (near-)constant neurons finite. The
peak is a histogram mode: with few activations per bin it is noisy, and so is the score.

The top-neuron CSV also reports Sarle's bimodality coefficient ``(g^2 + 1) / k`` (``g`` skewness,
``k`` non-excess kurtosis, both from the histogram): 1/3 for a normal, 5/9 for a uniform; values
above 5/9 suggest two modes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import xarray as xr
from tqdm import tqdm

from neuron_ablation.integrity_zarr import open_statistics_store
from neuron_ablation.io import atomic_output

BIMODAL_THRESHOLD = 5 / 9
SCORE_DEFINITION = "max(|peak|, |mean|, |peak - mean|) / max(hist_std, bin_width)"


def open_store(path: str | Path) -> xr.Dataset:
    """The statistics store as a lazy xarray Dataset (dims layer, neuron, bin), after its full
    integrity check (every chunk present, counts and peaks consistent): a store that lost a chunk
    would otherwise read zeros."""
    open_statistics_store(path, counts=True)
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not yet part of the v3 spec; we wrote it.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        return xr.open_zarr(str(path))


def bin_width(ds: xr.Dataset) -> float:
    return float(ds.attrs["bin_width"])


def bin_centres(ds: xr.Dataset) -> np.ndarray:
    """float64 [bin]: ``(k + 0.5) * bin_width`` for every tracked bin."""
    return (ds["bin"].values.astype(np.float64) + 0.5) * bin_width(ds)


def bin_position(ds: xr.Dataset, value: float) -> int | None:
    """Position j along ``bin`` of the tracked bin holding ``value``, None outside the range."""
    k = math.floor(value / bin_width(ds))
    j = k - int(ds.attrs["bin_index_offset"])
    return j if 0 <= j < ds.sizes["bin"] else None


# --- per-neuron moments and the score -------------------------------------------------------


@dataclass(frozen=True)
class Moments:
    """Moments of each neuron's tracked histogram, float64 [neuron] each."""

    n: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    skewness: np.ndarray
    kurtosis: np.ndarray  # non-excess: 3 for a normal

    @property
    def bimodality(self) -> np.ndarray:
        """Sarle's coefficient (skewness^2 + 1) / kurtosis."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.skewness**2 + 1) / self.kurtosis


def histogram_moments(hist: np.ndarray, centres: np.ndarray) -> Moments:
    """Moments of binned data, every count at its bin centre.

    Args:
        hist: int [neuron, bin] counts.
        centres: float64 [bin].
    """
    h = hist.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = h.sum(axis=1)
        mean = h @ centres / n
        # Central moments from deviations, not raw powers: a neuron at 5 with spread 0.01 would
        # lose most digits to cancellation in E[x^2] - E[x]^2.
        d = centres[None, :] - mean[:, None]
        m2 = (h * d**2).sum(axis=1) / n
        m3 = (h * d**3).sum(axis=1) / n
        m4 = (h * d**4).sum(axis=1) / n
        return Moments(n, mean, np.sqrt(m2), m3 / m2**1.5, m4 / m2**2)


def atypicality(mean: np.ndarray, peak: np.ndarray, std: np.ndarray, width: float) -> np.ndarray:
    """The score of the module docstring, float64 [...] (all inputs [...])."""
    spread = np.maximum(np.nan_to_num(std, nan=0.0), width)
    distance = np.maximum.reduce([np.abs(peak), np.abs(mean), np.abs(peak - mean)])
    return distance / spread


def iter_layers(ds: xr.Dataset, desc: str = "layers") -> Iterator[tuple[int, xr.Dataset]]:
    """(layer index, that layer's slice with its histograms loaded), with a progress bar."""
    for layer in tqdm(ds["layer"].values.tolist(), desc=desc, unit="layer"):
        yield int(layer), ds.sel(layer=layer).load()


def neuron_scores(ds: xr.Dataset) -> pl.DataFrame:
    """One row per (layer, neuron): mean, peak, histogram moments, under/overflow and score."""
    centres, width = bin_centres(ds), bin_width(ds)
    frames = []
    for layer, part in iter_layers(ds, desc="scoring neurons"):
        moments = histogram_moments(part["hist"].values, centres)
        mean, peak = part["mean"].values, part["peak"].values
        frames.append(
            pl.DataFrame(
                {
                    "layer": np.full(len(mean), layer, dtype=np.int64),
                    "neuron": part["neuron"].values.astype(np.int64),
                    "score": atypicality(mean, peak, moments.std, width),
                    "mean": mean,
                    "peak": peak,
                    "hist_std": moments.std,
                    "skewness": moments.skewness,
                    "bimodality": moments.bimodality,
                    "count": part["count"].values,
                    "underflow": part["underflow"].values,
                    "overflow": part["overflow"].values,
                }
            )
        )
    # NaN (a neuron with no tracked activation) would sort above every score; null sorts last.
    return pl.concat(frames).with_columns(pl.col(pl.Float64).fill_nan(None))


def top_neurons(scores: pl.DataFrame, n: int = 20) -> pl.DataFrame:
    """The ``n`` highest scores, with a 1-based ``rank`` column first."""
    top = scores.sort("score", descending=True, nulls_last=True).head(n)
    return top.with_row_index("rank", offset=1)


# --- summary ----------------------------------------------------------------------------------


def layer_summary(ds: xr.Dataset, k: float = 5.0) -> pl.DataFrame:
    """Per layer: neurons, tokens, mean of means, share of |peak| > k * bin_width, under/overflow.

    Needs only the [layer, neuron] arrays, never the histograms.
    """
    threshold = k * bin_width(ds)
    mean, peak = ds["mean"].values, ds["peak"].values
    return pl.DataFrame(
        {
            "layer": ds["layer"].values.astype(np.int64),
            "neurons": np.full(len(mean), mean.shape[1], dtype=np.int64),
            "tokens": ds["count"].values.max(axis=1),
            "mean_of_means": mean.mean(axis=1),
            "mean_abs_peak": np.abs(peak).mean(axis=1),
            "share_peak_off_zero": (np.abs(peak) > threshold).mean(axis=1),
            "underflow": ds["underflow"].values.sum(axis=1),
            "overflow": ds["overflow"].values.sum(axis=1),
        }
    )


def format_summary(ds: xr.Dataset, summary: pl.DataFrame, k: float) -> str:
    """Store header plus one aligned line per layer of :func:`layer_summary`."""
    width = bin_width(ds)
    low = int(ds.attrs["bin_index_offset"]) * width
    high = low + int(ds.attrs["n_bins"]) * width
    a = ds.attrs
    lines = [
        f"model {a.get('model', '?')}  dataset {a.get('dataset', '?')}  "
        f"tokens {a.get('n_tokens', '?')}  layers {ds.sizes['layer']}  "
        f"neurons/layer {ds.sizes['neuron']}",
        f"bin width {width:g}  tracked range [{low:g}, {high:g})  "
        f"off-zero: |peak| > {k:g} bins = {k * width:g}",
        "",
        f"{'layer':>5} {'neurons':>7} {'tokens':>9} {'mean(mean)':>11} {'mean|peak|':>11} "
        f"{'peak off 0':>10} {'underflow':>10} {'overflow':>9}",
    ]
    for r in summary.iter_rows(named=True):
        lines.append(
            f"{r['layer']:>5} {r['neurons']:>7} {r['tokens']:>9} {r['mean_of_means']:>11.4f} "
            f"{r['mean_abs_peak']:>11.4f} {r['share_peak_off_zero']:>10.1%} "
            f"{r['underflow']:>10} {r['overflow']:>9}"
        )
    return "\n".join(lines)


# --- one neuron -------------------------------------------------------------------------------


def display_window(
    counts: np.ndarray, keep: Sequence[int | None] = (), tail: float = 1e-3
) -> tuple[int, int]:
    """Bin positions [lo, hi) that hold all but ``tail`` of the mass at each end.

    Widened to include the positions in ``keep`` (e.g. the bins of zero, mean and peak) and
    padded by 5 % so the markers never sit on the border.

    Args:
        counts: int [bin].
    """
    n = len(counts)
    cum = np.cumsum(counts)
    total = cum[-1] if n else 0
    if total == 0:
        return 0, n
    lo = int(np.searchsorted(cum, tail * total, side="right"))
    hi = int(np.searchsorted(cum, (1 - tail) * total, side="left")) + 1
    for j in keep:
        if j is not None:
            lo, hi = min(lo, j), max(hi, j + 1)
    pad = max(1, (hi - lo) // 20)
    return max(0, lo - pad), min(n, hi + pad)


def merge_bins(counts: np.ndarray, lo: int, hi: int, max_bins: int) -> tuple[np.ndarray, int]:
    """Sum ``counts[lo:hi]`` into at most ``max_bins`` groups of ``factor`` adjacent bins.

    Returns (merged float64 [group], factor); the last group is zero-padded.
    """
    factor = max(1, math.ceil((hi - lo) / max_bins))
    window = counts[lo:hi].astype(np.float64)
    padded = np.zeros(math.ceil(len(window) / factor) * factor)
    padded[: len(window)] = window
    return padded.reshape(-1, factor).sum(axis=1), factor


def terminal_histogram(
    counts: np.ndarray,
    first_edge: float,
    row_width: float,
    marks: dict[str, float],
    bar_width: int = 40,
    ascii_only: bool = False,
) -> str:
    """Horizontal bar chart, one row per bin, with ``marks`` (e.g. zero, mean, peak) labelled.

    Args:
        counts: float [row] counts.
        first_edge: left edge of the first row; row ``r`` covers
            ``[first_edge + r * row_width, first_edge + (r + 1) * row_width)``.
    """
    blocks = " ▏▎▍▌▋▊▉█"
    top = counts.max() if len(counts) and counts.max() > 0 else 1.0
    lines = []
    for r, count in enumerate(counts):
        left = first_edge + r * row_width
        right = left + row_width
        eighths = round(count / top * bar_width * 8)
        if ascii_only:
            bar = "#" * round(eighths / 8)
        else:
            bar = "█" * (eighths // 8) + (blocks[eighths % 8] if eighths % 8 else "")
        labels = [name for name, value in marks.items() if left <= value < right]
        note = f"  <- {', '.join(labels)}" if labels else ""
        lines.append(f"[{left:>9.4f}, {right:>9.4f}) {bar:<{bar_width}} {int(count):>8}{note}")
    return "\n".join(lines)


def neuron_view(
    ds: xr.Dataset, layer: int, neuron: int, rows: int = 30, ascii_only: bool = False
) -> str:
    """Mean, peak, spread, score and a terminal histogram of one neuron."""
    if layer not in ds["layer"].values or neuron not in ds["neuron"].values:
        raise ValueError(
            f"no neuron ({layer}, {neuron}): layers 0..{ds.sizes['layer'] - 1}, "
            f"neurons 0..{ds.sizes['neuron'] - 1}"
        )
    part = ds.sel(layer=layer, neuron=neuron).load()
    counts = part["hist"].values
    width = bin_width(ds)
    mean, peak = float(part["mean"]), float(part["peak"])
    moments = histogram_moments(counts[None, :], bin_centres(ds))
    std = float(moments.std[0])
    score = float(atypicality(np.array(mean), np.array(peak), np.array(std), width))
    marks = {"zero": 0.0, "mean": mean, "peak": peak}
    lo, hi = display_window(counts, keep=[bin_position(ds, v) for v in marks.values()])
    merged, factor = merge_bins(counts, lo, hi, rows)
    first_edge = (int(ds.attrs["bin_index_offset"]) + lo) * width
    header = [
        f"layer {layer} neuron {neuron}  ({ds.attrs.get('model', '?')})",
        f"mean {mean:.6g}  peak {peak:.6g}  hist std {std:.4g}  skewness "
        f"{float(moments.skewness[0]):.3g}  bimodality {float(moments.bimodality[0]):.3f}",
        f"atypicality {score:.3g}  ({SCORE_DEFINITION})",
        f"activations {int(part['count'])}  underflow {int(part['underflow'])}  "
        f"overflow {int(part['overflow'])}",
        f"rows of {factor} bin(s) of {width:g} (the peak uses single bins)",
        "",
    ]
    body = terminal_histogram(merged, first_edge, factor * width, marks, ascii_only=ascii_only)
    return "\n".join(header) + body


# --- Figure 1 ---------------------------------------------------------------------------------


def layer_average(ds: xr.Dataset, layer: int) -> np.ndarray:
    """float64 [bin]: share of activations per bin, averaged over the layer's neurons."""
    part = ds.sel(layer=layer).load()
    count = np.maximum(part["count"].values, 1).astype(np.float64)
    return (part["hist"].values / count[:, None]).mean(axis=0)


def _plot_distribution(ax, ds: xr.Dataset, shares: np.ndarray, marks: dict[str, float]) -> None:
    """Stairs of a [bin] share array as a density, cropped and merged to at most 120 bins."""
    width = bin_width(ds)
    lo, hi = display_window(shares, keep=[bin_position(ds, v) for v in marks.values()])
    merged, factor = merge_bins(shares, lo, hi, 120)
    first_edge = (int(ds.attrs["bin_index_offset"]) + lo) * width
    edges = first_edge + np.arange(len(merged) + 1) * factor * width
    ax.stairs(merged / (factor * width), edges, fill=True, alpha=0.6, color="tab:gray")
    styles = {"zero": ("black", "-"), "mean": ("tab:blue", "--"), "peak": ("tab:red", ":")}
    for name, value in marks.items():
        color, style = styles[name]
        ax.axvline(value, color=color, linestyle=style, linewidth=1.2, label=f"{name} {value:.3g}")
    ax.set_xlabel("activation")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)


def plot_neurons(ds: xr.Dataset, top: pl.DataFrame, out: Path, n_panels: int = 3) -> None:
    """Figure 1: a layer's average distribution, then the ``n_panels`` most atypical neurons.

    The average panel shows the layer of the most atypical neuron.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(top.head(n_panels).iter_rows(named=True))
    layer = rows[0]["layer"] if rows else int(ds["layer"].values[0])
    fig, axes = plt.subplots(
        1, 1 + len(rows), figsize=(4 * (1 + len(rows)), 3.6), constrained_layout=True
    )
    axes = np.atleast_1d(axes)
    mean_of_layer = float(ds["mean"].sel(layer=layer).mean())
    _plot_distribution(axes[0], ds, layer_average(ds, layer), {"zero": 0.0, "mean": mean_of_layer})
    axes[0].set_title(f"layer {layer}: average of {ds.sizes['neuron']} neurons", fontsize=9)
    axes[0].set_ylabel("density")
    for ax, row in zip(axes[1:], rows, strict=True):
        part = ds.sel(layer=row["layer"], neuron=row["neuron"]).load()
        shares = part["hist"].values / max(int(part["count"]), 1)
        _plot_distribution(ax, ds, shares, {"zero": 0.0, "mean": row["mean"], "peak": row["peak"]})
        ax.set_title(
            f"#{row['rank']}: layer {row['layer']} neuron {row['neuron']} "
            f"(score {row['score']:.2f})",
            fontsize=9,
        )
    fig.suptitle(
        f"{ds.attrs.get('model', '')}: attention pre-out activations, "
        f"bin width {bin_width(ds):g} (display bins merged)",
        fontsize=10,
    )
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_neuron_report(
    store: str | Path,
    figure: str | Path,
    csv: str | Path,
    n_top: int = 20,
    n_panels: int = 3,
    model_digest: str | None = None,
) -> pl.DataFrame:
    """Score every neuron of ``store``; write the top-``n_top`` CSV and Figure 1; return the top.

    With ``model_digest`` (the run's ``model.digest.json``) the store must be that model's."""
    if model_digest is not None:
        from neuron_ablation.provenance import check_artifact, read_model_digest

        check_artifact(store, {"inputs.model": read_model_digest(model_digest)})
    ds = open_store(store)
    top = top_neurons(neuron_scores(ds), n_top)
    with atomic_output(csv) as tmp:
        top.write_csv(tmp, float_precision=6)
    plot_neurons(ds, top, Path(figure), n_panels)
    return top
