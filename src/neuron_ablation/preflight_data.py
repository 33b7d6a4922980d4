"""Pre-flight of local datasets: a text file's format, text field and tokens per part (read and
split exactly as the tokenize job does; see :mod:`neuron_ablation.preflight` for how much is read
and when the tokenizer counts exactly), an image folder's class sub-folders and images per part."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuron_ablation.preflight_findings import Findings
from neuron_ablation.tokenization import LOCAL_SUFFIXES, DatasetFormatError

CHARS_PER_TOKEN = 4
"""Typical of English text; only decides how much to read and when to count exactly."""
ENOUGH_FACTOR = 2.0
"""Reading stops once every part has this many times the characters it needs."""
BORDERLINE_FACTOR = 1.5
"""Below this many times the characters needed, the model's tokenizer counts exactly."""
FULL_SCAN_BYTES = 64 * 2**20
"""Files up to this size are read whole, so a broken line anywhere stops the run here."""


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
