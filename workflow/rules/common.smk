import re
import sys

from neuron_ablation import paths
from neuron_ablation.config import (
    SCHEMA_PATH,
    check_config,
    focus_methods,
    focus_only_blocks,
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
)  # of get_mlm_split_args (rule train_mlm)
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
# Seeds beyond `seeds` score only the focus fractions (eval.focus_seeds), a block of
# eval.focus_seeds_per_job seeds per job (rules evaluate_focus_<first>_<last>).
FOCUS_FRACTIONS = [paths.fraction_label(f) for f in config["fractions"] if is_focus(config, f)]
FOCUS_ONLY_BLOCKS = focus_only_blocks(config)
# Method optimal is trained and scored at optimal.fractions only (rules optimal, evaluate_optimal).
OPTIMAL_FRACTIONS = [
    paths.fraction_label(f) for f in method_fractions(config, "optimal")
]
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


def get_model_source(wildcards):
    """--model-source of the job's model (model_source)."""
    return model_source(wildcards.model)


def model_setting(key):
    """A param function: the value of `key` in the job's model entry (config `models`)."""
    return lambda wildcards: MODELS[wildcards.model][key]


def dataset_of(model):
    return config["datasets"][MODELS[model]["dataset"]]


def dataset_source(model):
    """A hub id, a local path, a prepared text asset, or embedded:<image set> read in place."""
    return dataset_path(dataset_of(model)["source"])


# local_inputs(*paths) (neuron_ablation.sources): of resolved paths, those Snakemake must build
# or track (embedded assets under resources/, existing local files).


def get_model_digest(wildcards):
    """The model as every job's input: the digest of its files (rule model_digest), which reruns
    when a file changes in place, and with it everything computed from the model."""
    return paths.model_digest(wildcards.model)


def get_model_files(wildcards):
    """The model's files, each one input of rule model_digest
    (neuron_ablation.sources.model_file_inputs)."""
    return model_file_inputs(model_source(wildcards.model))


def get_runtime_args(wildcards):
    """--batch-size, --device and --dtype of the job's model."""
    m = MODELS[wildcards.model]
    return [
        *("--batch-size", str(m["batch_size"])),
        *("--device", m["device"]),
        *("--dtype", m["dtype"]),
    ]


def model_params(runtime=True):
    """The params of a job that loads its model (`params: **model_params()`): `model` (its
    --model-source) and `task`, with `runtime` also `runtime` (get_runtime_args)."""
    params = {"model": get_model_source, "task": model_setting("task")}
    if runtime:
        params["runtime"] = get_runtime_args
    return params


def model_resource(name):
    """A resource function: `name` in the job's model's `resources` entry, 0 where it sets none."""
    return lambda wildcards: MODELS[wildcards.model].get("resources", {}).get(name, 0)


def model_resources():
    """The resources of a job that runs its model (`resources: **model_resources()`)."""
    return {name: model_resource(name) for name in ("gpu", "mem_mb", "runtime")}


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


def model_eval_results(model):
    return [
        paths.eval_result(model, method, seed, paths.fraction_label(fraction))
        for method in model_methods(config, model)
        for fraction in method_fractions(config, method)
        for seed in seeds_at(config, model, method, fraction)
    ]


def get_eval_results(wildcards):
    """Every evaluation result of the job's model."""
    return model_eval_results(wildcards.model)


def get_job_fractions(wildcards):
    """The fraction labels one evaluation job of a seed of `seeds` scores (its --fraction, and
    its outputs): every fraction, or those of `optimal.fractions` for method optimal
    (evaluate_optimal). Blocks of focus-only seeds score FOCUS_FRACTIONS."""
    if method_spec(wildcards.method).needs_training:
        return OPTIMAL_FRACTIONS
    return FRACTIONS


def get_sweep_args(wildcards):
    """Fractions outside eval.focus on the first rows only, when eval.sweep is set."""
    rows = get_sweep_rows_args(wildcards)
    return rows and [*rows, "--focus", *map(str, config["eval"]["focus"])]


def get_sweep_rows_args(wildcards):
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


def get_mlm_split_args():
    eval_share, split_seed = demo_mlm_split(config)
    return ["--eval-share", str(eval_share), "--split-seed", str(split_seed)]


def get_dataset_files(wildcards):
    """The dataset files, and an embedded image set's (a missing Fashion-MNIST stops here,
    before any job runs, with the apt command); the model is get_model_digest."""
    return source_inputs(dataset_of(wildcards.model)["source"], "dataset")


def get_dataset_split_args(wildcards):
    """The dataset's text field and the split of its rows into statistics and evaluation."""
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


def get_evaluate_inputs(wildcards):
    """The inputs of one evaluation job of a seed of `seeds` (rules evaluate, evaluate_optimal)."""
    selection = paths.selection(wildcards.model, wildcards.seed)
    return scored_inputs(wildcards, selection, get_job_fractions(wildcards))


def get_focus_block_inputs(seeds):
    """The input function of an evaluate_focus job: the selections of its block of focus-only
    seeds, in order, scored at the focus fractions."""
    return lambda wildcards: scored_inputs(
        wildcards, [paths.selection(wildcards.model, s) for s in seeds], FOCUS_FRACTIONS
    )


def scored_inputs(wildcards, selection, fractions):
    """What an evaluate command reads to score `selection` (one path, or one per seed) at the
    fraction labels `fractions`: the model, the evaluation tokens, the selection; what the
    method's constants or replacements come from, if any fraction ablates a neuron; the
    baseline, for fraction 0."""
    model, method = wildcards.model, method_spec(wildcards.method)
    inputs = {
        "model": get_model_digest(wildcards),
        "tokens": paths.tokens(model, "eval"),
        "selection": selection,
    }
    fractions = [float(f) for f in fractions]
    if method.name in NEEDS_STATISTICS:
        inputs["stats"] = paths.stats(model)
    if method.needs_training and any(f > 0.0 for f in fractions):
        inputs["optimal"] = paths.optimal(model, wildcards.seed)  # one seed per optimal job
    if method.needs_bank and any(f > 0.0 for f in fractions):
        inputs["bank"] = resample_bank(model, method.name)
    if any(f == 0.0 for f in fractions):
        inputs["baseline"] = paths.baseline(model)
    return inputs


def focus_block_name(seeds):
    """(name of the rule, label of its log and benchmark) of a block, after its first and last
    seed."""
    first, last = seeds[0], seeds[-1]
    label = str(first) if first == last else f"{first}_{last}"
    return f"evaluate_focus_{label}", f"{{model}}/{{method}}_seeds{label}"


def take_focus_settings(name):
    """Give the rule `name` of a block of focus-only seeds what --set-threads, --set-resources and
    --groups give evaluate_focus (profiles/slurm), since Snakemake matches them by rule name and
    a block's rule is named by its seeds; entries of `name` itself still win."""
    resources, settings = getattr(rules, name).rule.resources, workflow.resource_settings
    threads = settings.overwrite_threads
    if "evaluate_focus" in threads:
        resources["_cores"] = threads.get(name, threads["evaluate_focus"])
    for entry in ("evaluate_focus", name):
        resources.update(settings.overwrite_resources.get(entry, {}))
    groups = workflow.group_settings.overwrite_groups  # --groups (profiles/slurm), by rule name
    if "evaluate_focus" in groups and name not in groups:
        getattr(rules, name).rule.group = groups["evaluate_focus"]


def get_optional_input_args(wildcards, input):
    """--stats, --optimal, --baseline and --bank, for those of scored_inputs there are."""
    names = ("stats", "optimal", "baseline", "bank")
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


def get_generator_files(wildcards):
    """The generator of resample-generated, when it is not the model itself (get_model_digest):
    a configured model's digest, else its local files."""
    generator = RESAMPLE["generator"]
    if wildcards.source != "generated" or generator is None:
        return []
    if generator in MODELS:
        return [paths.model_digest(generator)]
    return model_file_inputs(model_path(generator))


def get_resample_args(wildcards):
    """The settings of section `resample` that the job's source uses."""
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


def get_optimal_args(wildcards):
    """Steps, batch size, sequence length and learning rate of the model's optimal training."""
    settings = optimal_settings(config, wildcards.model)
    return [
        *("--steps", str(settings["steps"])),
        *("--batch-size", str(settings["batch_size"])),
        *("--seq-len", str(settings["seq_len"])),
        *("--lr", str(settings["lr"])),
    ]
