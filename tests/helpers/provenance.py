"""Token files made by hand in tests, with the provenance record ``tokenize`` writes (the stages
refuse inputs that record no model, docs/provenance.md)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from neuron_ablation.io import write_arrow
from neuron_ablation.provenance import PROVENANCE_KEY
from neuron_ablation.tokenization import tokens_provenance


def write_model_tokens(path: Path, table: pa.Table, model_source: str | Path) -> Path:
    """Write ``table`` as a token file of ``model_source`` (its schema metadata kept)."""
    record = tokens_provenance(str(model_source), None, made_by="a test")
    metadata = dict(table.schema.metadata or {}) | {PROVENANCE_KEY.encode(): record.encode()}
    write_arrow(path, table.replace_schema_metadata(metadata))
    return path
