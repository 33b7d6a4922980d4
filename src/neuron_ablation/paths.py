"""Where every artifact lives: the one place that builds result paths.

The Snakemake rules (``workflow/rules/*.smk``), the CLI and ``verify`` use these functions; each
takes plain values or Snakemake wildcard patterns (``stats("{model}")``). Nothing reads a model,
method, seed or fraction back out of a path: results carry them (``eval`` JSONs hold ``model``,
``method``, ``seed`` and ``fraction``); :data:`ARTIFACT_PATTERNS` only recognises which kind of
artifact a file is, and :func:`eval_result_fields` lets ``verify`` check that a result's content
agrees with where it lies.

Layout (``results/``)::

    {model}/model.digest.json               sha256 of the model's files (provenance)
    {model}/tokens/{part}.arrow             stage 1 (part: stats | eval)
    {model}/stats.zarr                      stage 2
    {model}/resample/{source}.inputs.arrow  resampling inputs
    {model}/resample/{source}.h5            resampling bank
    {model}/selection/seed{seed}.zarr       nested neuron order per seed
    {model}/optimal/seed{seed}.zarr         learned constants per seed
    {model}/eval/baseline.json              the clean model
    {model}/eval/{method}/seed{seed}/frac{fraction:.2f}.json
    tables/{name}                           ablation.csv, table2.*, comparison.*, ...
    figures/{model}.png, figures/{model}_neurons.png
    logs/..., benchmarks/...                one per job
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"

Fraction = float | str
"""A fraction of neurons ablated, or its label (``"0.50"``) or a wildcard pattern."""


def fraction_label(fraction: Fraction) -> str:
    """``0.5`` -> ``"0.50"``: how a fraction appears in result paths (labels pass through)."""
    return fraction if isinstance(fraction, str) else f"{fraction:.2f}"


def model_dir(model: str) -> str:
    return f"{RESULTS}/{model}"


def model_digest(model: str) -> str:
    """The digest of the model's files, computed once per run (see ``provenance``)."""
    return f"{model_dir(model)}/model.digest.json"


def tokens(model: str, part: str) -> str:
    return f"{model_dir(model)}/tokens/{part}.arrow"


def stats(model: str) -> str:
    return f"{model_dir(model)}/stats.zarr"


def resample_inputs(model: str, source: str) -> str:
    return f"{model_dir(model)}/resample/{source}.inputs.arrow"


def resample_bank(model: str, source: str) -> str:
    return f"{model_dir(model)}/resample/{source}.h5"


def selection(model: str, seed: int | str) -> str:
    return f"{model_dir(model)}/selection/seed{seed}.zarr"


def optimal(model: str, seed: int | str) -> str:
    return f"{model_dir(model)}/optimal/seed{seed}.zarr"


def baseline(model: str) -> str:
    return f"{model_dir(model)}/eval/baseline.json"


def eval_result(model: str, method: str, seed: int | str, fraction: Fraction) -> str:
    return f"{model_dir(model)}/eval/{method}/seed{seed}/frac{fraction_label(fraction)}.json"


def table(name: str) -> str:
    return f"{RESULTS}/tables/{name}"


def top_neurons(model: str) -> str:
    return table(f"{model}_top_neurons.csv")


def figure(model: str) -> str:
    return f"{RESULTS}/figures/{model}.png"


def neurons_figure(model: str) -> str:
    return f"{RESULTS}/figures/{model}_neurons.png"


def log(rule: str, job: str | None = None) -> str:
    """A job's log: ``logs/{rule}/{job}.log``, or ``logs/{rule}.log`` for a rule of one job."""
    return f"{LOGS}/{rule}.log" if job is None else f"{LOGS}/{rule}/{job}.log"


def benchmark(rule: str, job: str | None = None) -> str:
    """A job's Snakemake benchmark TSV, laid out like :func:`log`."""
    return f"{BENCHMARKS}/{rule}.tsv" if job is None else f"{BENCHMARKS}/{rule}/{job}.tsv"


def stats_store(name: str | Path) -> Path:
    """A statistics store path as given, or a model name resolved to its ``stats.zarr``."""
    path = Path(name)
    if path.exists() or path.suffix == ".zarr":
        return path
    return Path(stats(str(name)))


ARTIFACT_PATTERNS: dict[str, re.Pattern[str]] = {
    "model digest": re.compile(r"/model\.digest\.json$"),
    "token file": re.compile(r"/tokens/(stats|eval)\.arrow$"),
    "statistics store": re.compile(r"/stats\.zarr$"),
    "selection": re.compile(r"/selection/seed\d+\.zarr$"),
    "optimal constants": re.compile(r"/optimal/seed\d+\.zarr$"),
    "resampling inputs": re.compile(r"/resample/[^/]+\.inputs\.arrow$"),
    "resampling bank": re.compile(r"/resample/[^/]+\.h5$"),
    "evaluation result": re.compile(r"/eval/(.+/)?[^/]+\.json$"),
    "table": re.compile(r"/tables/[^/]+\.csv$"),
    "per-sequence table": re.compile(r"/tables/[^/]+\.parquet$"),
    "markdown table": re.compile(r"/tables/[^/]+\.md$"),
    "figure": re.compile(r"/figures/[^/]+\.png$"),
}
"""Which kind of artifact a path under ``results/`` is (in the order ``verify`` reports them)."""

_EVAL_RESULT = re.compile(
    r"(?:^|/)(?P<model>[^/]+)/eval/(?P<method>[^/]+)/seed(?P<seed>\d+)/"
    r"frac(?P<fraction>[0-9.]+)\.json$"
)
_SELECTION = re.compile(r"selection/seed(?P<seed>\d+)\.zarr$")


def artifact_kind(path: str | Path) -> str | None:
    """The kind of artifact at ``path`` (a key of :data:`ARTIFACT_PATTERNS`), or None."""
    posix = "/" + Path(path).as_posix().lstrip("/")
    return next((kind for kind, p in ARTIFACT_PATTERNS.items() if p.search(posix)), None)


def eval_result_fields(path: str | Path) -> dict[str, str | int | float] | None:
    """What :func:`eval_result`'s layout says a result holds (model, method, seed, fraction);
    None for other paths. For checking a result against its place, never as its source."""
    match = _EVAL_RESULT.search(Path(path).as_posix())
    if match is None:
        return None
    return {
        "model": match["model"],
        "method": match["method"],
        "seed": int(match["seed"]),
        "fraction": float(match["fraction"]),
    }


def selection_seed(path: str | Path) -> int | None:
    """The seed :func:`selection`'s layout puts in ``path``, or None; for ``verify``."""
    match = _SELECTION.search(Path(path).as_posix())
    return None if match is None else int(match["seed"])
