"""Pre-flight: cheap checks of every model, dataset and machine resource a config names, run
when the workflow starts (before any job) and by ``neuron-ablation check-config``.

What is read, and what is not:

- **Models** (a local directory, an embedded model once the pipeline has built it, a hub id's
  ``config.json``): ``config.json`` only, never the weights. ``model_type`` must have an entry in
  :data:`neuron_ablation.architectures.ARCHITECTURES` for the configured task, and its
  attention shape must follow the family's rules (heads divide ``hidden_size``, key/value heads
  divide the heads, ``head_dim`` sets a head's width where the family reads it); ``seq_len`` (and
  ``resample.seq_len``) must fit the model's positions; every ``*.safetensors`` file must be as
  long as its header says (a truncated download fails here, not in evaluation); a text model
  needs its tokenizer files (and an EOS token, or special tokens that it adds to every
  document, to separate documents), a vision model its ``preprocessor_config.json``.
- **Device**: ``cuda``/``cuda:N``/``mps`` must exist on this machine, when the jobs run here.
- **Histogram memory**: layers x neurons x (bins + 2) x 8 bytes, twice (the counts and the
  copy written to Zarr), against the memory available here (or ``resources.mem_mb`` when jobs
  run elsewhere).
- **Local datasets** (and embedded text once built): a supported format, readable, with the
  text field, and enough text for the requested tokens of both parts. Documents are read in
  file order and assigned to parts exactly as the tokenize job does: all of a file up to
  64 MiB (a broken line anywhere is found), of a larger one until both parts have at least
  ``2 x needed x 4`` characters (4 characters per token is typical of English). A part is
  rejected outright when even ``2 x UTF-8 bytes + 4 x documents`` tokens could not fill it (a
  generous bound: byte-level tokenizers make at most one token per byte, plus special
  tokens). When a part has less than ``1.5 x needed x 4`` characters, the model's own
  tokenizer counts its tokens exactly (the tokenize job's stream), stopping at what is needed.
  Image folders: class sub-folders, images per part against ``n_images``, the first image opens.
- **Hub ids**: one probe of the hub endpoint (5 s timeout). Reachable: the model's
  ``config.json`` is fetched (small) and checked like a local one; a dataset's hub page must
  exist, and a gated one needs a login. Unreachable: a cached ``config.json`` is used with a
  note; anything not cached is an error that says the hub cannot be reached.

Embedded sources (``embedded:...``) are built by the pipeline itself: they are checked only once
they exist. Problems are collected for every model and dataset and raised together.

This module runs the checks in order; each concern has a module of its own:
:mod:`~neuron_ablation.preflight_model_files` (what a model directory holds),
:mod:`~neuron_ablation.preflight_hub` (hub ids), :mod:`~neuron_ablation.preflight_models` (model
sources, device, histogram memory), :mod:`~neuron_ablation.preflight_data` (local datasets), all
collecting into :class:`~neuron_ablation.preflight_findings.Findings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuron_ablation.config import ConfigError, input_count, model_methods
from neuron_ablation.model_shapes import seq_len_problem
from neuron_ablation.preflight_data import TextDemand, check_image_folder, check_text_dataset
from neuron_ablation.preflight_findings import Findings
from neuron_ablation.preflight_hub import Hub, check_hub_dataset
from neuron_ablation.preflight_models import (
    check_device,
    check_histogram_memory,
    check_model_source,
)
from neuron_ablation.sources import dataset_path, model_path, parse_source
from neuron_ablation.tokenization import n_sequences_for


class PreflightError(ConfigError):
    """A model, dataset or machine problem found before any job runs; names the field and fix."""


def _is_local(path: str) -> bool:
    return Path(path).expanduser().exists()


def preflight(
    config: dict[str, Any], *, jobs_run_here: bool = True, hub: Hub | None = None
) -> list[str]:
    """Check every model and dataset of a validated config (see the module doc).

    Args:
        jobs_run_here: the jobs run on this machine (device and memory are checked here);
            False for a cluster executor, where memory is compared with ``resources.mem_mb``.

    Returns:
        Notes worth saying that do not stop the run.

    Raises:
        PreflightError: listing every problem, each with its field and the fix.
    """
    hub = hub or Hub()
    findings = Findings()
    model_configs = {}
    for name, model in config["models"].items():
        field_name = f"models.{name}.source"
        model_config = check_model_source(field_name, model["source"], model["task"], hub, findings)
        model_configs[name] = model_config
        if jobs_run_here:
            check_device(name, model["device"], findings)
        if model_config is not None:
            _check_model_config(name, model, model_config, config, jobs_run_here, findings)
    _check_generator(config, hub, findings)
    _check_datasets(config, model_configs, hub, findings)
    if findings.problems:
        raise PreflightError(
            "pre-flight check failed, nothing was run:\n  " + "\n  ".join(findings.problems)
        )
    return findings.notes


def _check_model_config(
    name: str,
    model: dict[str, Any],
    model_config: dict[str, Any],
    config: dict[str, Any],
    jobs_run_here: bool,
    findings: Findings,
) -> None:
    if model["task"] != "image-classification":
        lengths = {f"models.{name}.seq_len": model["seq_len"]}
        resample_seq_len = config.get("resample", {}).get("seq_len")
        if resample_seq_len and any(m.startswith("resample-") for m in model_methods(config, name)):
            lengths["resample.seq_len"] = resample_seq_len
        for field_name, seq_len in lengths.items():
            if problem := seq_len_problem(model_config, seq_len):
                findings.problems.append(f"{field_name}: {problem}")
    check_histogram_memory(name, model, model_config, config["stats"], jobs_run_here, findings)


def _check_generator(config: dict[str, Any], hub: Hub, findings: Findings) -> None:
    generator = config.get("resample", {}).get("generator")
    uses_generated = any(
        "resample-generated" in model_methods(config, name) for name in config["models"]
    )
    if generator is None or generator in config["models"] or not uses_generated:
        return
    check_model_source("resample.generator", generator, "causal-lm", hub, findings)


def _check_datasets(
    config: dict[str, Any],
    model_configs: dict[str, dict[str, Any] | None],
    hub: Hub,
    findings: Findings,
) -> None:
    for name, dataset in config["datasets"].items():
        users = [m for m, model in config["models"].items() if model["dataset"] == name]
        if not users:
            continue
        source = dataset_path(dataset["source"])
        if parse_source(dataset["source"]).kind == "embedded" and not _is_local(source):
            continue  # built or read in place by the pipeline (image sets are checked already)
        if not _is_local(source):
            check_hub_dataset(f"datasets.{name}.source", source, hub, findings)
            continue
        vision = [m for m in users if config["models"][m]["task"] == "image-classification"]
        if vision:
            needs = {p: max(input_count(config, m, p) for m in vision) for p in ("stats", "eval")}
            check_image_folder(name, source, dataset, needs, findings)
        text = [m for m in users if m not in vision]
        if text:
            demands = [_text_demand(config, m, model_configs[m]) for m in text]
            check_text_dataset(name, source, dataset, demands, findings)


def _text_demand(
    config: dict[str, Any], name: str, model_config: dict[str, Any] | None
) -> TextDemand:
    model = config["models"][name]
    source = model_path(model["source"])
    seq_len = model["seq_len"]
    needed = {
        part: n_sequences_for(input_count(config, name, part), seq_len) * seq_len
        for part in ("stats", "eval")
    }
    tokenizer_ready = model_config is not None and Path(source).expanduser().is_dir()
    return TextDemand(name, source, tokenizer_ready, seq_len, needed)
