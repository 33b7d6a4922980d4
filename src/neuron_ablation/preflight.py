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
"""

from __future__ import annotations

import json
import os
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuron_ablation.architectures import ARCHITECTURES
from neuron_ablation.bins import BinGrid
from neuron_ablation.config import ConfigError, input_count, model_methods
from neuron_ablation.model_shapes import (
    ModelShape,
    attention_problems,
    model_shape,
    seq_len_problem,
)
from neuron_ablation.sources import dataset_path, embedded_asset, model_path, parse_source
from neuron_ablation.tokenization import (
    LOCAL_SUFFIXES,
    DatasetFormatError,
    n_sequences_for,
)

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
)
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
CHARS_PER_TOKEN = 4
"""Typical of English text; only decides how much to read and when to count exactly."""
ENOUGH_FACTOR = 2.0
"""Reading stops once every part has this many times the characters it needs."""
BORDERLINE_FACTOR = 1.5
"""Below this many times the characters needed, the model's tokenizer counts exactly."""
FULL_SCAN_BYTES = 64 * 2**20
"""Files up to this size are read whole, so a broken line anywhere stops the run here."""
HISTOGRAM_COPIES = 2
"""The statistics job holds the counts and, while writing, one stacked copy of them."""
HUB_TIMEOUT_S = 5.0


class PreflightError(ConfigError):
    """A model, dataset or machine problem found before any job runs; names the field and fix."""


@dataclass
class Findings:
    """Problems (each stops the run) and notes (said, but the run goes on)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- model configs


def read_config_json(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} has no config.json: not a model directory written by save_pretrained"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-save the model") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a JSON object; re-save the model")
    return config


def architecture_problem(config: dict[str, Any], task: str) -> str | None:
    """Why the table cannot ablate this model for ``task``, or None."""
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        return (
            f"model_type {model_type!r} (config.json) is not supported; supported: "
            f"{', '.join(sorted(ARCHITECTURES))}. To add one, give it an entry in "
            "neuron_ablation.architectures.ARCHITECTURES"
        )
    family_task = ARCHITECTURES[model_type].task
    if family_task != task:
        return (
            f"model_type {model_type!r} is a {family_task} model, but the config says task "
            f"{task}; set task: {family_task}"
        )
    return None


# ----------------------------------------------------------------------------- weights


REFETCH = "download or copy the model again"


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is incomplete or corrupt, or None. Reads only its header."""
    size = path.stat().st_size
    if size < 8:
        return f"{path} is truncated ({size} bytes, not even a header length); {REFETCH}"
    with open(path, "rb") as f:
        (header_length,) = struct.unpack("<Q", f.read(8))
        if 8 + header_length > size:
            return (
                f"{path} is truncated or corrupt: its header alone would be "
                f"{header_length:,} bytes; {REFETCH}"
            )
        try:
            header = json.loads(f.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
    if not isinstance(header, dict):
        return f"{path} is corrupt: its header is not a JSON object; {REFETCH}"
    ends = [
        entry["data_offsets"][1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    expected = 8 + header_length + max(ends, default=0)
    if size < expected:
        return (
            f"{path} is truncated: {size:,} of {expected:,} bytes (its header lists the tensors); "
            f"{REFETCH}"
        )
    return None


def weight_files_problems(directory: Path) -> list[str]:
    """Missing or truncated weight files of a local model directory."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError, TypeError):
            return [f"{index} is not a valid shard index (no weight_map); {REFETCH}"]
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            return [f"{index} lists shards that are missing: {missing}; {REFETCH}"]
        files = [directory / s for s in shards]
    else:
        files = sorted(directory.glob("*.safetensors"))
    if not files:
        if any(
            (directory / name).is_file()
            for name in ("pytorch_model.bin", "pytorch_model.bin.index.json")
        ):
            return []  # a pickle checkpoint: not checkable without loading it
        return [
            f"{directory} has no weights (model.safetensors or pytorch_model.bin); save the "
            "model with save_pretrained"
        ]
    return [problem for path in files if (problem := safetensors_problem(path))]


def processor_problem(directory: Path, task: str) -> str | None:
    """A text model needs its tokenizer, a vision model its image processor, next to it."""
    if task == "image-classification":
        if (directory / IMAGE_PROCESSOR_FILE).is_file():
            return None
        return (
            f"{directory} has no {IMAGE_PROCESSOR_FILE}: save the image processor next to the "
            "model (processor.save_pretrained(directory))"
        )
    if any((directory / name).is_file() for name in TOKENIZER_FILES):
        return document_end_problem(directory)
    return (
        f"{directory} has no tokenizer ({', '.join(TOKENIZER_FILES[:2])}, ...): save it next to "
        "the model (tokenizer.save_pretrained(directory))"
    )


def _declares_eos(directory: Path) -> bool:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            if json.loads((directory / name).read_text(encoding="utf-8")).get("eos_token"):
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def document_end_problem(directory: Path) -> str | None:
    """Why the tokenize job would refuse this tokenizer (no EOS and nothing that separates
    documents: :func:`neuron_ablation.tokenization.document_end`), or None. The tokenizer is
    loaded only when its config declares no EOS token."""
    if _declares_eos(directory):
        return None
    from neuron_ablation.models import load_tokenizer
    from neuron_ablation.tokenization import NoDocumentSeparatorError, document_end

    try:
        document_end(load_tokenizer(str(directory)))
    except NoDocumentSeparatorError as error:
        return f"{directory}: {error}"
    except (OSError, ValueError) as error:
        return f"{directory}: the tokenizer cannot be loaded ({error})"
    return None


# ----------------------------------------------------------------------------- the hub


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


class Hub:
    """The Hugging Face hub as seen from this machine: probed once, with a short timeout."""

    def __init__(self, timeout_s: float = HUB_TIMEOUT_S):
        self.timeout_s = timeout_s
        self._unreachable: str | None | bool = False  # False: not probed yet

    def unreachable_reason(self) -> str | None:
        """Why the hub cannot be reached (None when it answers, whatever the status)."""
        if self._unreachable is False:
            self._unreachable = self._probe()
        return self._unreachable

    def _probe(self) -> str | None:
        request = urllib.request.Request(hub_endpoint() + "/api/models?limit=1", method="HEAD")
        try:
            urllib.request.urlopen(request, timeout=self.timeout_s).close()
        except urllib.error.HTTPError:
            return None  # it answered
        except (urllib.error.URLError, OSError) as error:
            return str(getattr(error, "reason", error))
        return None

    def cached_config(self, repo_id: str) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, "config.json")
        return Path(cached) if isinstance(cached, str) else None

    def download_config(self, repo_id: str) -> Path:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, "config.json", etag_timeout=self.timeout_s))

    def dataset_gated(self, repo_id: str) -> bool:
        from huggingface_hub import HfApi

        return bool(HfApi().dataset_info(repo_id, timeout=self.timeout_s).gated)


def _hub_id_problem(field_name: str, source: str, kind: str) -> str | None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(source)
    except HFValidationError:
        return (
            f"{field_name}: {source!r} is neither an existing local {kind} (relative paths are "
            f"relative to {Path.cwd()}) nor a valid hub id (owner/name); fix the path"
        )
    return None


def _unreachable_problem(field_name: str, source: str, reason: str, kind: str) -> str:
    repo_type = " --repo-type dataset" if kind == "dataset" else ""
    # Models are loaded from the local cache when the hub is down; datasets are streamed.
    unavailable = (
        "it is not in the local cache" if kind == "model" else "the tokenize job streams datasets"
    )
    return (
        f"{field_name}: {source!r} is a hub id, but the Hugging Face hub ({hub_endpoint()}) cannot "
        f"be reached from this machine ({reason}), and {unavailable}. Check the "
        f"network or proxy (HTTPS_PROXY), or download the {kind} where there is a network "
        f"(huggingface-cli download {source} --local-dir DIR{repo_type}) and set the source to DIR"
    )


def hub_model_config(
    field_name: str, source: str, hub: Hub, findings: Findings
) -> dict[str, Any] | None:
    """``config.json`` of a hub model (downloaded, or cached when offline), or None."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
    )

    if problem := _hub_id_problem(field_name, source, "model directory"):
        findings.problems.append(problem)
        return None
    reason = "HF_HUB_OFFLINE is set" if hub_offline() else hub.unreachable_reason()
    if reason is not None:
        cached = hub.cached_config(source)
        if cached is None:
            findings.problems.append(_unreachable_problem(field_name, source, reason, "model"))
            return None
        findings.notes.append(
            f"{field_name}: the hub cannot be reached ({reason}); the cached copy of {source} "
            "is used"
        )
        return json.loads(cached.read_text())
    try:
        return json.loads(hub.download_config(source).read_text())
    except GatedRepoError:
        findings.problems.append(
            f"{field_name}: {source} is gated: accept its terms on {hub_endpoint()}/{source} and "
            "log in (huggingface-cli login)"
        )
    except RepositoryNotFoundError:
        findings.problems.append(
            f"{field_name}: {source} is not on the hub (a typo, or a private repository: log in "
            "with huggingface-cli login)"
        )
    except EntryNotFoundError:
        findings.problems.append(
            f"{field_name}: {source} has no config.json: not a transformers model"
        )
    except (HfHubHTTPError, OSError) as error:
        findings.problems.append(f"{field_name}: could not fetch {source}/config.json: {error}")
    return None


def check_hub_dataset(field_name: str, source: str, hub: Hub, findings: Findings) -> None:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if problem := _hub_id_problem(field_name, source, "dataset file or folder"):
        findings.problems.append(problem)
        return
    if hub_offline():
        findings.notes.append(f"{field_name}: HF_HUB_OFFLINE is set; {source} is not checked")
        return
    if (reason := hub.unreachable_reason()) is not None:
        # Datasets are streamed from the hub by the tokenize job: a cache does not help.
        problem = _unreachable_problem(field_name, source, reason, "dataset")
        if Path(source).suffix:
            problem += f" (if {source} is meant to be a local file: it does not exist here)"
        findings.problems.append(problem)
        return
    try:
        gated = hub.dataset_gated(source)
    except RepositoryNotFoundError:
        findings.problems.append(
            f"{field_name}: dataset {source} is not on the hub (a typo, or private: log in with "
            "huggingface-cli login)"
        )
        return
    except (HfHubHTTPError, OSError) as error:
        findings.problems.append(f"{field_name}: could not look up dataset {source}: {error}")
        return
    from huggingface_hub import get_token

    if gated and get_token() is None:
        findings.problems.append(
            f"{field_name}: dataset {source} is gated: accept its terms on "
            f"{hub_endpoint()}/datasets/{source} and log in (huggingface-cli login)"
        )


# ----------------------------------------------------------------------------- models


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


# ----------------------------------------------------------------------------- datasets


@dataclass
class PartTally:
    """What a scan saw of one part (statistics or evaluation) of a collection."""

    documents: int = 0
    chars: int = 0
    utf8_bytes: int = 0

    def max_tokens(self) -> int:
        """No tokenizer makes more tokens than this from the part's text."""
        return 2 * self.utf8_bytes + 4 * self.documents


@dataclass
class TextScan:
    parts: dict[str, PartTally]
    complete: bool
    """False when reading stopped early because every part had plenty."""


def _part_of_each_document(eval_share: float, split_seed: int, chunk: int = 4096) -> Iterator[str]:
    """The part of document i, for i = 0, 1, ...: the draws of ``collection_split``, in order
    (default_rng draws the same sequence whether asked for n numbers at once or in chunks)."""
    import numpy as np

    rng = np.random.default_rng(split_seed)
    while True:
        for draw in rng.random(chunk):
            yield "eval" if draw < eval_share else "stats"


def scan_text(path: Path, dataset: dict[str, Any], needed: dict[str, int]) -> TextScan:
    """Tally documents and text per part until every part has plenty (see the module doc)."""
    from neuron_ablation.tokenization import iter_local_documents

    parts = {part: PartTally() for part in ("stats", "eval")}
    plenty = {part: ENOUGH_FACTOR * CHARS_PER_TOKEN * n for part, n in needed.items()}
    may_stop = path.stat().st_size > FULL_SCAN_BYTES
    assign = _part_of_each_document(dataset["eval_share"], dataset["split_seed"])
    for document, part in zip(
        iter_local_documents(path, dataset["text_field"]), assign, strict=False
    ):
        tally = parts[part]
        tally.documents += 1
        tally.chars += len(document)
        tally.utf8_bytes += len(document.encode("utf-8"))
        if may_stop and all(parts[p].chars >= plenty[p] for p in plenty):
            return TextScan(parts, complete=False)
    return TextScan(parts, complete=True)


def _fields_of_first_row(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                return sorted(row) if isinstance(row, dict) else []
    return []


def exact_token_count(
    model_source: str, dataset_source: str, dataset: dict[str, Any], part: str, needed: int
) -> int:
    """Tokens the tokenize job would get for ``part``, counted up to ``needed``."""
    from neuron_ablation.models import load_tokenizer
    from neuron_ablation.tokenization import iter_documents, token_stream

    documents = iter_documents(
        dataset_source,
        part,
        text_field=dataset["text_field"],
        eval_share=dataset["eval_share"],
        split_seed=dataset["split_seed"],
    )
    total = 0
    for ids in token_stream(load_tokenizer(model_source), documents):
        total += len(ids)
        if total >= needed:
            break
    return total


@dataclass(frozen=True)
class TextDemand:
    """One model's need of a text dataset."""

    model: str
    model_source: str
    tokenizer_ready: bool
    seq_len: int
    needed: dict[str, int]
    """Tokens per part: ceil(n_tokens / seq_len) full sequences of seq_len."""


def check_text_dataset(
    name: str, source: str, dataset: dict[str, Any], demands: list[TextDemand], findings: Findings
) -> None:
    """A local text collection: format, text field, enough tokens for every model using it."""
    path = Path(source).expanduser()
    field_name = f"datasets.{name}.source"
    if path.is_dir():
        findings.problems.append(
            f"{field_name}: {source} is a folder (an image dataset); a text model needs a "
            f"{'/'.join(LOCAL_SUFFIXES)} file"
        )
        return
    if path.suffix not in LOCAL_SUFFIXES:
        findings.problems.append(
            f"{field_name}: {source}: {path.suffix or 'a file without suffix'} is not a supported "
            f"text format; use {', '.join(LOCAL_SUFFIXES)} (.jsonl: one JSON object per line "
            f"with a {dataset['text_field']!r} field; .txt: documents separated by blank lines)"
        )
        return
    needed = {p: max(d.needed[p] for d in demands) for p in ("stats", "eval")}
    try:
        scan = scan_text(path, dataset, needed)
    except (DatasetFormatError, OSError) as error:  # not UTF-8: the file's byte offset
        findings.problems.append(f"{field_name}: {error}")
        return
    n_documents = sum(t.documents for t in scan.parts.values())
    if n_documents == 0:
        findings.problems.append(_no_documents_problem(name, path, dataset))
        return
    for demand in demands:
        for part, tally in scan.parts.items():
            problem = _shortage_problem(name, source, dataset, demand, part, tally, scan.complete)
            if problem:
                findings.problems.append(problem)


def _no_documents_problem(name: str, path: Path, dataset: dict[str, Any]) -> str:
    field = dataset["text_field"]
    if path.suffix == ".jsonl" and (fields := _fields_of_first_row(path)):
        return (
            f"datasets.{name}.text_field: no row of {path} has a non-empty {field!r} field; "
            f"its rows have {fields}: set text_field to the one that holds the text"
        )
    if path.suffix == ".parquet":
        return f"datasets.{name}.text_field: column {field!r} of {path} holds no text"
    return f"datasets.{name}.source: {path} holds no text (it is empty or blank)"


def _shortage_problem(
    name: str,
    source: str,
    dataset: dict[str, Any],
    demand: TextDemand,
    part: str,
    tally: PartTally,
    complete: bool,
) -> str | None:
    needed = demand.needed[part]
    if not complete and tally.chars >= ENOUGH_FACTOR * CHARS_PER_TOKEN * needed:
        return None
    share = dataset["eval_share"] if part == "eval" else 1 - dataset["eval_share"]
    counts = (
        f"{part}.n_tokens asks model {demand.model} for {needed:,} tokens "
        f"({needed // demand.seq_len} sequences of seq_len {demand.seq_len})"
    )
    fix = f"use a larger file, lower {part}.n_tokens (or models.{demand.model}.{part}.n_tokens)" + (
        " or change eval_share" if part == "eval" else ""
    )
    where = (
        f"datasets.{name}: the {part} part of {source} (about {share:.0%} of its documents: "
        f"{tally.documents:,} documents, {tally.chars:,} characters)"
    )
    if tally.max_tokens() < needed:
        return f"{where} cannot give that many: {counts}; {fix}"
    if tally.chars >= BORDERLINE_FACTOR * CHARS_PER_TOKEN * needed:
        return None
    if not demand.tokenizer_ready:
        return None  # decided by the tokenize job, whose error says the same
    tokens = exact_token_count(demand.model_source, source, dataset, part, needed)
    if tokens < needed:
        return f"{where} has {tokens:,} tokens for this tokenizer: {counts}; {fix}"
    return None


def check_image_folder(
    name: str, source: str, dataset: dict[str, Any], needs: dict[str, int], findings: Findings
) -> None:
    """A local folder of class sub-folders: enough images per part, the first one opens."""
    from neuron_ablation.images import folder_images
    from neuron_ablation.splits import collection_split

    path = Path(source).expanduser()
    field_name = f"datasets.{name}.source"
    if not path.is_dir():
        findings.problems.append(
            f"{field_name}: {source} is a file; an image dataset is a folder with one sub-folder "
            "of images per class (or embedded:fashion-mnist, embedded:digits, a hub id)"
        )
        return
    try:
        files, _ = folder_images(path, {})
    except ValueError as error:
        findings.problems.append(f"{field_name}: {error}")
        return
    for part, needed in needs.items():
        n_part = len(
            collection_split(len(files), part, dataset["eval_share"], dataset["split_seed"])
        )
        if n_part < needed:
            findings.problems.append(
                f"datasets.{name}: the {part} part of {source} has {n_part} images "
                f"({len(files)} in all, eval_share {dataset['eval_share']}), {part}.n_images asks "
                f"for {needed}; add images or lower {part}.n_images"
            )
    if files:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(files[0]) as image:
                image.verify()
        except (OSError, UnidentifiedImageError) as error:
            findings.problems.append(f"{field_name}: {files[0]} is not a readable image ({error})")


# ----------------------------------------------------------------------------- all together


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
