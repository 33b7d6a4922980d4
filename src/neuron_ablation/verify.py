"""`neuron-ablation verify`: every artifact under results/ checked by its kind's reader
(:mod:`neuron_ablation.integrity`) and its provenance record against the artifacts it names
(:mod:`neuron_ablation.provenance`)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuron_ablation import paths
from neuron_ablation.integrity import (
    TABLE_COLUMNS,
    TABLES_THAT_MAY_BE_EMPTY,
    DamagedArtifact,
    check_png,
    check_text,
    read_csv_table,
    read_result,
    read_sequence_table,
    rebuild_command,
    snakemake_path,
)
from neuron_ablation.integrity_arrow import (
    check_model_inputs_table,
    check_resample_inputs_table,
    read_arrow_table,
)
from neuron_ablation.integrity_hdf5 import check_bank
from neuron_ablation.integrity_zarr import (
    open_optimal_store,
    open_statistics_store,
    read_selection_ranks,
)
from neuron_ablation.provenance import (
    ProvenanceMismatch,
    chain_problems,
    read_model_digest,
    results_base,
)


def _check_tokens(path: Path) -> None:
    check_model_inputs_table(path, read_arrow_table(path))


def _check_resample_inputs(path: Path) -> None:
    check_resample_inputs_table(path, read_arrow_table(path))


def _check_table(path: Path) -> None:
    suffix = "_top_neurons.csv" if path.name.endswith("_top_neurons.csv") else path.name
    read_csv_table(path, TABLE_COLUMNS.get(suffix, []), suffix in TABLES_THAT_MAY_BE_EMPTY)


def _check_model_digest(path: Path) -> None:
    read_model_digest(path)


ARTIFACT_CHECKS: dict[str, Callable[[Path], Any]] = {
    "model digest": _check_model_digest,
    "token file": _check_tokens,
    "statistics store": lambda p: open_statistics_store(p, True),
    "selection": read_selection_ranks,
    "optimal constants": lambda p: open_optimal_store(p, True),
    "resampling inputs": _check_resample_inputs,
    "resampling bank": check_bank,
    "evaluation result": read_result,
    "table": _check_table,
    "per-sequence table": read_sequence_table,
    "markdown table": check_text,
    "figure": check_png,
}
"""How each kind of artifact (:data:`neuron_ablation.paths.ARTIFACT_PATTERNS`) is checked."""


def artifact_kind(path: Path) -> tuple[str, Callable[[Path], Any]] | None:
    kind = paths.artifact_kind(path)
    return None if kind is None else (kind, ARTIFACT_CHECKS[kind])


def iter_artifacts(root: Path) -> Iterator[Path]:
    """Every artifact under ``root`` of a known kind (stores count once; hidden temporaries,
    logs, benchmarks and linked directories, which point at artifacts checked elsewhere, are
    skipped)."""
    if artifact_kind(root):
        yield root
        return
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.name in ("logs", "benchmarks"):
            continue
        if artifact_kind(entry):
            yield entry
        elif entry.is_dir() and not entry.is_symlink():
            yield from iter_artifacts(entry)


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_results`: artifacts checked per kind, and the damaged ones."""

    checked: dict[str, int] = field(default_factory=dict)
    damaged: list[DamagedArtifact] = field(default_factory=list)
    missing: dict[Path, list[Path]] = field(default_factory=dict)
    """Artifacts that are gone, each with the artifacts whose provenance names it as input."""

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.missing

    def format(self, root: str | os.PathLike) -> str:
        total = sum(self.checked.values())
        order = list(ARTIFACT_CHECKS)
        counts = sorted(self.checked.items(), key=lambda item: order.index(item[0]))
        kinds = ", ".join(f"{kind}: {n}" for kind, n in counts) or "none"
        summary = f"checked {total} artifacts under {root} ({kinds}): {len(self.damaged)} damaged"
        lines = [summary + (f", {len(self.missing)} missing" if self.missing else "")]
        for error in self.damaged:
            label = "STALE" if _is_provenance(error) else "DAMAGED"
            lines += [
                f"{label} {snakemake_path(error.path)}: {error.problem}",
                f"  rebuild: {rebuild_command([error.path])}",
            ]
        for gone, readers in self.missing.items():
            named_by = ", ".join(snakemake_path(r) for r in readers[:3])
            more = f" and {len(readers) - 3} more" if len(readers) > 3 else ""
            lines += [
                f"MISSING {snakemake_path(gone)}: an input of {named_by}{more}",
                f"  rebuild: snakemake --cores all {shlex.quote(snakemake_path(gone))}",
            ]
        if len(self.damaged) > 1:
            lines += [
                "rebuild everything damaged, and what depends on it, at once:",
                f"  {rebuild_command(e.path for e in self.damaged)}",
            ]
        if self.damaged or self.missing:
            lines.append(
                "(run it in the directory holding results/; if the run used --configfile=FILE, "
                "add it before --forcerun)"
            )
        return "\n".join(lines)


def verify_results(root: str | os.PathLike) -> VerifyReport:
    """Check every artifact under ``root`` (a results directory, or one artifact)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(2, "no such results directory", str(root))
    report = VerifyReport()
    intact = []
    for path in iter_artifacts(root):
        kind, check = artifact_kind(path)
        report.checked[kind] = report.checked.get(kind, 0) + 1
        try:
            check(path)
            intact.append((kind, path))
        except DamagedArtifact as error:
            report.damaged.append(error)
        except FileNotFoundError as error:  # a store directory without its zarr.json, say
            report.damaged.append(DamagedArtifact(path, f"{error.strerror}: {error.filename}"))
    _check_provenance_chain(report, [path for kind, path in intact if kind in RECORDED_KINDS])
    return report


RECORDED_KINDS = (
    "token file", "statistics store", "selection", "optimal constants", "resampling inputs",
    "resampling bank", "evaluation result", "per-sequence table",
)  # fmt: skip
"""Kinds of artifact that carry a provenance record (:mod:`neuron_ablation.provenance`)."""


def _check_provenance_chain(report: VerifyReport, recorded: list[Path]) -> None:
    """Each record against the artifacts it names: a changed input makes the artifact stale
    (reported like damage, rebuilt the same way), a deleted one is reported missing."""
    for path in recorded:
        problems, missing = chain_problems(path, results_base(path))
        if problems:
            report.damaged.append(ProvenanceMismatch(path, "; ".join(problems)))
        for gone in missing:
            report.missing.setdefault(gone, []).append(path)


def _is_provenance(error: DamagedArtifact) -> bool:
    return isinstance(error, ProvenanceMismatch)
