"""Pre-flight of each model and the machine it runs on: its source (a local directory, an embedded
model once built, a hub id), its device, and whether its histograms fit in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuron_ablation.bins import BinGrid
from neuron_ablation.model_shapes import ModelShape, attention_problems, model_shape
from neuron_ablation.preflight_findings import Findings
from neuron_ablation.preflight_hub import Hub, hub_model_config
from neuron_ablation.preflight_model_files import (
    architecture_problem,
    processor_problem,
    read_config_json,
    weight_files_problems,
)
from neuron_ablation.sources import embedded_asset, model_path

HISTOGRAM_COPIES = 2
"""The statistics job holds the counts and, while writing, one stacked copy of them."""


def check_model_source(
    field_name: str, source: str, task: str, hub: Hub, findings: Findings
) -> dict[str, Any] | None:
    """Check one model source; return its ``config.json`` where it could be read."""
    asset = embedded_asset(source)
    path = Path(model_path(source)).expanduser()
    if asset and not path.exists():
        return None  # built by the pipeline: nothing to check yet
    if path.is_dir():
        return _check_local_model(field_name, path, task, findings)
    if path.exists():
        findings.problems.append(
            f"{field_name}: {source} is a file; a model source is a directory written by "
            "save_pretrained, or a hub id"
        )
        return None
    config = hub_model_config(field_name, source, hub, findings)
    if config is not None:
        problems = [architecture_problem(config, task), *attention_problems(config)]
        findings.problems += [f"{field_name}: {source}: {p}" for p in problems if p]
    return config


def _check_local_model(
    field_name: str, directory: Path, task: str, findings: Findings
) -> dict[str, Any] | None:
    try:
        config = read_config_json(directory)
    except (OSError, ValueError) as error:
        findings.problems.append(f"{field_name}: {error}")
        return None
    problems = [architecture_problem(config, task), *attention_problems(config)]
    problems += [processor_problem(directory, task), *weight_files_problems(directory)]
    findings.problems += [f"{field_name}: {p}" for p in problems if p]
    return config


def check_device(name: str, device: str, findings: Findings) -> None:
    """``cuda``/``mps`` must exist here (``auto`` falls back to the CPU by itself)."""
    if device in ("auto", "cpu"):
        return
    import torch

    field_name = f"models.{name}.device"
    fix = "use device: auto (the GPU where there is one, else the CPU) or cpu"
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            findings.problems.append(
                f"{field_name}: {device!r}, but CUDA is not available on this machine (torch "
                f"{torch.__version__}, {build}); {fix}"
            )
        elif index >= torch.cuda.device_count():
            findings.problems.append(
                f"{field_name}: {device!r}, but only {torch.cuda.device_count()} GPU(s) are "
                f"visible (cuda:0..cuda:{torch.cuda.device_count() - 1}); {fix}"
            )
    elif device == "mps" and not torch.backends.mps.is_available():
        findings.problems.append(f"{field_name}: 'mps' is not available on this machine; {fix}")


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo, capped by a cgroup v2 memory limit (None if unknown)."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max" and available is not None:
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def histogram_bytes(shape: ModelShape, stats: dict[str, Any]) -> int | None:
    """Bytes of one model's histogram counts: layers x neurons x (bins + 2) x 8."""
    if shape.n_layers is None or shape.width is None:
        return None
    grid = BinGrid.covering(stats["bin_width"], *stats["range"])
    return shape.n_layers * shape.width * (grid.n_bins + 2) * 8


def check_histogram_memory(
    name: str,
    model: dict[str, Any],
    model_config: dict[str, Any],
    stats: dict[str, Any],
    jobs_run_here: bool,
    findings: Findings,
) -> None:
    """The statistics job's histograms must fit where it runs."""
    shape = model_shape(model_config)
    size = histogram_bytes(shape, stats)
    if size is None:
        return
    needed = HISTOGRAM_COPIES * size
    if jobs_run_here:
        limit, what = available_memory_bytes(), "available on this machine"
    else:
        limit, what = (
            model.get("resources", {}).get("mem_mb", 0) * 2**20,
            f"models.{name}.resources.mem_mb",
        )
    if not limit or needed <= limit:
        return
    n_bins = BinGrid.covering(stats["bin_width"], *stats["range"]).n_bins
    findings.problems.append(
        f"stats.bin_width/stats.range: model {name}'s histograms need {_gib(needed)} "
        f"({shape.n_layers} layers x {shape.width} neurons x {n_bins:,} bins x 8 bytes, "
        f"x{HISTOGRAM_COPIES} while writing), more than the {_gib(limit)} {what}; raise "
        "stats.bin_width or narrow stats.range"
    )


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:,.2f} GiB"
