"""Stage 1: text -> fixed-length token sequences in an Arrow IPC file.

Documents are tokenised in order (with the tokenizer's special tokens, and an EOS appended where
the tokenizer adds none), concatenated into one stream and cut into sequences of ``seq_len`` tokens;
the last, incomplete sequence is dropped. A tokenizer without an EOS token is used only if it wraps
every document in special tokens of its own (e.g. ``<s>``), which then separate the documents
(logged); one that adds nothing stops the job (:func:`document_end`), since documents would run
together. ``n_tokens`` asks for ``ceil(n_tokens / seq_len)``
sequences.

Splits are disjoint by construction. A hub dataset uses its own splits (``stats_split`` and
``eval_split``, streamed, so The Pile is never downloaded whole). A single collection (a local file
or an embedded set) is split per document: document ``i`` goes to evaluation iff
``default_rng(split_seed).random(n_documents)[i] < eval_share``.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from neuron_ablation.io import sequences_table, write_arrow
from neuron_ablation.provenance import PROVENANCE_KEY
from neuron_ablation.sources import LOCAL_SUFFIXES
from neuron_ablation.splits import NotEnoughDataError, collection_split

log = logging.getLogger("neuron_ablation")

PARTS = ("stats", "eval")
ROWS_BEFORE_MISSING_FIELD = 1000


def is_local_collection(source: str) -> bool:
    return Path(source).suffix in LOCAL_SUFFIXES and Path(source).is_file()


class DatasetFormatError(ValueError):
    """A local dataset file cannot be read as documents; the message names the file and line."""


def read_local_documents(path: str | Path, text_field: str = "text") -> list[str]:
    """Documents of a local file: .txt (separated by blank lines), .jsonl or .parquet."""
    return list(iter_local_documents(path, text_field))


def iter_local_documents(path: str | Path, text_field: str = "text") -> Iterator[str]:
    """The documents of a local file in file order, read lazily (the pre-flight check reads only
    as much as it needs). Rows without a non-empty ``text_field`` are skipped."""
    path = Path(path)
    reader = DOCUMENT_READERS.get(path.suffix)
    if reader is None:
        raise DatasetFormatError(
            f"{path}: a local text dataset must end in {', '.join(LOCAL_SUFFIXES)}"
        )
    yield from reader(path, text_field)


def text_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file.

    Raises:
        DatasetFormatError: the file is not UTF-8; the message gives the byte offset in the
            file and the line (a decoding error alone counts from the start of a read chunk).
    """
    try:
        with open(path, encoding="utf-8") as f:
            yield from f
    except UnicodeDecodeError as error:
        offset, line, reason = first_invalid_utf8(path) or (None, None, error.reason)
        where = f"byte {offset:,} of the file, line {line}" if offset is not None else "a byte"
        raise DatasetFormatError(
            f"{path} is not UTF-8 text ({where}: {reason}); convert it (e.g. iconv -f latin1 "
            "-t UTF-8) or point the source at the right file"
        ) from None


def first_invalid_utf8(path: Path, chunk: int = 2**20) -> tuple[int, int, str] | None:
    """(byte offset in the file, 1-based line, reason) of the first bytes that are not UTF-8;
    None if the whole file decodes. Reads the file once, ``chunk`` bytes at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    consumed = newlines = 0
    with open(path, "rb") as f:
        while data := f.read(chunk):
            try:
                decoder.decode(data)
            except UnicodeDecodeError as error:
                # error.object is the bytes the decoder held back from earlier reads + data.
                held = len(error.object) - len(data)
                line = newlines + error.object[: error.start].count(b"\n") + 1
                return consumed - held + error.start, line, error.reason
            consumed += len(data)
            newlines += data.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:  # the file ends inside a character
        return consumed - len(error.object) + error.start, newlines + 1, error.reason
    return None


def _txt_documents(path: Path, text_field: str) -> Iterator[str]:
    """Blocks separated by blank lines (what ``text.split("\\n\\n")`` gives), stripped."""
    block: list[str] = []
    for line in text_lines(path):
        if line == "\n":
            yield from _nonblank("".join(block))
            block = []
        else:
            block.append(line)
    yield from _nonblank("".join(block))


def _nonblank(text: str) -> Iterator[str]:
    if text.strip():
        yield text.strip()


def _jsonl_documents(path: Path, text_field: str) -> Iterator[str]:
    for number, line in enumerate(text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetFormatError(
                f"{path} line {number}, column {error.colno}: not valid JSON ({error.msg}); "
                f"each line must be one JSON object with a {text_field!r} field"
            ) from None
        if not isinstance(row, dict):
            raise DatasetFormatError(
                f"{path} line {number}: a JSON {type(row).__name__}, not an object with a "
                f"{text_field!r} field"
            )
        if row.get(text_field):
            yield str(row[text_field])


def _parquet_documents(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        raise DatasetFormatError(f"{path}: not a readable parquet file ({error})") from None
    if text_field not in parquet.schema_arrow.names:
        raise DatasetFormatError(
            f"{path}: no column {text_field!r} (text_field); columns: {parquet.schema_arrow.names}"
        )
    for batch in parquet.iter_batches(columns=[text_field], batch_size=4096):
        yield from (text for text in batch.column(0).to_pylist() if text)


DOCUMENT_READERS: dict[str, Callable[[Path, str], Iterator[str]]] = {
    ".txt": _txt_documents,  # no fields: text_field is unused
    ".jsonl": _jsonl_documents,
    ".parquet": _parquet_documents,
}
"""The local text formats, by suffix: exactly :data:`neuron_ablation.sources.LOCAL_SUFFIXES`."""


def iter_documents(
    source: str,
    part: str,
    *,
    text_field: str = "text",
    stats_split: str = "train",
    eval_split: str = "test",
    eval_share: float = 0.2,
    split_seed: int = 0,
) -> Iterator[str]:
    """The documents of ``part`` ("stats" or "eval") of a dataset source, in a fixed order."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if is_local_collection(source):
        documents = read_local_documents(source, text_field)
        for i in collection_split(len(documents), part, eval_share, split_seed):
            yield documents[i]
        return
    from datasets import load_dataset

    split = stats_split if part == "stats" else eval_split
    found = False
    for number, row in enumerate(load_dataset(source, split=split, streaming=True), start=1):
        if row.get(text_field):
            found = True
            yield row[text_field]
        elif not found and number == ROWS_BEFORE_MISSING_FIELD:
            # Only known once the stream is open: say so instead of reading the whole split.
            raise DatasetFormatError(
                f"{source} ({split} split): none of the first {number} rows has a non-empty "
                f"{text_field!r} field; set the dataset's text_field to one of {sorted(row)}"
            )


class NoDocumentSeparatorError(ValueError):
    """The tokenizer has no EOS token and adds no special token to a document."""


def document_end(tokenizer) -> int | None:
    """The token appended to each document that does not end in it: EOS. None when the tokenizer
    has no EOS but adds special tokens of its own to every document (e.g. ``<s>`` first), which
    then mark where one document ends and the next begins.

    Raises:
        NoDocumentSeparatorError: no EOS and nothing added: documents would run together.
    """
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    if tokenizer("", add_special_tokens=True)["input_ids"]:
        return None
    raise NoDocumentSeparatorError(
        f"the tokenizer ({type(tokenizer).__name__}) has no EOS token and adds no special token "
        "to a document, so documents would be concatenated with nothing between them; set "
        '"eos_token" in the model\'s tokenizer_config.json to a token of its vocabulary'
    )


def describe_document_end(tokenizer) -> str:
    """How documents are separated in the token stream, for the log."""
    if document_end(tokenizer) is not None:
        return f"each document ends in EOS {tokenizer.eos_token!r}"
    wrap = tokenizer.convert_ids_to_tokens(tokenizer("", add_special_tokens=True)["input_ids"])
    return f"no EOS token: documents are separated by the special tokens {wrap} added to each"


def token_stream(tokenizer, documents: Iterable[str], batch: int = 64) -> Iterator[list[int]]:
    """Token ids of each document, with EOS appended where the tokenizer adds none (see
    :func:`document_end` for a tokenizer without EOS)."""
    eos = document_end(tokenizer)
    pending: list[str] = []

    def flush() -> Iterator[list[int]]:
        for ids in tokenizer(pending, add_special_tokens=True)["input_ids"]:
            yield ids + [eos] if eos is not None and (not ids or ids[-1] != eos) else ids
        pending.clear()

    for document in documents:
        pending.append(document)
        if len(pending) == batch:
            yield from flush()
    if pending:
        yield from flush()


def pack_sequences(streams: Iterable[list[int]], seq_len: int, n_sequences: int) -> np.ndarray:
    """Concatenate token lists and cut the first ``n_sequences`` full rows: int32 [seq, seq_len]."""
    needed = seq_len * n_sequences
    buffer = np.empty(needed, dtype=np.int32)
    filled = 0
    with tqdm(total=needed, unit="tok", desc="tokenizing", mininterval=1.0) as bar:
        for ids in streams:
            take = min(len(ids), needed - filled)
            buffer[filled : filled + take] = ids[:take]
            filled += take
            bar.update(take)
            if filled == needed:
                return buffer.reshape(n_sequences, seq_len)
    raise NotEnoughDataError(
        f"dataset has only {filled} tokens for this split, {needed} needed "
        f"({n_sequences} sequences of {seq_len})"
    )


def n_sequences_for(n_tokens: int, seq_len: int) -> int:
    return math.ceil(n_tokens / seq_len)


def tokenize_text(
    tokenizer,
    documents: Iterable[str],
    out: str | Path,
    *,
    n_tokens: int,
    seq_len: int,
    mask_seed: int | None = None,
    metadata: dict[str, str] | None = None,
) -> pa.Table:
    """Tokenise ``documents`` into ``ceil(n_tokens / seq_len)`` sequences and write ``out``.

    With ``mask_seed`` (masked-LM evaluation) the sequences are corrupted once with
    :func:`neuron_ablation.masking.mask_tokens`: ``input_ids`` holds the corrupted ids and
    ``labels`` the original id at the scored positions (-100 elsewhere), so every method, seed
    and fraction is scored on exactly the same corruption.
    """
    n_sequences = n_sequences_for(n_tokens, seq_len)
    ids = pack_sequences(token_stream(tokenizer, documents), seq_len, n_sequences)
    if mask_seed is None:
        table = sequences_table(ids)
    else:
        table = masked_sequences_table(tokenizer, ids, mask_seed)
    table = table.replace_schema_metadata({k: str(v) for k, v in (metadata or {}).items()})
    write_arrow(out, table)
    return table


def masked_sequences_table(tokenizer, ids: np.ndarray, mask_seed: int) -> pa.Table:
    """Corrupt int [sequence, position] ids for masked-LM scoring (see :func:`tokenize_text`)."""
    import torch

    from neuron_ablation.masking import mask_tokens

    generator = torch.Generator().manual_seed(mask_seed)
    inputs, labels = mask_tokens(
        torch.from_numpy(ids.astype(np.int64)),
        tokenizer.all_special_ids,
        tokenizer.mask_token_id,
        len(tokenizer),
        generator,
    )
    return sequences_table(inputs.numpy(), labels=labels.numpy().astype(np.int32))


def tokens_provenance(model_source: str, model_digest: str | None, **settings) -> str:
    """The provenance record of a token file (schema metadata ``provenance``, JSON): the model
    (its tokenizer or image processor) and every setting that changes the rows."""
    from neuron_ablation.provenance import canonical_json, make_record, model_input

    record = make_record({"model": model_input(model_source, model_digest)}, settings)
    return canonical_json(record)


def write_model_inputs(
    model_source: str,
    task: str,
    dataset_source: str,
    part: str,
    out: str,
    n: int,
    seq_len: int = 256,
    mask_seed: int = 0,
    text_field: str = "text",
    stats_split: str = "train",
    eval_split: str = "test",
    eval_share: float = 0.2,
    split_seed: int = 0,
    model_digest: str | None = None,
) -> pa.Table:
    """Stage 1: one part (``stats`` or ``eval``) of a dataset -> the Arrow file of model inputs.

    Text is tokenised into ``n`` tokens of ``seq_len``-token sequences (masked-LM evaluation
    corrupted with ``mask_seed``); images are ``n`` pixel arrays (:mod:`neuron_ablation.images`).
    """
    split = {"stats_split": stats_split, "eval_split": eval_split, "eval_share": eval_share,
             "split_seed": split_seed}  # fmt: skip
    provenance = tokens_provenance(
        model_source, model_digest, dataset=dataset_source, part=part, n=n, seq_len=seq_len,
        mask_seed=mask_seed, text_field=text_field, **split,
    )  # fmt: skip
    if task == "image-classification":
        from neuron_ablation.images import write_image_inputs

        try:
            table = write_image_inputs(
                model_source, dataset_source, part, out, n, provenance=provenance, **split
            )
        except NotEnoughDataError as error:
            raise NotEnoughDataError(
                f"the {part} part of {dataset_source}: {error}. In the config: lower "
                f"{part}.n_images (or the model's own {part}.n_images)"
            ) from None
        log.info("wrote %d images to %s", table.num_rows, out)
        return table

    from neuron_ablation.models import check_seq_len, load_tokenizer

    check_seq_len(model_source, seq_len, "the model's seq_len")
    documents = iter_documents(dataset_source, part, text_field=text_field, **split)
    tokenizer = load_tokenizer(model_source)
    log.info("tokenizer of %s: %s", model_source, describe_document_end(tokenizer))
    try:
        table = tokenize_text(
            tokenizer,
            documents,
            out,
            n_tokens=n,
            seq_len=seq_len,
            mask_seed=mask_seed if task == "masked-lm" and part == "eval" else None,
            metadata={
                "dataset": dataset_source,
                "part": part,
                "seq_len": seq_len,
                PROVENANCE_KEY: provenance,
            },  # fmt: skip
        )
    except NotEnoughDataError as error:
        raise NotEnoughDataError(
            f"the {part} part of {dataset_source}: {error}. In the config: lower "
            f"{part}.n_tokens (or the model's own {part}.n_tokens) or seq_len, or use "
            "a larger dataset"
        ) from None
    log.info("wrote %d sequences of %d tokens to %s", table.num_rows, seq_len, out)
    return table
