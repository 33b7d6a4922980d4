import re
import sys

from neuron_ablation import paths
from neuron_ablation.config import (
    SCHEMA_PATH,
    check_config,
    focus_seeds,
    input_count,
    is_focus,
    method_fractions,
    model_methods,
    optimal_settings,
    seeds_at,
    sweep_items,
)
from neuron_ablation.demo.catalog import (
    demo_mlm_split,
)  # of mlm_split_args (rule train_mlm)
from neuron_ablation.methods import RESAMPLE_SOURCES as RESAMPLE_SOURCE_NAMES
from neuron_ablation.methods import method as method_spec
from neuron_ablation.methods import statistics_methods
from neuron_ablation.preflight import preflight
from neuron_ablation.sources import (
    dataset_path,
    local_inputs,
    model_file_inputs,
    model_path,
    source_inputs,
)
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema=str(SCHEMA_PATH))
check_config(config)


def run_preflight():
    """Models, datasets and this machine, checked once jobs are about to run (the Snakefile's
    onstart: not on a dry run, --lint, --unlock or --report, nor inside cluster jobs): every
    problem before any compute."""
    for note in preflight(config, jobs_run_here=workflow.local_exec):
        print(f"note: {note}", file=sys.stderr)


MODELS = config["models"]
ENV = "../../environment.yml"
FRACTIONS = [paths.fraction_label(f) for f in config["fractions"]]
# Seeds beyond `seeds` score only the focus fractions (eval.focus_seeds; rule evaluate_focus).
FOCUS_FRACTIONS = [paths.fraction_label(f) for f in config["fractions"] if is_focus(config, f)]
FOCUS_ONLY_SEEDS = [s for s in focus_seeds(config) if s not in config["seeds"]]
NEEDS_STATISTICS = (
    statistics_methods()
)  # their constants: the array of that name in stats.zarr


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    model=_alternatives(MODELS),
    method=_alternatives(config["methods"]),
    seed=r"\d+",
    part="stats|eval",
    asset=r"[A-Za-z0-9_.-]+",


# Shell commands take every value with :q (shell-quoted); argument lists are lists, one item
# per shell word. Free-text values go as --option=value, so one starting with "-" is no option.


def model_source(model):
    """What from_pretrained loads: a hub id, a local directory, or an embedded model's directory."""
    return model_path(MODELS[model]["source"])


def dataset_of(model):
    return config["datasets"][MODELS[model]["dataset"]]


def dataset_source(model):
    """A hub id, a local path, a prepared text asset, or embedded:<image set> read in place."""
    return dataset_path(dataset_of(model)["source"])


# local_inputs(*paths) (neuron_ablation.sources): of resolved paths, those Snakemake must build
# or track (embedded assets under resources/, existing local files).


def model_inputs(wildcards):
    """The model as every job's input: the digest of its files (rule model_digest), which reruns
    when a file changes in place, and with it everything computed from the model."""
    return paths.model_digest(wildcards.model)


def model_digest_inputs(wildcards):
    """The model's files, each one input (neuron_ablation.sources.model_file_inputs)."""
    return model_file_inputs(model_source(wildcards.model))


def model_resource(name):
    return lambda wildcards: MODELS[wildcards.model].get("resources", {}).get(name, 0)


# Rules whose threads are machine_threads: they use every core of a local run.
MACHINE_RULES = ("statistics", "train_vit", "train_mlm")


def machine_threads(wildcards):
    """Threads of the rules that use a whole machine: every core of a local run (`--cores`).

    A callable, so it is read per job: `threads: workflow.cores` is evaluated when the rule is
    defined and stops every cluster run (no core count) even where --set-threads overrides it.
    """
    return workflow.cores


def check_cluster_threads():
    """A cluster run has no core count, and a job's CPUs must be known before sbatch (and be the
    same inside the job): the rules that use every local core need --set-threads there.
    """
    settings = workflow.resource_settings
    if workflow.local_exec or settings.cores is not None:
        return
    to_run = {job.rule.name for job in workflow.dag.needrun_jobs()}
    missing = [
        r for r in MACHINE_RULES if r in to_run and r not in settings.overwrite_threads
    ]
    if missing:
        raise WorkflowError(
            f"threads of {', '.join(missing)}: a local run gives it every core, but this"
            " cluster run has no core count. Run with --workflow-profile profiles/slurm (it"
            " sets them) or pass --set-threads " + " ".join(f"{r}=N" for r in missing)
        )


def runtime_args(model):
    m = MODELS[model]
    return [
        "--batch-size",
        str(m["batch_size"]),
        "--device",
        m["device"],
        "--dtype",
        m["dtype"],
    ]


def fraction_labels(method):
    return [paths.fraction_label(f) for f in method_fractions(config, method)]


def model_eval_results(model):
    return [
        paths.eval_result(model, method, seed, paths.fraction_label(fraction))
        for method in model_methods(config, model)
        for fraction in method_fractions(config, method)
        for seed in seeds_at(config, method, fraction)
    ]


def job_fractions(wildcards):
    """The fraction labels one evaluate job scores: every fraction for a seed of `seeds`, the
    focus fractions for a focus-only seed."""
    return FOCUS_FRACTIONS if int(wildcards.seed) in FOCUS_ONLY_SEEDS else FRACTIONS


def sweep_args(wildcards):
    """Fractions outside eval.focus on the first rows only, when eval.sweep is set."""
    rows = sweep_rows_args(wildcards)
    return rows and [*rows, "--focus", *map(str, config["eval"]["focus"])]


def sweep_rows_args(wildcards):
    """--sweep-items N, the rows of the sweep fractions when eval.sweep is set: the baseline
    scores the clean model there too, so each fraction is drawn against its own tokens."""
    items = sweep_items(config, wildcards.model)
    return [] if items is None else ["--sweep-items", str(items)]


def sweep_baselines(model=None):
    """The clean baselines the tables (model None: every model's) and a model's figure compare
    each fraction with, on its own tokens: none unless eval.sweep is set (for some model)."""
    models = list(MODELS) if model is None else [model]
    if all(sweep_items(config, m) is None for m in models):
        return []
    return [paths.baseline(m) for m in models]


def baseline_args(wildcards, input):
    return [arg for path in input.baselines for arg in ("--baseline", path)]


def model_outputs(model):
    return model_eval_results(model) + [
        paths.figure(model),
        paths.neurons_figure(model),
        paths.top_neurons(model),
    ]


def all_outputs():
    tables = (
        "ablation.csv",
        "table2.csv",
        "table2.md",
        "comparison.csv",
        "comparison.md",
        "plan.csv",
    )
    outputs = [paths.table(name) for name in tables]
    return outputs + [path for model in MODELS for path in model_outputs(model)]


# --- helpers of tokens rules


def mlm_split_args():
    eval_share, split_seed = demo_mlm_split(config)
    return ["--eval-share", str(eval_share), "--split-seed", str(split_seed)]


def tokenize_inputs(wildcards):
    """The dataset files, and an embedded image set's (a missing Fashion-MNIST stops here,
    before any job runs, with the apt command); the model is model_inputs."""
    return source_inputs(dataset_of(wildcards.model)["source"], "dataset")


def tokenize_args(wildcards):
    d = dataset_of(wildcards.model)
    return [
        f"--text-field={d['text_field']}",
        f"--stats-split={d['stats_split']}",
        f"--eval-split={d['eval_split']}",
        "--eval-share",
        str(d["eval_share"]),
        "--split-seed",
        str(d["split_seed"]),
    ]


# --- helpers of evaluation rules


def evaluate_inputs(wildcards):
    inputs = {
        "model": model_inputs(wildcards),
        "tokens": paths.tokens(wildcards.model, "eval"),
        "selection": paths.selection(wildcards.model, wildcards.seed),
    }
    if wildcards.method in NEEDS_STATISTICS:
        inputs["stats"] = paths.stats(wildcards.model)
    fractions = job_fractions(wildcards)
    if method_spec(wildcards.method).needs_bank and any(float(f) > 0.0 for f in fractions):
        inputs["bank"] = resample_bank(wildcards.model, wildcards.method)
    if any(float(f) == 0.0 for f in fractions):
        inputs["baseline"] = paths.baseline(wildcards.model)
    return inputs


def optional_args(wildcards, input):
    names = ("stats", "baseline", "bank")
    return [arg for n in names if n in input.keys() for arg in (f"--{n}", input[n])]


# --- helpers of resampling rules

RESAMPLE = config["resample"]


RESAMPLE_SOURCES = _alternatives(RESAMPLE_SOURCE_NAMES)


def resample_bank(model, method):
    return paths.resample_bank(model, method_spec(method).source)


def generator_source(model):
    """The causal LM that writes resample-generated text: the model itself unless configured."""
    generator = RESAMPLE["generator"]
    if generator is None:
        return model_source(model)
    if generator in MODELS:
        return model_source(generator)
    return model_path(generator)


def resample_inputs_inputs(wildcards):
    """The generator of resample-generated, when it is not the model itself (model_inputs):
    a configured model's digest, else its local files."""
    generator = RESAMPLE["generator"]
    if wildcards.source != "generated" or generator is None:
        return []
    if generator in MODELS:
        return [paths.model_digest(generator)]
    return model_file_inputs(model_path(generator))


def resample_settings(wildcards):
    model = wildcards.model
    args = [
        *("--n-sequences", str(RESAMPLE["n_sequences"])),
        *("--seed", str(RESAMPLE["seed"])),
        *("--seq-len", str(RESAMPLE["seq_len"] or MODELS[model]["seq_len"])),
    ]
    if wildcards.source == "chars":
        args += ["--space-probability", str(RESAMPLE["space_probability"])]
    if wildcards.source == "generated":
        args += ["--temperature", str(RESAMPLE["temperature"])]
        args += ["--top-k", str(RESAMPLE["top_k"])]
        if generator_source(model) != model_source(model):
            args.append(f"--generator-source={generator_source(model)}")
    return args


# --- helpers of optimal rules

OPTIMAL_FRACTIONS = fraction_labels("optimal")


def evaluate_optimal_inputs(wildcards):
    inputs = {
        "model": model_inputs(wildcards),
        "tokens": paths.tokens(wildcards.model, "eval"),
        "selection": paths.selection(wildcards.model, wildcards.seed),
    }
    if any(float(f) > 0 for f in OPTIMAL_FRACTIONS):
        inputs["optimal"] = paths.optimal(wildcards.model, wildcards.seed)
    if "0.00" in OPTIMAL_FRACTIONS:
        inputs["baseline"] = paths.baseline(wildcards.model)
    return inputs


def evaluate_optimal_args(wildcards, input):
    return [
        arg
        for name in ("optimal", "baseline")
        if name in input.keys()
        for arg in (f"--{name}", input[name])
    ]
