"""Pipeline configuration: JSON-schema validation with defaults, and cross-reference checks.

The Snakefile calls :func:`validate_config` before building the job graph, so a bad config stops
the workflow before any compute, with a message naming the field and the allowed values.
"""

from __future__ import annotations

import copy
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from neuron_ablation.methods import TEXT_RESAMPLE_METHODS as TEXT_RESAMPLE_METHODS
from neuron_ablation.methods import methods_for_task, names
from neuron_ablation.paths import fraction_label
from neuron_ablation.sources import (
    EMBEDDED_DATASETS,
    EMBEDDED_MODELS,
    check_source,
    embedded_config_problems,
)

SCHEMA_PATH = Path(str(files("neuron_ablation") / "schemas" / "config.schema.yaml"))

# Aliases of the registry in neuron_ablation.methods (the one list of methods); methods_for_task
# and TEXT_RESAMPLE_METHODS are re-exported from there.
CONSTANT_METHODS = names("constant")
LEARNED_METHODS = names("learned")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and what is allowed."""


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _with_defaults(validator_class):
    """A validator that fills in schema defaults while it validates (the jsonschema FAQ recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _field(path) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")


def _explain(error) -> str:
    field = _field(error.absolute_path) or "<top level>"
    schema = error.schema
    if error.validator == "enum":
        return f"{field}: {error.instance!r} is not allowed; allowed values: {schema['enum']}"
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        return f"{field}: {error.message}; allowed keys: {allowed}"
    return f"{field}: {error.message}"


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` in place against the schema (filling defaults), then cross-check it.

    Raises:
        ConfigError: naming every offending field.
    """
    validator = _with_defaults(Draft202012Validator)(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_explain(e) for e in errors))
    check_config(config)
    return config


def check_config(config: dict[str, Any]) -> None:
    """Checks a schema cannot express: references between sections, ranges, embedded names."""
    problems = []
    for name, model in config["models"].items():
        if model["dataset"] not in config["datasets"]:
            problems.append(
                f"models.{name}.dataset: {model['dataset']!r} is not a key of datasets; "
                f"defined datasets: {sorted(config['datasets'])}"
            )
        problems += check_source(f"models.{name}.source", model["source"], EMBEDDED_MODELS)
    for name, dataset in config["datasets"].items():
        problems += check_source(f"datasets.{name}.source", dataset["source"], EMBEDDED_DATASETS)
    problems += _check_methods(config)
    problems += embedded_config_problems(config)
    problems += _check_output_names(config["models"])
    low, high = config["stats"]["range"]
    if not low < high:
        problems.append(f"stats.range: need low < high, got [{low}, {high}]")
    labels = [fraction_label(f) for f in config["fractions"]]
    for fraction, label in zip(config["fractions"], labels, strict=True):
        if abs(float(label) - fraction) > 1e-12:
            problems.append(
                f"fractions: {fraction} has more than two decimals (allowed: 0.00..1.00)"
            )
    if len(set(labels)) != len(labels):
        problems.append(f"fractions: duplicates after rounding to two decimals: {labels}")
    problems += _check_subset("optimal.fractions", config["optimal"]["fractions"], labels)
    if config["eval"].get("sweep") is not None or config["eval"].get("focus_seeds"):
        problems += _check_subset("eval.focus", config["eval"]["focus"], labels)
    n_focus = config["eval"].get("focus_seeds")
    if n_focus is not None and n_focus < len(config["seeds"]):
        problems.append(
            f"eval.focus_seeds: {n_focus} is fewer than the {len(config['seeds'])} seeds of "
            "`seeds`; allowed: null or at least that many (the focus fractions use every seed "
            "of `seeds`, then more)"
        )
    problems += _check_seed_counts(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _check_seed_counts(config: dict[str, Any]) -> list[str]:
    """eval.focus_methods and the optimal.seeds: methods of `methods`, seeds that the methods
    optimal is compared with have at its fractions."""
    problems = []
    chosen = config["eval"].get("focus_methods") or []
    allowed = [m for m in config["methods"] if m != "optimal"]
    outside = [m for m in chosen if m not in allowed]
    if outside:
        problems.append(
            f"eval.focus_methods: {outside} are not methods of this run, or are optimal (whose "
            f"seeds are optimal.seeds); allowed: {allowed}"
        )
    n_focus = len(focus_seeds(config))
    fields = {"optimal.seeds": config["optimal"]["seeds"]} | {
        f"models.{name}.optimal.seeds": model["optimal"]["seeds"]
        for name, model in config["models"].items()
        if "seeds" in model.get("optimal", {})
    }
    for field, wanted in fields.items():
        if wanted is not None and wanted > n_focus:
            problems.append(
                f"{field}: {wanted} is more than the {n_focus} seeds the other methods have at "
                f"the focus fractions (eval.focus_seeds); allowed: 1 to {n_focus}"
            )
    return problems


def _check_subset(field: str, fractions: list[float] | None, grid: list[str]) -> list[str]:
    outside = [f for f in fractions or [] if fraction_label(f) not in grid]
    if outside:
        return [f"{field}: {outside} are not in fractions; allowed: the grid {grid}"]
    return []


def _check_output_names(models: dict[str, Any]) -> list[str]:
    """``results/figures/{model}_neurons.png`` must not be another model's ablation figure."""
    return [
        f"models.{name}: the name collides with model {base!r}'s Figure 1 "
        f"(results/figures/{name}.png); rename one of them"
        for name in models
        for base in models
        if name == f"{base}_neurons"
    ]


def model_methods(config: dict[str, Any], name: str) -> list[str]:
    """The methods evaluated for model ``name``: ``methods`` minus the inapplicable ones when
    ``skip_inapplicable_methods`` is set (otherwise :func:`check_config` rejects those)."""
    allowed = methods_for_task(
        config["models"][name]["task"], config.get("resample", {}).get("generator") is not None
    )
    methods = config["methods"]
    if config.get("skip_inapplicable_methods", False):
        return [m for m in methods if m in allowed]
    return list(methods)


def _check_methods(config: dict[str, Any]) -> list[str]:
    problems = []
    generator = config.get("resample", {}).get("generator")
    for name, model in config["models"].items():
        allowed = methods_for_task(model["task"], generator is not None)
        bad = [m for m in config["methods"] if m not in allowed]
        if bad and not config.get("skip_inapplicable_methods", False):
            hint = (
                " (a masked LM cannot generate text: set resample.generator to a causal LM)"
                if "resample-generated" in bad and model["task"] == "masked-lm"
                else ""
            )
            problems.append(
                f"methods: {bad} do not apply to model {name!r} (task {model['task']}); methods "
                f"for {model['task']}: {list(allowed)}{hint}. Remove them, or set "
                "skip_inapplicable_methods: true to skip them for this model"
            )
    if generator is not None and "resample-generated" in config["methods"]:
        if generator in config["models"]:
            task = config["models"][generator]["task"]
            if task != "causal-lm":
                problems.append(
                    f"resample.generator: model {generator!r} has task {task}; the generator "
                    "must be a causal-lm"
                )
        else:
            problems += check_source("resample.generator", generator, EMBEDDED_MODELS)
    return problems


def input_count(config: dict[str, Any], model: str, part: str) -> int:
    """Tokens (text) or images (vision) of ``part`` ("stats" or "eval") for ``model``: the
    model's own ``stats``/``eval`` entry if it sets one, else the global section's."""
    key = "n_images" if config["models"][model]["task"] == "image-classification" else "n_tokens"
    return config["models"][model].get(part, {}).get(key, config[part][key])


def method_fractions(config: dict[str, Any], method: str) -> list[float]:
    """The grid fractions ``method`` is evaluated at: all of them, except that ``optimal`` is
    trained only at ``optimal.fractions`` (when set; 0 ablates nothing and is always kept)."""
    chosen = config.get("optimal", {}).get("fractions")
    if method != "optimal" or chosen is None:
        return list(config["fractions"])
    labels = {fraction_label(f) for f in chosen}
    return [f for f in config["fractions"] if f == 0.0 or fraction_label(f) in labels]


def focus_seeds(config: dict[str, Any]) -> list[int]:
    """Seeds at the ``eval.focus`` fractions: ``seeds``, then the next integers above the
    largest up to ``eval.focus_seeds`` of them."""
    return _more_seeds(config["seeds"], config["eval"].get("focus_seeds"))


def _more_seeds(seeds: list[int], wanted: int | None) -> list[int]:
    """The first ``wanted`` of ``seeds`` followed by the integers above its largest (all of
    ``seeds`` when ``wanted`` is None)."""
    wanted = len(seeds) if wanted is None else wanted
    extra = range(max(seeds) + 1, max(seeds) + 1 + wanted - len(seeds))
    return list(seeds)[:wanted] + list(extra)


def focus_methods(config: dict[str, Any]) -> list[str]:
    """The methods scored with :func:`focus_seeds` at the focus fractions (``eval.focus_methods``;
    default every method but optimal, whose seeds are ``optimal.seeds``)."""
    chosen = config["eval"].get("focus_methods")
    return [m for m in config["methods"] if m != "optimal" and (chosen is None or m in chosen)]


def optimal_seeds(config: dict[str, Any], model: str) -> list[int]:
    """The seeds optimal is trained and scored on for ``model``: the first ``optimal.seeds``
    (the model's own over the global; default all of ``seeds``) of :func:`focus_seeds` order."""
    wanted = config["models"][model].get("optimal", {}).get("seeds", config["optimal"]["seeds"])
    return _more_seeds(config["seeds"], wanted)


def focus_only_blocks(config: dict[str, Any]) -> list[list[int]]:
    """The seeds of :func:`focus_seeds` beyond ``seeds`` (scored at the focus fractions only),
    cut into consecutive blocks of ``eval.focus_seeds_per_job``: one job per (model, method,
    block) loads the model once for the block's seeds."""
    only = [seed for seed in focus_seeds(config) if seed not in config["seeds"]]
    size = config["eval"]["focus_seeds_per_job"]
    return [only[start : start + size] for start in range(0, len(only), size)]


def is_focus(config: dict[str, Any], fraction: float) -> bool:
    return fraction_label(fraction) in {fraction_label(f) for f in config["eval"]["focus"]}


def seeds_at(config: dict[str, Any], model: str, method: str, fraction: float) -> list[int]:
    """The seeds that score ``method`` at ``fraction`` for ``model``: :func:`optimal_seeds` for
    optimal (its constants are trained per seed); :func:`focus_seeds` at a focus fraction for
    the :func:`focus_methods`; ``seeds`` elsewhere."""
    if method == "optimal":
        return optimal_seeds(config, model)
    if is_focus(config, fraction) and method in focus_methods(config):
        return focus_seeds(config)
    return list(config["seeds"])


def optimal_settings(config: dict[str, Any], model: str) -> dict[str, Any]:
    """steps, batch_size, seq_len (the model's own when null) and lr of ``model``'s optimal
    training: its own ``optimal`` entry over the global section."""
    merged = config["optimal"] | config["models"][model].get("optimal", {})
    settings = {k: v for k, v in merged.items() if k not in ("fractions", "seeds")}
    settings["seq_len"] = settings["seq_len"] or config["models"][model]["seq_len"]
    return settings


def sweep_items(config: dict[str, Any], model: str) -> int | None:
    """Evaluation rows (sequences or images) that fractions outside ``eval.focus`` are scored
    on, or None when every fraction uses the whole evaluation split (no ``eval.sweep``)."""
    settings = config["models"][model]
    sweep = settings.get("eval", {}).get("sweep", config["eval"].get("sweep"))
    if sweep is None:
        return None
    if settings["task"] == "image-classification":
        return sweep.get("n_images", config["eval"].get("sweep", {}).get("n_images"))
    n_tokens = sweep.get("n_tokens", config["eval"].get("sweep", {}).get("n_tokens"))
    return None if n_tokens is None else -(-n_tokens // settings["seq_len"])


def load_config(path: str | Path) -> dict[str, Any]:
    """Read, validate and cross-check a config file; every problem is a ConfigError naming the
    file (a missing file is a FileNotFoundError)."""
    path = Path(path)
    try:
        with open(path) as stream:  # a stream, so YAML errors name the file and line
            raw = yaml.safe_load(stream)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a config is a mapping of sections (models, datasets, methods, ...), "
            f"found a {type(raw).__name__}"
        )
    try:
        return validate_config(raw)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
