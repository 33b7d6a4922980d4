import numpy as np
import pytest
import torch

from neuron_ablation.finite import NonFiniteError
from neuron_ablation.histogram import (
    NEURON_GROUP,
    ROW_BLOCK,
    BinGrid,
    NeuronHistogram,
    bin_of,
    neuron_groups,
    peak_values,
)

BACKENDS = ["torch", "numba"]


def numpy_reference(values: np.ndarray, grid: BinGrid):
    """Counts per tracked bin via np.histogram on the float64 edges k * eps, plus under/overflow."""
    edges = np.append(grid.left_edges(), grid.k_hi * grid.bin_width)
    inside = (values >= edges[0]) & (values < edges[-1])
    hist, _ = np.histogram(values[inside], bins=edges)
    return hist, int((values < edges[0]).sum()), int((values >= edges[-1]).sum())


def fill(values: np.ndarray, grid: BinGrid, backend: str = "auto") -> NeuronHistogram:
    """values [observation, neuron] fed in three uneven chunks."""
    h = NeuronHistogram(values.shape[1], grid, backend=backend)
    for chunk in np.array_split(values, 3):
        h.update(torch.from_numpy(chunk))
    return h


def test_grid_is_aligned_to_multiples_of_bin_width():
    grid = BinGrid.covering(0.25, -1.1, 0.6)
    assert (grid.k_lo, grid.k_hi) == (-5, 3)
    np.testing.assert_array_equal(grid.left_edges(), np.arange(-5, 3) * 0.25)
    assert BinGrid.covering(0.01, -10, 10).n_bins == 2000


@pytest.mark.parametrize("backend", BACKENDS)
def test_counts_match_numpy_including_outliers_and_edges(backend):
    rng = np.random.default_rng(0)
    grid = BinGrid.covering(0.1, -1.0, 1.0)
    values = rng.normal(0, 0.6, size=(5000, 3))
    # exact bin edges, values just below edges, and far outliers on both sides
    values[:21, 0] = np.arange(-10, 11) * 0.1
    values[21:42, 0] = np.nextafter(np.arange(-10, 11) * 0.1, -np.inf)
    values[42:45, 1] = [-50.0, 50.0, 1.0]
    h = fill(values.astype(np.float64), grid, backend)
    hist, under, over = h.histogram()
    for n in range(3):
        ref_hist, ref_under, ref_over = numpy_reference(values[:, n], grid)
        np.testing.assert_array_equal(hist[n], ref_hist)
        assert (under[n], over[n]) == (ref_under, ref_over)
        assert hist[n].sum() + under[n] + over[n] == len(values)
    np.testing.assert_allclose(h.mean(), values.mean(axis=0), rtol=1e-12)


def test_bin_of_is_exact_at_edges():
    eps = 0.1
    k = np.arange(-30, 30)
    edges = torch.from_numpy(k * eps)
    np.testing.assert_array_equal(bin_of(edges, eps).numpy(), k)
    below = torch.from_numpy(np.nextafter(k * eps, -np.inf))
    np.testing.assert_array_equal(bin_of(below, eps).numpy(), k - 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_rejected_before_anything_is_counted(backend, bad):
    """Never binned (NaN used to land in overflow): the update raises and adds nothing."""
    h = NeuronHistogram(3, BinGrid.covering(0.5, -1, 1), backend=backend)
    h.update(torch.full((2, 3), 0.2))
    z = torch.zeros(4, 3)
    z[2, 1] = bad
    with pytest.raises(NonFiniteError, match="layer 7's z hold"):
        h.update(z, "layer 7's z")
    hist, under, over = h.histogram()
    assert h.count == 2 and hist.sum() == 6 and under.sum() == over.sum() == 0
    np.testing.assert_allclose(h.mean(), 0.2)


def test_peak_is_centre_of_fullest_bin_and_ignores_outliers():
    # REFERENCE.md: 100k values around 0.02 plus 10 at 5 moved the paper's adaptive peak to 0.0017.
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.uniform(0.02, 0.0299, 100_000), np.full(10, 5.0)])[:, None]
    grid = BinGrid.covering(0.01, -10, 10)
    hist, _, _ = fill(values, grid).histogram()
    assert peak_values(hist, grid)[0] == pytest.approx(0.025)


def test_peak_ties_go_to_lowest_bin():
    grid = BinGrid.covering(1.0, -3, 3)
    hist = np.array([[0, 2, 0, 2, 0, 1], [5, 0, 0, 0, 0, 5]])
    np.testing.assert_allclose(peak_values(hist, grid), [-1.5, -2.5])


def test_memory_does_not_grow_with_tokens():
    grid = BinGrid.covering(0.01, -1, 1)
    h = NeuronHistogram(4, grid)
    size = h.counts.numel()
    for _ in range(5):
        h.update(torch.randn(1000, 4))
    assert h.counts.numel() == size and h.count == 5000


def edge_values(grid: BinGrid, dtype: torch.dtype) -> torch.Tensor:
    """Every float of ``dtype`` nearest each edge (below, at, above), out-of-range values and
    signed zeros, plus normal noise: [observation, 4 neurons]."""
    edges = torch.from_numpy(np.append(grid.left_edges(), grid.k_hi * grid.bin_width)).to(dtype)
    near = torch.cat(
        [
            edges.nextafter(edges.new_tensor(-np.inf)),
            edges,
            edges.nextafter(edges.new_tensor(np.inf)),
        ]
    )
    special = torch.tensor([1e38, -1e38, 1e30, -1e30, 0.0, -0.0], dtype=dtype)
    values = torch.cat(
        [near, special, torch.randn(4000, generator=torch.Generator().manual_seed(0), dtype=dtype)]
    )
    return (
        values[torch.randperm(len(values), generator=torch.Generator().manual_seed(1))]
        .reshape(-1, 1)
        .repeat(1, 4)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_and_torch_backends_count_identically(dtype):
    grid = BinGrid.covering(0.01, -2.0, 2.0)
    values = edge_values(grid, dtype)
    values[:, 1] *= 3  # a wider spread: more under/overflow
    counts, means = {}, {}
    for backend in BACKENDS:
        h = NeuronHistogram(4, grid, backend=backend)
        for chunk in values.split(777):
            h.update(chunk)
        counts[backend] = h.histogram()
        means[backend] = h.mean()
    np.testing.assert_allclose(means["numba"], means["torch"], rtol=1e-12)
    for fused, reference in zip(counts["numba"], counts["torch"], strict=True):
        np.testing.assert_array_equal(fused, reference)
    hist, under, over = counts["numba"]
    for n in range(4):
        ref_hist, ref_under, ref_over = numpy_reference(values[:, n].double().numpy(), grid)
        np.testing.assert_array_equal(hist[n], ref_hist)
        assert (under[n], over[n]) == (ref_under, ref_over)


def test_fused_backend_takes_half_precision_and_strided_input():
    grid = BinGrid.covering(0.05, -1.0, 1.0)
    base = torch.randn(64, 8, 6, generator=torch.Generator().manual_seed(2))
    strided = base.transpose(0, 1)  # not contiguous
    for z in (strided, base.to(torch.bfloat16), base.to(torch.float16)):
        fused, reference = (NeuronHistogram(6, grid, backend=b) for b in BACKENDS)
        fused.update(z)
        reference.update(z)
        for a, b in zip(fused.histogram(), reference.histogram(), strict=True):
            np.testing.assert_array_equal(a, b)
        assert fused.count == reference.count == 64 * 8


def test_auto_backend_is_fused_on_cpu_and_a_bad_backend_is_named():
    assert NeuronHistogram(2, BinGrid.covering(0.1, -1, 1)).backend == "numba"
    with pytest.raises(ValueError, match="auto, numba or torch"):
        NeuronHistogram(2, BinGrid.covering(0.1, -1, 1), backend="cuda")


@pytest.mark.parametrize(("n_neurons", "threads"), [(1, 1), (3, 2), (5, 4), (300, 2), (4096, 2)])
def test_neuron_groups_cover_every_neuron_evenly_over_threads(n_neurons, threads):
    groups = neuron_groups(n_neurons, threads)
    assert 1 <= groups <= n_neurons
    assert groups == n_neurons or groups % threads == 0
    assert -(-n_neurons // groups) <= NEURON_GROUP


def test_fused_kernel_does_not_depend_on_threads_or_tiling():
    """Counts as the torch backend's, and each neuron's sum added in row order per batch (what
    a sequential cumsum gives), bit for bit, whatever the thread count; widths and row counts
    are not multiples of the kernel's tiles."""
    grid = BinGrid.covering(0.003, -0.5, 0.7)
    n_neurons = 3 * NEURON_GROUP + 45
    values = torch.randn(5 * ROW_BLOCK + 7, n_neurons, generator=torch.Generator().manual_seed(3))
    values[::13, ::7] = torch.tensor(np.nextafter(0.3, -1.0), dtype=torch.float32)
    values[5, :9] = torch.tensor([1e38, -1e38, -1e30, 0.0, -0.0, 0.003, 0.7, -0.5, 1e30])
    chunks = values.split(2 * ROW_BLOCK + 3)
    reference = NeuronHistogram(n_neurons, grid, backend="torch")
    for chunk in chunks:
        reference.update(chunk)
    row_order_sum = sum(np.cumsum(c.double().numpy(), axis=0)[-1] for c in chunks)
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            fused = NeuronHistogram(n_neurons, grid, backend="numba")
            for chunk in chunks:
                fused.update(chunk)
            for a, b in zip(fused.histogram(), reference.histogram(), strict=True):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(fused.sum.numpy(), row_order_sum)
    finally:
        torch.set_num_threads(previous)


def test_cpu_counts_are_zero_and_untouched_bins_take_no_memory():
    import resource

    from neuron_ablation.histogram import zero_counts

    n = 64 * 2**20 // 8  # 64 MiB of slots
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    counts = zero_counts(n, "cpu")
    counts[:: n // 4] += 1  # four touched pages
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert counts.dtype == torch.int64 and counts.shape == (n,) and int(counts.sum()) == 4
    assert faults < n * 8 // 4096 // 100  # not the 16,384 pages a written buffer takes
