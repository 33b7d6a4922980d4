"""The Python API: open a finished run, ablate a live model, collect statistics in a notebook.

Everything here is a thin layer over the pipeline's own functions, so a notebook sees exactly
what the Snakemake stages computed:

- :func:`open_run` reads a run directory (``results/`` and its config) through the same checked
  readers the stages and ``neuron-ablation verify`` use: a damaged artifact raises
  :class:`~neuron_ablation.integrity.DamagedArtifact` naming the file and the command that
  rebuilds it; a missing one raises :class:`FileNotFoundError` with that command.
- :func:`ablated` folds a constant ablation into a model's attention output projections with
  :func:`neuron_ablation.ablation.folded_constant_ablation`, the fold the ``evaluate`` stage
  scores with, and restores the weights bit for bit on exit.
- :func:`collect_statistics` runs the ``statistics`` stage's pass and store writer on the
  user's own batches and returns the store as an ``xarray.Dataset``.

A *neuron* is one input feature of a layer's attention output projection: TransformerLens'
``hook_z`` with heads flattened, index = head * d_head + dim (:func:`to_heads` unflattens).

Only torch-free modules are imported here at module level; torch, transformers and zarr load
when a function needs them, so ``import neuron_ablation`` stays cheap for the CLI.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from neuron_ablation import paths
from neuron_ablation.methods import method as method_spec

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import torch
    import xarray as xr
    from torch import nn

__all__ = [
    "Ablation",
    "Run",
    "ablated",
    "collect_statistics",
    "evaluate",
    "open_run",
    "to_heads",
]

ConstantsLayout = Literal["neuron", "head"]
MODEL_INPUT_COLUMNS = ("input_ids", "pixel_values")
"""What the statistics pass feeds the model (:func:`neuron_ablation.statistics.forward_kwargs`)."""


# --- a finished run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A pipeline run on disk: its directory (holding ``results/``) and its validated config.

    Every reader checks the artifact it reads like the stages do. Paths in the config (model
    and dataset sources) are relative to :attr:`root`, as Snakemake ran them.
    """

    root: Path
    """The directory Snakemake ran in (the one holding ``results/``)."""
    config: dict[str, Any]
    """The run's config, validated with its defaults filled in."""

    @property
    def models(self) -> tuple[str, ...]:
        """The names of the run's models, in config order."""
        return tuple(self.config["models"])

    def model_config(self, name: str) -> dict[str, Any]:
        """The config entry of model ``name`` (source, task, seq_len, batch_size, ...)."""
        if name not in self.config["models"]:
            raise ValueError(f"model {name!r} is not in this run; models: {', '.join(self.models)}")
        return self.config["models"][name]

    def path(self, relative: str) -> Path:
        """An artifact path of :mod:`neuron_ablation.paths` (relative) under :attr:`root`."""
        return self.root / relative

    def artifacts(self, name: str) -> dict[str, Path]:
        """Every artifact the run's config makes for model ``name``, by label, whether it was
        built yet or not: ``tokens/stats``, ``tokens/eval``, ``statistics``, ``selection/seed0``,
        ``optimal/seed0`` (method optimal), ``resample/chars`` and ``resample/chars.inputs``
        (resampling methods), ``eval/baseline``, ``eval/peak/seed0/frac0.50``, ...,
        ``figure``, ``neurons_figure``, ``top_neurons``."""
        from neuron_ablation.config import method_fractions, model_methods

        self.model_config(name)
        seeds, model_methods_ = self.config["seeds"], model_methods(self.config, name)
        found = {
            "tokens/stats": paths.tokens(name, "stats"),
            "tokens/eval": paths.tokens(name, "eval"),
            "statistics": paths.stats(name),
            **{f"selection/seed{s}": paths.selection(name, s) for s in seeds},
        }
        if "optimal" in model_methods_:
            found |= {f"optimal/seed{s}": paths.optimal(name, s) for s in seeds}
        for source in filter(None, (method_spec(m).source for m in model_methods_)):
            found[f"resample/{source}.inputs"] = paths.resample_inputs(name, source)
            found[f"resample/{source}"] = paths.resample_bank(name, source)
        found["eval/baseline"] = paths.baseline(name)
        for method in model_methods_:
            for seed in seeds:
                for fraction in method_fractions(self.config, method):
                    label = f"eval/{method}/seed{seed}/frac{paths.fraction_label(fraction)}"
                    found[label] = paths.eval_result(name, method, seed, fraction)
        found |= {
            "figure": paths.figure(name),
            "neurons_figure": paths.neurons_figure(name),
            "top_neurons": paths.top_neurons(name),
        }
        return {label: self.path(relative) for label, relative in found.items()}

    # -- statistics, selections and constants

    def statistics(self, name: str) -> xr.Dataset:
        """The statistics store of ``name`` as a lazy ``xarray.Dataset``, after ``verify``'s
        full check (every chunk present, counts and peaks consistent).

        Data variables as in the store: ``mean``, ``peak`` and ``count`` [layer, neuron],
        ``hist`` [layer, neuron, bin], ``underflow`` and ``overflow`` [layer, neuron]; the
        ``bin`` coordinate holds each bin's integer k (bin k covers [k * bin_width,
        (k + 1) * bin_width)); ``attrs`` hold ``bin_width``, ``n_tokens``, the model, ...
        """
        from neuron_ablation.inspection import open_store

        return open_store(self._existing(paths.stats(self._checked(name))))

    def ranks(self, name: str, seed: int) -> np.ndarray:
        """int64 [layer, neuron]: the selection's rank of every neuron for ``seed`` (ablated at
        fraction f iff rank < round(f * neurons_per_layer))."""
        from neuron_ablation.selection import read_ranks

        return read_ranks(self._existing(paths.selection(self._checked(name), seed)))

    def selection(self, name: str, seed: int, fraction: float) -> np.ndarray:
        """bool [layer, neuron]: the neurons ablated at ``fraction`` for ``seed``."""
        import numpy as np

        from neuron_ablation.selection import ablation_masks

        masks = ablation_masks(self.ranks(name, seed), fraction)
        return np.stack([mask.numpy() for mask in masks])

    def constants(
        self,
        name: str,
        method: str,
        *,
        seed: int | None = None,
        fraction: float | None = None,
        layout: ConstantsLayout = "neuron",
    ) -> np.ndarray:
        """float64 constants the method writes into the neurons: [layer, neuron], or
        [layer, head, d_head] with ``layout="head"`` (the layout of TransformerLens' ``hook_z``).

        ``zero``, ``mean`` and ``peak`` hold a constant for every neuron. ``optimal`` learns them
        per ``seed`` and ``fraction`` (both required) for the selected neurons only: NaN
        elsewhere. Resampling methods have no constants (they replay a bank of activations).
        """
        import numpy as np

        spec = _constant_method(method)
        self._checked(name)
        if spec.needs_training:
            values = self._optimal_constants(name, seed, fraction)
        elif spec.needs_statistics:
            from neuron_ablation.statistics import ablation_constants

            store = self._existing(paths.stats(name))
            values = np.stack([row.numpy() for row in ablation_constants(store, method)])
        else:
            shape = self.statistics(name)["mean"].shape
            values = np.zeros(shape, dtype=np.float64)
        if layout == "head":
            return to_heads(values, self.n_heads(name))
        if layout != "neuron":
            raise ValueError(f"layout must be 'neuron' or 'head', got {layout!r}")
        return values

    def _optimal_constants(self, name: str, seed: int | None, fraction: float | None):
        import numpy as np

        from neuron_ablation.optimal import read_constants

        if seed is None or fraction is None:
            raise ValueError(
                "method 'optimal' learns constants per seed and fraction: pass seed= and "
                f"fraction= (seeds {self.config['seeds']}, fractions "
                f"{self.config['optimal'].get('fractions')})"
            )
        store = self._existing(paths.optimal(name, seed))
        return np.stack([row.numpy() for row in read_constants(store, fraction)])

    def n_heads(self, name: str) -> int:
        """Attention heads per layer of model ``name``, from its ``config.json``."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(self.model_source(name))
        return int(config.num_attention_heads)

    # -- results

    def evaluation(self, name: str, method: str, seed: int, fraction: float) -> dict[str, Any]:
        """One evaluation result (the JSON of ``eval/{method}/seed{seed}/frac{f}.json``)."""
        from neuron_ablation.integrity import read_result

        relative = paths.eval_result(self._checked(name), method, seed, fraction)
        return read_result(self._existing(relative))

    def results(self) -> pl.DataFrame:
        """``tables/ablation.csv``: one row per (model, method, seed, fraction) with ``top1``,
        ``loss``, ``n_tokens`` and ``n_ablated``."""
        return self._table("ablation.csv")

    def sequences(self) -> pl.DataFrame:
        """``tables/sequences.parquet``: per evaluated sequence (image) of every result, its
        summed loss, correct predictions and predictions."""
        from neuron_ablation.integrity import read_sequence_table

        return read_sequence_table(self._existing(paths.table("sequences.parquet")))

    def comparison(self) -> pl.DataFrame:
        """``tables/comparison.csv``: paired differences between methods with their intervals."""
        return self._table("comparison.csv")

    def _table(self, file_name: str) -> pl.DataFrame:
        from neuron_ablation.integrity import TABLE_COLUMNS, read_csv_table

        return read_csv_table(self._existing(paths.table(file_name)), TABLE_COLUMNS[file_name])

    # -- the model and its inputs

    def model_source(self, name: str) -> str:
        """What ``from_pretrained`` loads for ``name``: a hub id or a directory (relative
        sources resolved against :attr:`root`)."""
        from neuron_ablation.sources import model_path

        source = model_path(self.model_config(name)["source"])
        local = self.root / source
        return str(local) if not Path(source).is_absolute() and local.exists() else source

    def load_model(
        self, name: str, device: str | None = None, dtype: str | None = None
    ) -> nn.Module:
        """Model ``name`` as the pipeline loads it (eval mode), on the config's device and dtype
        unless given (``device``: auto, cpu, cuda, ...; ``dtype``: float32, float16,
        bfloat16)."""
        from neuron_ablation.models import load_model

        settings = self.model_config(name)
        return load_model(
            self.model_source(name),
            settings["task"],
            device or settings.get("device", "auto"),
            dtype or settings.get("dtype", "float32"),
        )

    def tokenizer(self, name: str) -> Any:
        """The tokenizer of a text model ``name``."""
        from neuron_ablation.models import load_tokenizer

        if self.model_config(name)["task"] == "image-classification":
            raise ValueError(f"model {name!r} is an image classifier: it has no tokenizer")
        return load_tokenizer(self.model_source(name))

    def inputs(self, name: str, part: Literal["stats", "eval"] = "eval") -> dict[str, np.ndarray]:
        """The model-input columns of the run's ``tokens/{part}.arrow`` (``input_ids``
        int [sequence, position]; ``labels`` for masked LMs; ``pixel_values``, ``label``)."""
        from neuron_ablation.io import read_model_inputs

        if part not in ("stats", "eval"):
            raise ValueError(f"part must be 'stats' or 'eval', got {part!r}")
        return read_model_inputs(self._existing(paths.tokens(self._checked(name), part)))

    # -- helpers

    def _checked(self, name: str) -> str:
        self.model_config(name)
        return name

    def _existing(self, relative: str) -> Path:
        """The artifact under :attr:`root`; a FileNotFoundError with the command that builds it
        when it is missing."""
        from neuron_ablation.integrity import snakemake_path

        path = self.path(relative)
        if not path.exists():
            raise FileNotFoundError(
                2,
                "no such artifact (build it with `snakemake --cores all "
                f"{snakemake_path(relative)}` in {self.root}, with the run's --configfile=FILE "
                "if it used one)",
                str(path),
            )
        return path


def open_run(path: str | Path = ".", config: str | Path | Mapping[str, Any] | None = None) -> Run:
    """Open the pipeline run in directory ``path`` (the one holding ``results/``).

    Args:
        path: where Snakemake ran.
        config: the run's config: a file, or a mapping as Snakemake received it; default
            ``path/config.yaml``. It is validated (defaults filled in) like the workflow does.
    """
    from neuron_ablation.config import load_config, validate_config

    root = Path(path)
    if not (root / paths.RESULTS).is_dir():
        raise FileNotFoundError(2, f"no {paths.RESULTS}/ directory: not a pipeline run", str(root))
    if config is None:
        config = root / "config.yaml"
    if isinstance(config, Mapping):
        validated = validate_config(dict(config))
    else:
        validated = load_config(config)
    return Run(root, validated)


def to_heads(values: np.ndarray, n_heads: int) -> np.ndarray:
    """[layer, neuron] -> [layer, head, d_head] (neuron = head * d_head + dim), the layout of
    TransformerLens' ``hook_z``."""
    n_layers, width = values.shape
    if n_heads < 1 or width % n_heads:
        raise ValueError(f"n_heads must divide the {width} neurons per layer, got {n_heads}")
    return values.reshape(n_layers, n_heads, width // n_heads)


def _constant_method(method: str):
    """The registry entry of ``method``, refusing resampling methods (no constants)."""
    spec = method_spec(method)
    if spec.needs_bank:
        raise ValueError(
            f"method {method!r} replays activations from a resampling bank; it has no constants "
            "and cannot be folded into the weights. ablated() supports zero, mean, peak and "
            "optimal; resampling applies to whole sequences scored in order "
            "(neuron_ablation.resampling.resample_ablation with the run's bank), not to "
            "generation with a KV cache"
        )
    return spec


# --- ablating a live model --------------------------------------------------------------------


@dataclass(frozen=True)
class Ablation:
    """What :func:`ablated` folded into the model."""

    mask: np.ndarray
    """bool [layer, neuron]: the ablated neurons."""
    values: np.ndarray
    """float64 [layer, neuron]: the constant written into each ablated neuron (0 elsewhere)."""

    @property
    def n_ablated(self) -> int:
        return int(self.mask.sum())


@contextmanager
def ablated(
    model: nn.Module,
    run: Run | None = None,
    name: str | None = None,
    method: str = "peak",
    fraction: float = 0.5,
    seed: int = 0,
    *,
    constants: np.ndarray | torch.Tensor | None = None,
    mask: np.ndarray | torch.Tensor | None = None,
) -> Iterator[Ablation]:
    """Fold an ablation into ``model`` for the block; the original weights return on exit.

    Either from a run: ``ablated(model, run, name, method="peak", fraction=0.5, seed=0)`` takes
    the run's selection of ``seed`` at ``fraction`` and the constants of ``method`` (zero, mean,
    peak, optimal) of model ``name`` (its name in the run). Or given directly:
    ``ablated(model, constants=c, mask=m)`` with float c and bool m of shape [layer, neuron]
    (or [layer, head, d_head]).

    The fold is :func:`neuron_ablation.ablation.folded_constant_ablation`, the one the
    ``evaluate`` stage scores with, applied on whatever device and dtype the model sits on:
    the ablated columns of each attention output projection are zeroed and their contribution
    W[:, S] c moved into the bias (created where there is none). On exit, also when the block
    raises, the projections' weights and biases are copied back bit for bit.

    Yields:
        the :class:`Ablation` folded in (mask and constants).
    """
    from neuron_ablation.ablation import folded_constant_ablation

    if run is not None:
        if constants is not None or mask is not None:
            raise ValueError("pass either run and name, or constants and mask, not both")
        if name is None:
            raise ValueError(f"name: which model of the run (models: {', '.join(run.models)})")
        masks, values = _run_ablation(run, name, method, fraction, seed)
    elif constants is not None and mask is not None:
        masks, values = _given_ablation(constants, mask)
    else:
        raise ValueError("pass run and name (with method, fraction, seed), or constants and mask")
    _check_widths(model, masks)
    with folded_constant_ablation(model, masks, values):
        yield Ablation(
            mask=_stacked(masks).astype(bool),
            values=_stacked([v.double() * m for v, m in zip(values, masks, strict=True)]),
        )


def _run_ablation(
    run: Run, name: str, method: str, fraction: float, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer bool [neuron] masks and float64 [neuron] constants, as the evaluate stage
    derives them (:func:`neuron_ablation.evaluation.method_scorer`)."""
    import torch

    from neuron_ablation.selection import ablation_masks

    spec = _constant_method(method)
    masks = ablation_masks(run.ranks(name, seed), fraction)
    if spec.needs_training:
        from neuron_ablation.optimal import fold_values

        learned = run._optimal_constants(name, seed, fraction)
        values = fold_values([torch.from_numpy(row) for row in learned], masks)
    elif spec.needs_statistics:
        from neuron_ablation.statistics import ablation_constants

        values = ablation_constants(run._existing(paths.stats(name)), method)
    else:
        values = [torch.zeros(len(m), dtype=torch.float64) for m in masks]
    return masks, values


def _given_ablation(constants, mask) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    import torch

    c = torch.as_tensor(constants, dtype=torch.float64).cpu()
    m = torch.as_tensor(mask).cpu()
    if m.dtype != torch.bool:
        raise ValueError(f"mask: a bool array [layer, neuron], got dtype {m.dtype}")
    if c.shape != m.shape or c.dim() not in (2, 3):
        raise ValueError(
            "constants and mask: arrays of one shape, [layer, neuron] or [layer, head, d_head]; "
            f"got {tuple(c.shape)} and {tuple(m.shape)}"
        )
    if bool(torch.isnan(c[m]).any()):
        raise ValueError("constants: NaN at an ablated neuron")
    c, m = c.flatten(1), m.flatten(1)
    return list(m), list(torch.nan_to_num(c, nan=0.0))


def _check_widths(model: nn.Module, masks: Sequence[torch.Tensor]) -> None:
    from neuron_ablation.architectures import neuron_widths

    widths = neuron_widths(model)
    given = [len(m) for m in masks]
    if given != widths:
        raise ValueError(
            f"the ablation has {len(given)} layers of {sorted(set(given))} neurons, the model "
            f"{len(widths)} layers of {sorted(set(widths))}: they belong to different models"
        )


def _stacked(rows: Sequence[torch.Tensor]) -> np.ndarray:
    import numpy as np

    return np.stack([row.cpu().numpy() for row in rows])


# --- scoring ----------------------------------------------------------------------------------


def evaluate(
    model: nn.Module, run: Run, name: str, batch_size: int | None = None
) -> dict[str, Any]:
    """Score ``model`` on the run's evaluation split of ``name``, as the ``evaluate`` stage does
    (:func:`neuron_ablation.scoring.evaluate`): ``top1``, ``loss``, ``n_tokens`` and the
    per-sequence lists. Inside :func:`ablated`, the scores of the ablated model.

    Args:
        batch_size: default the model's ``batch_size`` in the config (the same batches, so the
            same bits as the pipeline's JSON).
    """
    from neuron_ablation.scoring import evaluate as score

    settings = run.model_config(name)
    with _eval_mode(model):
        return score(
            model,
            run.inputs(name, "eval"),
            settings["task"],
            batch_size or settings["batch_size"],
            desc=f"evaluating {name}",
        )


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off for the block (the pipeline loads models in eval mode), then as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# --- statistics without Snakemake -------------------------------------------------------------

Batch = Mapping[str, Any]


def collect_statistics(
    model: nn.Module,
    batches: Iterable[Batch | np.ndarray | torch.Tensor],
    bin_width: float = 0.01,
    range: tuple[float, float] = (-10.0, 10.0),  # noqa: A002 (the name of the config field)
    *,
    out: str | Path | None = None,
    name: str = "",
    progress: bool = False,
) -> xr.Dataset:
    """The ``statistics`` stage on your own batches: per-neuron mean and aligned histograms.

    The pass (:func:`neuron_ablation.statistics.collect_statistics`) and the store writer
    (:func:`neuron_ablation.statistics.write_statistics`) are the stage's; the Dataset is read
    back from the store like :meth:`Run.statistics`, with the same variables and attrs.

    Args:
        batches: each an int tensor/array ``input_ids`` [batch, position], or a mapping with
            ``input_ids`` (text) or ``pixel_values`` float [batch, channel, height, width]
            (vision). Every position counts, so no padding: no ``attention_mask``.
        bin_width: width of the aligned bins (bin k covers [k * bin_width, (k + 1) * bin_width)).
        range: the tracked interval; values outside count in ``underflow`` / ``overflow``.
        out: write the store there (a ``.zarr`` directory) and return it lazily; by default it is
            written to a temporary directory and returned loaded in memory.
        name: the model name recorded in the store's attrs.
    """
    from neuron_ablation.histogram import BinGrid

    if not isinstance(range, Sequence) or len(range) != 2:
        raise ValueError(f"range: a pair (low, high), got {range!r}")
    grid = BinGrid.covering(bin_width, *range)
    histograms = None
    with _eval_mode(model):
        for batch in batches:
            histograms = _add_batch(model, _batch_columns(batch), grid, histograms, progress)
    if histograms is None:
        raise ValueError("batches: no batch given")
    attrs = _statistics_attrs(model, name, histograms[0].count)
    if out is not None:
        return _written_statistics(Path(out), histograms, attrs)
    with tempfile.TemporaryDirectory(prefix="neuron-ablation-stats-") as tmp:
        dataset = _written_statistics(Path(tmp) / "stats.zarr", histograms, attrs).load()
        dataset.close()
    return dataset


def _add_batch(model, columns, grid, histograms, progress: bool):
    from neuron_ablation.statistics import collect_statistics as statistics_pass

    n_rows = len(next(iter(columns.values())))
    return statistics_pass(
        model, columns, grid, batch_size=n_rows, progress=progress, histograms=histograms
    )


def _batch_columns(batch: Batch | np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """One user batch as the pass's numpy columns; bad keys and shapes stop before its forward."""
    if not isinstance(batch, Mapping):
        batch = {"input_ids": batch}
    unknown = sorted(set(batch) - set(MODEL_INPUT_COLUMNS))
    if unknown:
        raise ValueError(
            f"batches: unsupported keys {unknown}; a batch holds one of "
            f"{list(MODEL_INPUT_COLUMNS)} (every position counts, so no attention_mask: pass "
            "unpadded sequences of one length)"
        )
    if len(batch) != 1:
        raise ValueError(
            f"batches: one of {list(MODEL_INPUT_COLUMNS)} per batch, got {list(batch)}"
        )
    key, values = next(iter(batch.items()))
    array = _as_numpy(values)
    expected = 2 if key == "input_ids" else 4
    if array.ndim != expected or len(array) == 0:
        raise ValueError(
            f"batches: {key} must be a non-empty array of {expected} dimensions, got shape "
            f"{array.shape}"
        )
    return {key: array}


def _as_numpy(values: Any) -> np.ndarray:
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _statistics_attrs(model: nn.Module, name: str, n_tokens: int) -> dict[str, Any]:
    parameter = next(model.parameters())
    source = getattr(getattr(model, "config", None), "name_or_path", "") or ""
    return {
        "model": name or source,
        "model_source": source,
        "dataset": "batches passed to neuron_ablation.collect_statistics",
        "n_tokens": n_tokens,
        "dtype": str(parameter.dtype).removeprefix("torch."),
    }


def _written_statistics(path: Path, histograms, attrs: dict[str, Any]) -> xr.Dataset:
    from neuron_ablation.inspection import open_store
    from neuron_ablation.statistics import write_statistics

    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not yet part of the v3 spec; the stage's too.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        write_statistics(path, histograms, attrs)
    return open_store(path)
