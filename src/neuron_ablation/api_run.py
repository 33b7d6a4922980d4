"""The Python API, a finished run: :func:`open_run` reads a run directory (``results/`` and its
config) through the same checked readers the stages and ``neuron-ablation verify`` use.

A damaged artifact raises :class:`~neuron_ablation.integrity.DamagedArtifact` naming the file and
the command that rebuilds it; a missing one raises :class:`FileNotFoundError` with that command.
Only torch-free modules are imported at module level (see :mod:`neuron_ablation.api`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from neuron_ablation import paths
from neuron_ablation.methods import Method
from neuron_ablation.methods import method as method_spec

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import xarray as xr
    from torch import nn

ConstantsLayout = Literal["neuron", "head"]


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

        spec = constant_method(method)
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


def constant_method(method: str) -> Method:
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
