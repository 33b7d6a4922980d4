"""Provenance: every artifact records what it was computed from, and every reader checks it.

Snakemake decides what to rerun from file times, so an artifact of another model or of other
settings, put in place, looks up to date and is used. Every stage therefore writes a
``provenance`` record into its artifact (Zarr attributes, Arrow schema metadata, a JSON key,
HDF5 attributes, Parquet metadata)::

    {"inputs":   {role: {"path": "results/m/tokens/stats.arrow", "id": "blake2b:..."}, ...},
     "settings": {"bin_width": 0.01, "range": [-4.0, 4.0], ...}}

An input's ``id`` is the identity of what was read (:func:`artifact_id`): the model's digest
(sha256 over its config, weight and tokenizer files, :func:`compute_model_digest`, cached once per
run in ``results/{model}/model.digest.json``), a token file's content digest, or the digest of an
upstream artifact's own provenance record. A reader compares the record against what it expects
(:func:`check_provenance`) and stops with the file, the field, both values and the rebuild
command; ``neuron-ablation verify`` checks every record against the artifacts it names
(:func:`chain_problems`), so a replaced or deleted upstream artifact is reported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neuron_ablation.integrity import DamagedArtifact, read_json_artifact, snakemake_path
from neuron_ablation.sources import MODEL_FILE_SUFFIXES, model_files

PROVENANCE_KEY = "provenance"
HUB_PATTERNS = [f"*{suffix}" for suffix in MODEL_FILE_SUFFIXES]
HASH_BLOCK = 1 << 20
NO_RECORD = "it records no provenance (written before provenance existed)"

Record = dict[str, Any]
"""A provenance record: ``{"inputs": {role: {"path", "id"}}, "settings": {...}}``."""


class ProvenanceMismatch(DamagedArtifact):
    """An artifact computed from other inputs or settings than the ones it is read with."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        ValueError.__init__(
            self,
            f"{self.path}: {problem}. It was computed from other inputs or settings than this "
            f"run's: rebuild it with `snakemake --cores all --forcerun "
            f"{snakemake_path(self.path)}` (put the --configfile=FILE of your run before "
            "--forcerun), or delete it and rerun; `neuron-ablation verify` checks the whole chain.",
        )


# --- model identity ---------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def resolve_model_directory(model_source: str) -> Path:
    """The local directory of a model source: itself, or the cached snapshot of a hub id (the
    files ``from_pretrained`` reads, downloaded once into the Hugging Face cache)."""
    from neuron_ablation.sources import parse_source

    if Path(model_source).is_dir():
        return Path(model_source)
    if parse_source(model_source).kind != "hub":
        raise FileNotFoundError(2, "no such model directory", model_source)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model_source, allow_patterns=HUB_PATTERNS))


def compute_model_digest(model_source: str) -> dict[str, Any]:
    """``{"source", "digest", "files"}``: sha256 of every model file and one digest over all of
    them (names included), so any changed, added or removed file changes the digest."""
    directory = resolve_model_directory(model_source)
    files = {path.name: file_sha256(path) for path in model_files(directory)}
    if not files:
        raise FileNotFoundError(2, "no model files (config, weights, tokenizer) in", str(directory))
    combined = hashlib.sha256("".join(f"{n}:{h}\n" for n, h in files.items()).encode())
    return {"source": model_source, "digest": f"sha256:{combined.hexdigest()}", "files": files}


def write_model_digest(model_source: str, out: str) -> None:
    """The ``model-digest`` command: hash the model's files once per run -> ``out`` (JSON)."""
    from neuron_ablation.io import write_json

    write_json(out, compute_model_digest(model_source))


def read_model_digest(path: str | os.PathLike, model_source: str | None = None) -> str:
    """The digest in a ``model.digest.json``; with ``model_source``, checked to be that model's."""
    payload = read_json_artifact(path)
    if not isinstance(payload, dict) or not str(payload.get("digest", "")).startswith("sha256:"):
        raise DamagedArtifact(path, "not a model digest (no 'digest': 'sha256:...')")
    if model_source is not None and payload.get("source") != model_source:
        raise ProvenanceMismatch(
            path, f"it is the digest of {payload.get('source')!r}, not of {model_source!r}"
        )
    return payload["digest"]


def model_input(model_source: str, digest_file: str | None = None) -> dict[str, Any]:
    """The ``model`` input record of a job: read from the run's digest artifact when given (the
    pipeline), else computed from the files (a command run by hand)."""
    if digest_file:
        digest = read_model_digest(digest_file, model_source)
        return {"path": snakemake_path(digest_file), "id": digest}
    return {"path": None, "id": compute_model_digest(model_source)["digest"]}


# --- records ----------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def input_record(path: str | os.PathLike, required: bool = True) -> dict[str, Any]:
    """``{"path", "id"}`` of an upstream artifact that a job reads; unless ``required``, an
    artifact without a record gets the id None (results written by hand, for the tables)."""
    try:
        identity = artifact_id(path)
    except ProvenanceMismatch:
        if required:
            raise
        identity = None
    return {"path": snakemake_path(path), "id": identity}


def make_record(
    inputs: Mapping[str, dict[str, Any] | str | os.PathLike | None], settings: Mapping[str, Any]
) -> Record:
    """A provenance record; ``inputs`` maps a role to an input record or an artifact path (None:
    not read, left out)."""
    records = {
        role: value if isinstance(value, dict) else input_record(value)
        for role, value in inputs.items()
        if value is not None
    }
    return json.loads(canonical_json({"inputs": records, "settings": dict(settings)}))


def record_digest(record: Record) -> str:
    """The identity of an artifact whose content follows from its record."""
    return "sha256:" + hashlib.sha256(canonical_json(record).encode()).hexdigest()


def _artifact_type(path: Path) -> str:
    if path.name.endswith(".digest.json"):
        return "model digest"
    return {".zarr": "zarr", ".json": "json", ".arrow": "arrow", ".h5": "hdf5",
            ".parquet": "parquet"}.get(path.suffix, "other")  # fmt: skip


def read_provenance(path: str | os.PathLike) -> Record | None:
    """The provenance record stored in an artifact, None if it has none."""
    path = Path(path)
    kind = _artifact_type(path)
    if kind == "zarr":
        import zarr

        value = zarr.open_group(str(path), mode="r").attrs.get(PROVENANCE_KEY)
    elif kind == "json":
        payload = read_json_artifact(path)
        value = payload.get(PROVENANCE_KEY) if isinstance(payload, dict) else None
    elif kind in ("arrow", "parquet"):
        raw = _schema_metadata(path, kind).get(PROVENANCE_KEY.encode())
        value = None if raw is None else json.loads(raw)
    elif kind == "hdf5":
        import h5py

        with h5py.File(path, "r") as bank:
            raw = bank.attrs.get(PROVENANCE_KEY)
        value = None if raw is None else json.loads(raw)
    else:
        value = None
    return value if isinstance(value, dict) else None


def _schema_metadata(path: Path, kind: str) -> dict[bytes, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if kind == "parquet":  # polars writes its metadata into the file's footer
        return pq.ParquetFile(path).metadata.metadata or {}
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).schema.metadata or {}


def artifact_id(path: str | os.PathLike) -> str:
    """The identity of an artifact: a model digest file's digest, an Arrow file's content digest,
    else the digest of its provenance record."""
    from neuron_ablation.integrity_arrow import DIGEST_KEY

    path = Path(path)
    kind = _artifact_type(path)
    if not path.exists():
        raise FileNotFoundError(2, "no such artifact", str(path))
    if kind == "model digest":
        return read_model_digest(path)
    if kind == "arrow":
        stored = _schema_metadata(path, kind).get(DIGEST_KEY)
        if stored is None:
            raise ProvenanceMismatch(path, "it records no content digest")
        return f"blake2b:{stored.decode()}"
    record = read_provenance(path)
    if record is None:
        raise ProvenanceMismatch(path, NO_RECORD)
    return record_digest(record)


def flat_fields(record: Record) -> dict[str, Any]:
    """``inputs.<role>`` -> id and ``settings.<name>`` -> value, the fields readers compare."""
    fields = {f"inputs.{role}": value.get("id") for role, value in record.get("inputs", {}).items()}
    fields |= {f"settings.{name}": value for name, value in record.get("settings", {}).items()}
    return fields


def check_provenance(
    path: str | os.PathLike, found: Record | None, expected: Mapping[str, Any]
) -> None:
    """Stop unless the record ``found`` in ``path`` agrees with ``expected`` (field -> value,
    fields as in :func:`flat_fields`, e.g. ``{"inputs.model": "sha256:..."}``).

    Raises:
        ProvenanceMismatch: naming the file, the field, both values and the rebuild command.
    """
    if found is None:
        raise ProvenanceMismatch(path, NO_RECORD)
    fields = flat_fields(found)
    for field, value in expected.items():
        recorded = fields.get(field, "<not recorded>")
        if canonical_json(recorded) != canonical_json(value):
            raise ProvenanceMismatch(
                path, f"its provenance says {field} = {recorded!r}, but this job expects {value!r}"
            )


def check_artifact(path: str | os.PathLike, expected: Mapping[str, Any]) -> Record:
    """:func:`check_provenance` of the record stored in ``path``; returns the record."""
    record = read_provenance(path)
    check_provenance(path, record, expected)
    return record


# --- the chain (verify) -----------------------------------------------------------------------


def results_base(root: str | os.PathLike) -> Path:
    """The directory recorded input paths (``results/...``) are relative to: the parent of the
    ``results`` directory holding ``root``, else the working directory."""
    from neuron_ablation.paths import RESULTS

    root = Path(root).absolute()
    for directory in (root, *root.parents):
        if directory.name == RESULTS:
            return directory.parent
    return Path.cwd()


def chain_problems(path: str | os.PathLike, base: Path) -> tuple[list[str], list[Path]]:
    """What is wrong with ``path``'s record against the artifacts it names: (problems, missing
    inputs). An input whose identity changed means ``path`` is stale."""
    record = read_provenance(path)
    if record is None:
        return [NO_RECORD], []
    problems, missing = _misplaced(path, record, base), []
    for role, entry in record.get("inputs", {}).items():
        if not entry.get("path"):
            continue
        upstream = base / entry["path"]
        if not upstream.exists():
            missing.append(upstream)
            continue
        try:
            now = artifact_id(upstream)
        except Exception:  # noqa: BLE001 - zarr, h5py and pyarrow raise many types
            continue  # a damaged input: reported by its own check, and rebuilt with it
        if now != entry.get("id"):
            problems.append(
                f"its provenance says inputs.{role} = {entry.get('id')!r}, but {entry['path']} "
                f"is now {now!r}"
            )
    return problems, missing


def _misplaced(path: str | os.PathLike, record: Record, base: Path) -> list[str]:
    """An artifact under ``results/{model}/`` must record that model's digest file: another
    model's artifact copied there (its times kept, so Snakemake reruns nothing) names its own."""
    from neuron_ablation.paths import RESULTS, model_digest

    try:
        parts = Path(path).absolute().relative_to(base.absolute()).parts
    except ValueError:
        return []
    model = record.get("inputs", {}).get("model", {}).get("path")
    if len(parts) < 3 or parts[0] != RESULTS or not model:
        return []
    expected = model_digest(parts[1])
    if (base / model).absolute() == (base / expected).absolute():
        return []
    return [f"it records the model of {model}, but lies under {RESULTS}/{parts[1]}/ ({expected})"]
