"""One prepared check of the CUDA path: the tiny workflow on the GPU against the same on the CPU.

    python -m benchmarks.gpu_check OUT_DIR                      # on a GPU machine (device cuda)
    python -m benchmarks.gpu_check OUT_DIR --device cpu --quick  # CI: every comparison on CPU
    python -m benchmarks.gpu_check OUT_DIR --compare-only        # compare OUT_DIR/work again

(from the repository root, with ``-m``: it imports the tests' tiny models, ``tests.helpers``).
``benchmarks/gpu_check.sh OUT_DIR`` installs the project first, for a bare GPU machine.

It saves a tiny causal LM (Llama), masked LM (RoBERTa) and ViT of the real Hugging Face classes
(tests/helpers/tiny_models.py), writes one config in which every (model, variant) is a model of
its own, and runs the pipeline once (Snakemake in a subprocess, all variants side by side):

- the *reference*: ``--reference-device`` (cpu), float32, batch size 4;
- one *candidate* per ``--dtypes`` entry on ``--device``: float32 and bfloat16 by default. A
  float32 candidate on the reference's own device runs at batch size 2, so that a CPU-only run
  still compares two runs (different batch shapes, identical results expected) and every
  comparison below runs in CI.

Each candidate's statistics store and evaluation results are compared with the reference's
(the limits are in :data:`TOLERANCES` and in the summary):

- activation counts per neuron: equal, always;
- float32: at most 0.1 % of each layer's observations in another bin, each moved by at most one
  bin (CPU and GPU kernels round differently, so a value within ~1e-7 of a bin edge may cross
  it), the means within 1e-5, the peaks equal wherever a neuron's histograms are equal, and the
  scores (loss, top-1) equal up to rounding;
- bfloat16 / float16: the means and the value distributions (Wasserstein-1 distance per neuron)
  within stated limits, the peaks as a share of neurons within a stated distance, the scores
  within a stated relative loss and top-1 difference.

Then it measures the statistics and ablated-evaluation ratios of benchmarks/ablation_speed.py at
OPT-1.3B width (4 layers, random weights) on ``--device`` per dtype (with ``--quick``: on the
tiny causal LM, a smoke run). It writes ``gpu_check.json`` and ``gpu_check.md`` under OUT_DIR,
prints the markdown and exits 1 on any mismatch, failed pipeline run or stage that raised (its
traceback in the summary), 2 on bad arguments (e.g. ``--device cuda`` without CUDA), 0 otherwise.
The ratios are reported, never judged: they are timings.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from tests.helpers.tiny_models import (
    corpus,
    image_folder,
    save_causal_lm,
    save_masked_lm,
    save_vit,
    write_jsonl,
)
from tests.helpers.workflow import snakemake_command

BENCHMARKS = Path(__file__).resolve().parent
# The speed benchmarks import each other as top-level modules (``from paper_memory import``).
sys.path.insert(0, str(BENCHMARKS))
import ablation_speed  # noqa: E402

RUNS_FILE = "variants.json"  # under OUT_DIR/work: what --compare-only compares
REFERENCE_BATCH = 4
SAME_DEVICE_BATCH = 2
LOW_PRECISION = ("bfloat16", "float16")

TOLERANCES: dict[str, dict[str, float]] = {
    # float32 against float32: the same computation, rounded differently by other kernels.
    "float32": {
        "moved share": 1e-3,  # observations of a layer in another bin, share of its count
        "bins per moved observation": 1.0,  # every moved observation crossed one edge at most
        "mean abs diff": 1e-5,  # activations are O(1)
        "peaks differing where histograms are equal": 0,
        "loss rel diff": 1e-4,
        # Share of the scored predictions (at least one: a near-tie of a random model may flip).
        "top-1 diff": 0.01,
    },
    # bfloat16 / float16 against float32: 8 / 11 mantissa bits per weight and activation. The
    # limits are 3-12x the largest differences of bfloat16 on the CPU (docs/gpu-check.md).
    "low precision": {
        "mean abs diff": 0.005,
        "wasserstein-1": 0.005,  # per neuron, between the value distributions, activation units
        "peak far share": 0.25,  # share of neurons whose peak moved by more than "peak distance"
        "peak distance": 0.1,
        "loss rel diff": 0.05,
        "top-1 diff": 0.1,  # two of the 20 evaluation images (at least one prediction)
    },
}

FAMILIES = {  # family: (task, dataset)
    "causal": ("causal-lm", "corpus"),
    "masked": ("masked-lm", "corpus"),
    "vision": ("image-classification", "images"),
}


@dataclass(frozen=True)
class Variant:
    """One run of the three tiny models: where, in which dtype, at which batch size."""

    device: str
    dtype: str
    batch_size: int
    reference: bool = False

    @property
    def label(self) -> str:
        """``reference``, or device, dtype and batch size unless 4 (``cuda:1`` as ``cuda_1``: a
        model name has no colon)."""
        if self.reference:
            return "reference"
        suffix = "" if self.batch_size == REFERENCE_BATCH else f"-batch{self.batch_size}"
        return f"{self.device.replace(':', '_')}-{self.dtype}{suffix}"

    def model(self, family: str) -> str:
        """The model name of ``family`` in this variant (a key of the config's models)."""
        return f"{family}-{self.label}"


def variants(device: str, reference_device: str, dtypes: list[str]) -> list[Variant]:
    """The reference first, then one candidate per dtype."""
    reference = Variant(reference_device, "float32", REFERENCE_BATCH, reference=True)
    candidates = [
        Variant(device, dtype, SAME_DEVICE_BATCH)
        if device == reference_device and dtype == "float32"
        else Variant(device, dtype, REFERENCE_BATCH)
        for dtype in dtypes
    ]
    return [reference, *candidates]


@dataclass
class Check:
    """One compared quantity of one candidate against the reference."""

    family: str
    candidate: str
    artifact: str
    quantity: str
    value: float
    limit: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.value <= self.limit)


# --- the pipeline run


def save_inputs(root: Path) -> dict[str, Path]:
    """The tiny models and datasets, saved under ``root``: name -> path."""
    return {
        "causal": save_causal_lm(root / "models" / "causal", "llama"),
        "masked": save_masked_lm(root / "models" / "masked", "roberta"),
        "vision": save_vit(root / "models" / "vision"),
        "corpus": write_jsonl(root / "corpus.jsonl", corpus()),
        "images": image_folder(root / "images"),
    }


def pipeline_config(inputs: dict[str, Path], runs: list[Variant], quick: bool) -> dict:
    """The tiny workflow's config with every (family, variant) as a model of its own.

    ``quick`` (the CI size: every comparison, fewest jobs) keeps the causal LM, the peak method
    (statistics -> constants -> fold) and two fractions; the full check adds the masked LM and the
    ViT, zero, mean and resampling ablation (banks on the device) and fraction 0 (the baseline).
    """
    families = ["causal"] if quick else list(FAMILIES)
    models = {
        run.model(family): model_entry(inputs, family, run) for run in runs for family in families
    }
    resampling = ["resample-tokens", "resample-pixels"]
    return {
        "models": models,
        "datasets": {
            "corpus": {"source": str(inputs["corpus"]), "eval_share": 0.25},
            "images": {"source": str(inputs["images"]), "eval_share": 0.3},
        },
        "methods": ["peak"] if quick else ["zero", "mean", "peak", *resampling],
        "skip_inapplicable_methods": True,
        "seeds": [0],
        "fractions": [0.5, 1.0] if quick else [0.0, 0.5, 1.0],
        "stats": {"n_tokens": 512, "n_images": 40, "bin_width": 0.01, "range": [-4.0, 4.0]},
        "eval": {"n_tokens": 128, "n_images": 20},
        "resample": {"n_sequences": 4},
    }


def model_entry(inputs: dict[str, Path], family: str, run: Variant) -> dict:
    """The config entry of ``family`` in ``run``. The causal LM's GPU jobs ask for the profile's
    ``gpu`` resource (models.<name>.resources.gpu), so that path runs too; the other families'
    do not, so that their GPU jobs run side by side (the profile lets one ``gpu`` job run at a
    time)."""
    task, dataset = FAMILIES[family]
    entry = {
        "source": str(inputs[family]),
        "task": task,
        "dataset": dataset,
        "seq_len": 16,
        "batch_size": run.batch_size,
        "device": run.device,
        "dtype": run.dtype,
    }
    if family == "causal" and run.device.startswith("cuda"):
        entry["resources"] = {"gpu": 1}
    return entry


def families_of(config: dict) -> list[str]:
    """The families a config written by :func:`pipeline_config` holds."""
    return [f for f in FAMILIES if f"{f}-reference" in config["models"]]


def result_paths(config: dict, model: str) -> dict[str, str]:
    """What is compared of ``model``: artifact label -> path under the work directory."""
    from neuron_ablation import paths
    from neuron_ablation.config import method_fractions, model_methods, validate_config

    config = validate_config(copy.deepcopy(config))
    found = {"statistics": paths.stats(model)}
    if 0.0 in config["fractions"]:  # the clean result, which fraction 0 reuses
        found["baseline"] = paths.baseline(model)
    for method in model_methods(config, model):
        for seed in config["seeds"]:
            for fraction in method_fractions(config, method):
                label = f"{method} seed {seed} fraction {paths.fraction_label(fraction)}"
                found[label] = paths.eval_result(model, method, seed, fraction)
    return found


def run_pipeline(workdir: Path, config: dict, cores: int, log: Path) -> bool:
    """Snakemake on every compared artifact of every model; its output goes to ``log``."""
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    targets = [path for model in config["models"] for path in result_paths(config, model).values()]
    # The statistics rule takes every core by default, so its jobs would run one at a time, with
    # nothing beside them; its bins and sums do not depend on the thread count.
    threads = ["--set-threads", f"statistics={min(cores, 2)}"]
    # (last: --set-threads takes every value that follows it)
    cmd = snakemake_command(workdir, configfile, "--cores", str(cores), *targets, *threads)
    with log.open("w") as out:
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode == 0


# --- comparisons


def read_store(path: Path) -> dict[str, np.ndarray]:
    """The compared arrays of a statistics store after its integrity check: count, mean, peak
    [layer, neuron] and slots int64 [layer, neuron, underflow + bins + overflow]."""
    from neuron_ablation.statistics import open_statistics

    store = open_statistics(path, counts=True)
    slots = np.concatenate(
        [store["underflow"][:][..., None], store["hist"][:], store["overflow"][:][..., None]],
        axis=-1,
    )
    arrays = {name: store[name][:] for name in ("count", "mean", "peak")}
    return arrays | {"slots": slots, "bin_width": float(store.attrs["bin_width"])}


def histogram_distances(reference: np.ndarray, candidate: np.ndarray) -> tuple:
    """(moved, earth mover's distance in bins), float64 [layer, neuron] each, between two
    int64 [layer, neuron, slot] histograms of equal counts: ``moved`` is the number of
    observations in another slot, the distance what moving them back costs (one bin per
    observation when each crossed one edge)."""
    difference = candidate - reference
    moved = np.abs(difference).sum(axis=-1) / 2
    distance = np.abs(np.cumsum(difference, axis=-1)).sum(axis=-1)
    return moved.astype(np.float64), distance.astype(np.float64)


def worst(values: np.ndarray) -> str:
    """Where the largest of float [layer, neuron] ``values`` is, for the summary ("" if all 0)."""
    if not values.any():
        return ""
    layer, neuron = np.unravel_index(np.argmax(values), values.shape)
    return f"worst: layer {layer}, neuron {neuron}"


def compare_statistics(reference: dict, candidate: dict, precision: str) -> Iterator[tuple]:
    """(quantity, value, limit, detail) of every compared statistic."""
    limits = TOLERANCES[precision]
    counts_differ = reference["count"] != candidate["count"]
    yield "neurons with another count", float(counts_differ.sum()), 0, ""
    if counts_differ.any():
        return  # the histograms of different numbers of observations are not comparable
    mean_diff = np.abs(candidate["mean"] - reference["mean"])
    yield "mean abs diff", float(mean_diff.max()), limits["mean abs diff"], worst(mean_diff)
    moved, distance = histogram_distances(reference["slots"], candidate["slots"])
    count = np.maximum(reference["count"], 1)
    peak_diff = np.abs(candidate["peak"] - reference["peak"])
    if precision == "float32":
        # Per layer: a single crossing is 1/count of a neuron, already 0.2 % in the tiny run.
        share = moved.sum(axis=-1) / count.sum(axis=-1)
        where = f"worst: layer {int(np.argmax(share))}" if share.any() else ""
        yield "moved share", float(share.max()), limits["moved share"], where
        per_moved = np.where(moved > 0, distance / np.maximum(moved, 1), 0)
        yield (
            "bins per moved observation", float(per_moved.max()),
            limits["bins per moved observation"], worst(per_moved),
        )  # fmt: skip
        equal = moved == 0
        differing = float((equal & (peak_diff > 0)).sum())
        yield (
            "peaks differing where histograms are equal", differing,
            limits["peaks differing where histograms are equal"],
            f"{int(equal.sum())} of {equal.size} neurons with equal histograms",
        )  # fmt: skip
    else:
        wasserstein = distance * reference["bin_width"] / count
        yield "wasserstein-1", float(wasserstein.max()), limits["wasserstein-1"], worst(wasserstein)
        far = peak_diff > limits["peak distance"] + 1e-12
        yield (
            "peak far share", float(far.mean()), limits["peak far share"],
            f"peaks moved by more than {limits['peak distance']}; median move "
            f"{float(np.median(peak_diff)):.4f}",
        )  # fmt: skip


def compare_scores(reference: dict, candidate: dict, precision: str) -> Iterator[tuple]:
    """(quantity, value, limit, detail) of one evaluation result against the reference's."""
    limits = TOLERANCES[precision]
    yield "scored predictions differ", float(reference["n_tokens"] != candidate["n_tokens"]), 0, ""
    loss_diff = abs(candidate["loss"] - reference["loss"]) / max(abs(reference["loss"]), 1e-12)
    yield "loss rel diff", loss_diff, limits["loss rel diff"], ""
    top1_diff = abs(candidate["top1"] - reference["top1"])
    one_prediction = 1 / max(reference["n_tokens"], 1) + 1e-12
    yield "top-1 diff", top1_diff, max(limits["top-1 diff"], one_prediction), ""


def most_different(rows: list[tuple[str, tuple]]) -> Iterator[tuple]:
    """Per quantity, the (quantity, value, limit, detail) of the result that differs most (a
    failing one first), its artifact named in the detail: one row per quantity over all of a
    model's results."""

    def badness(row: tuple) -> tuple[bool, float]:
        quantity, value, limit, _ = row
        return not value <= limit, value

    by_quantity: dict[str, tuple[str, tuple]] = {}
    for artifact, row in rows:
        kept = by_quantity.get(row[0])
        if kept is None or badness(row) > badness(kept[1]):
            by_quantity[row[0]] = (artifact, row)
    for artifact, (quantity, value, limit, detail) in by_quantity.values():
        where = f"worst: {artifact}" if value != 0 else ""  # NaN included
        yield quantity, value, limit, "; ".join(part for part in (where, detail) if part)


def compare_family(
    workdir: Path, config: dict, family: str, reference: Variant, candidate: Variant
) -> list[Check]:
    """Every check of ``family``'s candidate against its reference."""
    from neuron_ablation.io import read_json

    precision = "float32" if candidate.dtype == "float32" else "low precision"
    ref_paths = result_paths(config, reference.model(family))
    cand_paths = result_paths(config, candidate.model(family))
    checks = [
        Check(family, candidate.label, "statistics", *row)
        for row in compare_statistics(
            read_store(workdir / ref_paths.pop("statistics")),
            read_store(workdir / cand_paths.pop("statistics")),
            precision,
        )
    ]
    score_rows = [
        (label, row)
        for label in ref_paths
        for row in compare_scores(
            read_json(workdir / ref_paths[label]), read_json(workdir / cand_paths[label]), precision
        )
    ]
    checks += [Check(family, candidate.label, "scores", *row) for row in most_different(score_rows)]
    return checks


def compare_all(workdir: Path, config: dict, runs: list[Variant]) -> list[Check]:
    reference, *candidates = runs
    return [
        check
        for candidate in candidates
        for family in families_of(config)
        for check in compare_family(workdir, config, family, reference, candidate)
    ]


# --- speed ratios


def speed_ratios(device: str, dtypes: list[str], quick: bool, tiny_causal: Path) -> list[dict]:
    """The statistics and ablated-evaluation ratios of ablation_speed.py on ``device`` per dtype:
    at OPT-1.3B width (4 layers), or on the tiny causal LM with ``quick``."""
    from neuron_ablation.models import DTYPES, load_model

    rows = []
    for dtype in dtypes:
        if quick:
            model = load_model(str(tiny_causal), "causal-lm", device, dtype)
            name, tokens, seq_len, batch_size, repeats = "tiny Llama (smoke run)", 64, 16, 2, 1
        else:
            model = ablation_speed.random_weight_model("opt-1.3b", 4, device, DTYPES[dtype])
            name, seq_len, batch_size, repeats = "OPT-1.3B width, 4 layers", 256, 8, 3
            tokens = 16384 if device.startswith("cuda") else 1024
        ids = ablation_speed.random_ids(model, tokens, seq_len)
        ablation_speed.warm_up(model, ids, batch_size)
        ratios = ablation_speed.paired_ratios(
            model, ids, batch_size, repeats, ["statistics", "ablated"]
        )
        for label, ((value, low, high, pairs), target) in ratios.items():
            rows.append(
                {"model": name, "device": device, "dtype": dtype, "ratio": label,
                 "value": value, "low": low, "high": high, "pairs": pairs,
                 "tokens": int(ids.size), "target (CPU)": target}
            )  # fmt: skip
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


# --- summary


def environment(device: str) -> dict[str, str]:
    """What ran the check: versions, and the GPU's name where ``device`` is one."""
    import transformers

    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu threads": str(torch.get_num_threads()),
        "cuda": str(torch.version.cuda),
    }
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        found["gpu"] = torch.cuda.get_device_name(index)
        found["gpu memory GiB"] = (
            f"{torch.cuda.get_device_properties(index).total_memory / 2**30:.0f}"
        )
    return found


def markdown(summary: dict) -> str:
    """The summary as markdown: verdict, environment, tolerances, checks, ratios."""
    lines = [
        f"# GPU check: {'PASSED' if summary['passed'] else 'FAILED'}",
        "",
        f"device {summary['device']} against reference {summary['reference_device']}; "
        f"dtypes {', '.join(summary['dtypes'])}; {summary['wall_seconds']:.0f} s"
        + ("; --quick" if summary["quick"] else "")
        + (
            "; --compare-only (the earlier run's results compared again)"
            if summary["compare_only"]
            else ""
        ),
        "",
        "| environment | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in summary["environment"].items()),
        "",
    ]
    for error in summary["errors"]:
        lines += ["## Error", "", "```text", error.rstrip(), "```", ""]
    lines += ["## Tolerances", "", "| precision | quantity | limit |", "|---|---|---|"]
    for precision, limits in summary["tolerances"].items():
        lines += [f"| {precision} | {quantity} | {limit:g} |" for quantity, limit in limits.items()]
    lines += [
        "",
        "## Comparisons with the reference",
        "",
        "| family | candidate | artifact | quantity | value | limit | ok | detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {c['family']} | {c['candidate']} | {c['artifact']} | {c['quantity']} | "
        f"{c['value']:.3g} | {c['limit']:g} | {'yes' if c['passed'] else '**NO**'} | "
        f"{c['detail']} |"
        for c in summary["checks"]
    ]
    if summary["ratios"]:
        lines += [
            "",
            "## Speed ratios (ablation_speed.py; timings, not judged)",
            "",
            "| model | device | dtype | ratio | value | 95 % interval | pairs | target (CPU) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['model']} | {r['device']} | {r['dtype']} | {r['ratio']} | {r['value']:.3f} | "
            f"[{r['low']:.3f}, {r['high']:.3f}] | {r['pairs']} | {r['target (CPU)']} |"
            for r in summary["ratios"]
        ]
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, summary: dict) -> str:
    text = markdown(summary)
    (out_dir / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "gpu_check.md").write_text(text)
    return text


# --- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out_dir", type=Path, help="where the summary and the runs are written")
    parser.add_argument("--device", default="cuda", help="device of the candidates (cuda, cpu)")
    parser.add_argument("--reference-device", default="cpu", help="device of the reference run")
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "bfloat16"],
        choices=["float32", *LOW_PRECISION],
        help="one candidate per dtype",
    )
    parser.add_argument("--quick", action="store_true", help="CI size: fewer methods, tiny ratios")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--compare-only",
        action="store_true",
        help="compare the runs already under OUT_DIR/work again (no pipeline run, no ratios)",
    )
    args = parser.parse_args(argv)
    if args.compare_only:
        if not (args.out_dir / "work" / RUNS_FILE).exists():
            parser.error(f"--compare-only: no earlier run under {args.out_dir / 'work'}")
        return args  # the devices, dtypes and sizes are the earlier run's
    if len(set(args.dtypes)) < len(args.dtypes):
        parser.error(f"--dtypes: each dtype once, got {' '.join(args.dtypes)}")
    for option, device in (
        ("--device", args.device),
        ("--reference-device", args.reference_device),
    ):
        problem = device_problem(device)
        if problem:
            parser.error(f"{option} {device}: {problem}")
    return args


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot run here, or None."""
    if device == "cpu":
        return None
    if not device.startswith("cuda"):
        return "not a device of this check; allowed: cpu, cuda, cuda:N"
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        return (
            f"CUDA is not available on this machine (torch {torch.__version__}, {build}); run "
            "with --device cpu, or on a machine with an NVIDIA GPU and a CUDA build of torch"
        )
    index = torch.device(device).index or 0
    if index >= torch.cuda.device_count():
        return f"only {torch.cuda.device_count()} GPU(s) are visible"
    return None


def load_runs(work: Path) -> tuple[list[Variant], dict]:
    """The variants (reference first) and the config of the run under ``work``."""
    runs = [Variant(**run) for run in json.loads((work / RUNS_FILE).read_text())]
    return runs, yaml.safe_load((work / "config.yaml").read_text())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    work = args.out_dir / "work"
    if not args.compare_only:
        # Fresh models have new file times: Snakemake would rerun everything of an old run anyway.
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    if args.compare_only:
        runs, config = load_runs(work)
    else:
        runs = variants(args.device, args.reference_device, args.dtypes)
    reference, *candidates = runs
    summary = {
        "passed": False, "device": candidates[0].device, "reference_device": reference.device,
        "dtypes": [c.dtype for c in candidates], "quick": args.quick,
        "compare_only": args.compare_only,
        # Compared elsewhere, the GPU of the run is not this machine's to name.
        "environment": environment("cpu" if args.compare_only else args.device),
        "tolerances": TOLERANCES, "checks": [], "ratios": [], "errors": [], "stages_seconds": {},
    }  # fmt: skip
    inputs = None
    if not args.compare_only:
        inputs = run_stage(summary, "save models", lambda: save_inputs(work / "inputs"))
        if inputs is not None:
            config = pipeline_config(inputs, runs, args.quick)
            (work / RUNS_FILE).write_text(json.dumps([asdict(run) for run in runs]))
            log = args.out_dir / "snakemake.log"
            ran = run_stage(
                summary, "pipeline", lambda: run_pipeline(work, config, args.cores, log)
            )
            if ran is False:
                summary["errors"].append(f"pipeline: it failed; the end of {log}:\n" + tail(log))
    if not summary["errors"]:
        checks = run_stage(summary, "compare", lambda: compare_all(work, config, runs))
        summary["checks"] = [asdict(c) | {"passed": c.passed} for c in checks or []]
    if inputs is not None:  # the ratios need only the saved models: worth having after a failure
        causal = inputs["causal"]
        ratios = run_stage(
            summary,
            "speed ratios",
            lambda: speed_ratios(args.device, args.dtypes, args.quick, causal),
        )
        summary["ratios"] = ratios or []
    failed = [c for c in summary["checks"] if not c["passed"]]
    summary["passed"] = bool(summary["checks"]) and not failed and not summary["errors"]
    summary["wall_seconds"] = time.perf_counter() - start
    print(write_summary(args.out_dir, summary), end="")
    errors = summary["errors"]
    print(
        "PASSED"
        if summary["passed"]
        else f"FAILED: {len(failed)} mismatches"
        + (f", {len(errors)} failed stages" if errors else "")
    )
    return 0 if summary["passed"] else 1


def run_stage(summary: dict, name: str, fn: Callable):
    """``fn()``, timed into the summary; None if it raised, with its traceback in the summary's
    errors: a failed stage fails the check, and the summary is still written (on a GPU day the
    traceback is what comes back)."""
    start = time.perf_counter()
    try:
        return fn()
    except Exception:
        summary["errors"].append(f"{name}:\n{traceback.format_exc()}")
        return None
    finally:
        summary["stages_seconds"][name] = round(time.perf_counter() - start, 1)


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


if __name__ == "__main__":
    sys.exit(main())
