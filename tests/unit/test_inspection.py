"""Store summary, one neuron's view, the atypicality score and Figure 1 on a synthetic store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from neuron_ablation import inspection
from neuron_ablation.cli import main
from neuron_ablation.histogram import BinGrid, NeuronHistogram
from neuron_ablation.statistics import write_statistics

N_LAYERS, N_NEURONS, N_TOKENS = 3, 16, 20_000
BIMODAL = (1, 5)  # modes at 1.0 and 2.0: off zero, and peak far from mean
SHIFTED = (2, 9)  # unimodal, centred at 0.5
OVERFLOW = (0, 3)  # 100 activations above the tracked range
GRID = BinGrid.covering(0.01, -4.0, 4.0)


def synthetic_activations(layer: int, rng: np.random.Generator) -> np.ndarray:
    """float64 [token, neuron]: zero-centred normals plus the three special neurons."""
    z = rng.normal(0.0, 0.3, size=(N_TOKENS, N_NEURONS))
    if layer == BIMODAL[0]:
        first = rng.random(N_TOKENS) < 0.6
        z[:, BIMODAL[1]] = np.where(
            first, rng.normal(1.0, 0.1, N_TOKENS), rng.normal(2.0, 0.1, N_TOKENS)
        )
    if layer == SHIFTED[0]:
        z[:, SHIFTED[1]] = rng.normal(0.5, 0.3, N_TOKENS)
    if layer == OVERFLOW[0]:
        z[:100, OVERFLOW[1]] = 9.0
    return z


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    histograms = []
    for layer in range(N_LAYERS):
        histogram = NeuronHistogram(N_NEURONS, GRID)
        histogram.update(torch.from_numpy(synthetic_activations(layer, rng)))
        histograms.append(histogram)
    path = tmp_path_factory.mktemp("stats") / "stats.zarr"
    write_statistics(
        path, histograms, {"model": "synthetic", "dataset": "normal", "n_tokens": N_TOKENS}
    )
    return path


def test_xarray_shows_named_dimensions_and_coordinates(store):
    ds = inspection.open_store(store)
    assert ds["hist"].dims == ("layer", "neuron", "bin")
    assert ds["peak"].dims == ("layer", "neuron")
    assert list(ds["layer"].values) == list(range(N_LAYERS))
    assert ds["bin"].values[0] == GRID.k_lo
    np.testing.assert_allclose(inspection.bin_centres(ds)[:2], [-3.995, -3.985])


def test_histogram_moments_match_raw_data():
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 0.2, size=50_000)  # skewed: skewness 2/sqrt(2)
    histogram = NeuronHistogram(1, GRID)
    histogram.update(torch.from_numpy(values[:, None]))
    hist, _, _ = histogram.histogram()
    moments = inspection.histogram_moments(hist, (GRID.bin_indices() + 0.5) * GRID.bin_width)
    assert moments.mean[0] == pytest.approx(values.mean(), abs=1e-3)
    assert moments.std[0] == pytest.approx(values.std(), rel=1e-2)
    skewness = ((values - values.mean()) ** 3).mean() / values.std() ** 3
    assert moments.skewness[0] == pytest.approx(skewness, rel=0.05)


def test_atypicality_definition():
    mean = np.array([0.0, 0.0, 2.0, 1.0, 3.0])
    peak = np.array([0.0, 1.0, 2.0, 3.0, 3.0])
    std = np.array([1.0, 0.5, 1.0, 1.0, 0.0])
    score = inspection.atypicality(mean, peak, std, width=0.01)
    # zero-centred; off-zero peak |p|/s; off-zero neuron |mu|/s; bimodal |p-mu| < |p|; constant.
    np.testing.assert_allclose(score, [0.0, 2.0, 2.0, 3.0, 300.0])


def test_bimodal_off_zero_neuron_ranks_first(store):
    scores = inspection.neuron_scores(inspection.open_store(store))
    assert scores.height == N_LAYERS * N_NEURONS
    top = inspection.top_neurons(scores, 5)
    assert top.row(0, named=True)["rank"] == 1
    assert (top["layer"][0], top["neuron"][0]) == BIMODAL
    assert (top["layer"][1], top["neuron"][1]) == SHIFTED
    first = top.row(0, named=True)
    assert first["bimodality"] > inspection.BIMODAL_THRESHOLD
    typical = scores.filter((pl.col("layer") == 0) & (pl.col("neuron") == 0)).row(0, named=True)
    assert typical["bimodality"] < inspection.BIMODAL_THRESHOLD
    assert first["score"] > 5 * typical["score"]


def test_layer_summary(store):
    ds = inspection.open_store(store)
    summary = inspection.layer_summary(ds, k=20)  # |peak| > 0.2: only the two shifted neurons
    assert summary["neurons"].to_list() == [N_NEURONS] * N_LAYERS
    assert summary["tokens"].to_list() == [N_TOKENS] * N_LAYERS
    assert summary["overflow"].to_list() == [100, 0, 0]
    assert summary["underflow"].to_list() == [0, 0, 0]
    shares = summary["share_peak_off_zero"].to_list()
    assert shares[BIMODAL[0]] == pytest.approx(1 / N_NEURONS)
    assert shares[SHIFTED[0]] == pytest.approx(1 / N_NEURONS)
    assert shares[0] == 0.0
    means = summary["mean_of_means"].to_list()
    assert means[BIMODAL[0]] == pytest.approx(1.4 / N_NEURONS, abs=0.01)
    text = inspection.format_summary(ds, summary, k=20)
    assert "synthetic" in text and "tracked range [-4, 4)" in text
    assert len(text.splitlines()) == 4 + N_LAYERS


def test_neuron_view_marks_zero_mean_and_peak(store):
    text = inspection.neuron_view(inspection.open_store(store), *BIMODAL, rows=20)
    assert "layer 1 neuron 5" in text
    body = [line for line in text.splitlines() if line.startswith("[")]
    assert 10 <= len(body) <= 20
    marked = {label for line in body if "<-" in line for label in line.split("<- ")[1].split(", ")}
    assert marked == {"zero", "mean", "peak"}
    peak = float(text.split("peak ")[1].split()[0])
    assert 0.9 < peak < 1.1  # the larger mode (60 % of activations at 1.0)


def test_neuron_view_rejects_unknown_neuron(store):
    with pytest.raises(ValueError, match="neurons 0..15"):
        inspection.neuron_view(inspection.open_store(store), 0, 99)


def test_terminal_histogram_ascii():
    text = inspection.terminal_histogram(
        np.array([1.0, 4.0, 2.0]), -0.1, 0.1, {"zero": 0.0}, bar_width=8, ascii_only=True
    )
    lines = text.splitlines()
    assert lines[1].count("#") == 8 and lines[0].count("#") == 2
    assert lines[1].endswith("<- zero")


def test_display_window_keeps_markers_and_crops_tails():
    counts = np.zeros(1000, dtype=np.int64)
    counts[600:620] = 100
    lo, hi = inspection.display_window(counts, keep=[500])
    assert lo <= 500 and hi >= 620 and hi < 700
    merged, factor = inspection.merge_bins(counts, lo, hi, 10)
    assert merged.sum() == counts.sum() and len(merged) <= 10 and factor > 1


def test_neuron_report_writes_figure_and_csv(store, tmp_path):
    figure, csv = tmp_path / "figures/synthetic_neurons.png", tmp_path / "tables/top.csv"
    inspection.write_neuron_report(store, figure, csv, n_top=7)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top = pl.read_csv(csv)
    assert top.height == 7 and top.columns[:4] == ["rank", "layer", "neuron", "score"]
    assert (top["layer"][0], top["neuron"][0]) == BIMODAL
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_cli_inspect_summary_neuron_and_model_name(store, tmp_path, monkeypatch, capsys):
    assert main(["inspect", str(store), "--k", "20"]) == 0
    assert "peak off 0" in capsys.readouterr().out
    assert main(["inspect", str(store), "--layer", "1", "--neuron", "5"]) == 0
    assert "<- peak" in capsys.readouterr().out
    # A bare model name resolves to results/{model}/stats.zarr.
    (tmp_path / "results/synthetic").mkdir(parents=True)
    (tmp_path / "results/synthetic/stats.zarr").symlink_to(store, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", "synthetic"]) == 0
    assert "model synthetic" in capsys.readouterr().out
    assert main(["inspect", "synthetic", "--layer", "1"]) == 2
    assert "inspect: error: give both --layer and --neuron" in capsys.readouterr().err


def test_cli_neurons(store, tmp_path):
    figure, csv = tmp_path / "f.png", tmp_path / "t.csv"
    assert main(["neurons", str(store), "--figure", str(figure), "--csv", str(csv)]) == 0
    assert figure.exists() and pl.read_csv(csv).height == 20
