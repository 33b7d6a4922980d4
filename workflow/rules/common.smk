import re
from pathlib import Path

from neuron_ablation.assets import EMBEDDED_PREFIX
from neuron_ablation.config import SCHEMA_PATH, check_config, fraction_label, model_methods
from snakemake.utils import validate


validate(config, schema=str(SCHEMA_PATH))
check_config(config)

MODELS = config["models"]
RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
ENV = "../../environment.yml"
FRACTIONS = [fraction_label(f) for f in config["fractions"]]
NEEDS_STATISTICS = ("mean", "peak")


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    model=_alternatives(MODELS),
    method=_alternatives(config["methods"]),
    seed=r"\d+",
    fraction=r"\d\.\d\d",
    part="stats|eval",
    asset=r"[A-Za-z0-9_.-]+",


def embedded(source):
    return source.removeprefix(EMBEDDED_PREFIX) if source.startswith(EMBEDDED_PREFIX) else None


def model_source(model):
    """What from_pretrained loads: a hub id, a local directory, or an embedded model's directory."""
    source = MODELS[model]["source"]
    asset = embedded(source)
    return f"resources/models/{asset}" if asset else source


def dataset_of(model):
    return config["datasets"][MODELS[model]["dataset"]]


def dataset_source(model):
    source = dataset_of(model)["source"]
    asset = embedded(source)
    return f"resources/datasets/{asset}.jsonl" if asset else source


def local_inputs(*paths):
    """The paths Snakemake must build or track: embedded assets and existing local files."""
    return [p for p in paths if p.startswith("resources/") or Path(p).exists()]


def model_inputs(wildcards):
    return local_inputs(model_source(wildcards.model))


def model_resource(name):
    return lambda wildcards: MODELS[wildcards.model].get("resources", {}).get(name, 0)


def runtime_args(model):
    m = MODELS[model]
    return f"--batch-size {m['batch_size']} --device {m['device']} --dtype {m['dtype']}"


def eval_result(model, method, seed, fraction):
    return f"{RESULTS}/{model}/eval/{method}/seed{seed}/frac{fraction}.json"


def model_eval_results(model):
    return [
        eval_result(model, method, seed, fraction)
        for method in model_methods(config, model)
        for seed in config["seeds"]
        for fraction in FRACTIONS
    ]


def model_outputs(model):
    return model_eval_results(model) + [
        f"{RESULTS}/figures/{model}.png",
        f"{RESULTS}/figures/{model}_neurons.png",
        f"{RESULTS}/tables/{model}_top_neurons.csv",
    ]


def all_outputs():
    tables = ("ablation.csv", "table2.csv", "table2.md", "comparison.csv", "comparison.md")
    outputs = [f"{RESULTS}/tables/{name}" for name in tables]
    return outputs + [path for model in MODELS for path in model_outputs(model)]
