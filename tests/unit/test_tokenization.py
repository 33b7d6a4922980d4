import json
import re

import numpy as np
import pytest

from neuron_ablation.io import read_arrow, read_model_inputs
from neuron_ablation.splits import NotEnoughDataError
from neuron_ablation.tokenization import (
    DatasetFormatError,
    NoDocumentSeparatorError,
    describe_document_end,
    first_invalid_utf8,
    iter_documents,
    pack_sequences,
    read_local_documents,
    token_stream,
    tokenize_text,
)
from tests.helpers.tiny_models import word_tokenizer, write_jsonl


def test_local_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\nstill first\n\n\nsecond doc\n")
    assert read_local_documents(tmp_path / "a.txt") == ["first doc\nstill first", "second doc"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["x y", "z"]}), tmp_path / "b.parquet")
    assert read_local_documents(tmp_path / "b.parquet") == ["x y", "z"]


def test_stats_and_eval_documents_are_disjoint_and_cover_everything(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [f"document number {i}" for i in range(200)])
    stats = list(iter_documents(str(path), "stats", eval_share=0.25))
    evals = list(iter_documents(str(path), "eval", eval_share=0.25))
    everything = read_local_documents(path)
    assert len(stats) + len(evals) == len(everything)
    assert not set(stats) & set(evals)
    assert 0.1 < len(evals) / len(everything) < 0.4


def test_packing_makes_fixed_length_rows_and_reports_shortage():
    rows = pack_sequences([[1, 2, 3], [4, 5], [6, 7, 8, 9]], seq_len=4, n_sequences=2)
    np.testing.assert_array_equal(rows, [[1, 2, 3, 4], [5, 6, 7, 8]])
    with pytest.raises(NotEnoughDataError, match="only 9 tokens"):
        pack_sequences([[1, 2, 3], [4, 5], [6, 7, 8, 9]], seq_len=4, n_sequences=3)


def test_tokenize_writes_arrow_with_int32_lists(tmp_path):
    out = tmp_path / "eval.arrow"
    tokenize_text(word_tokenizer(), ["w1 w2 w3", "w4 w5"] * 10, out, n_tokens=20, seq_len=8)
    table = read_arrow(out)
    assert table.num_rows == 3
    assert str(table.schema.field("input_ids").type) == "list<item: int32>"
    ids = read_model_inputs(out)["input_ids"]
    assert ids.shape == (3, 8)
    eos = word_tokenizer().eos_token_id
    assert ids[0, 3] == eos  # documents are separated by EOS


def latin1_at(offset: int, n_lines: int = 1500) -> bytes:
    """JSON lines of UTF-8 text (two-byte é included) with one latin-1 byte at ``offset``."""
    line = json.dumps({"text": "w1 w2 été " * 30}, ensure_ascii=False).encode("utf-8") + b"\n"
    data = line * n_lines
    return data[:offset] + b"\xe9" + data[offset + 1 :]


@pytest.mark.parametrize("suffix", [".jsonl", ".txt"])
def test_a_byte_that_is_not_utf8_is_named_by_its_offset_in_the_file(tmp_path, suffix):
    """Not the offset inside the 8 KiB / 64 KiB chunk a text reader decodes at once."""
    data = latin1_at(466_278)
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes(data)
    line = data[:466_278].count(b"\n") + 1
    expected = f"is not UTF-8 text (byte 466,278 of the file, line {line}: "
    with pytest.raises(DatasetFormatError, match=re.escape(expected)):
        read_local_documents(path)


@pytest.mark.parametrize("chunk", [1, 3, 7, 4096])
def test_first_invalid_utf8_does_not_depend_on_the_read_size(tmp_path, chunk):
    """Two-byte characters cut by a chunk boundary decode; the latin-1 byte is found exactly."""
    data = "aé\nbé".encode() + b"\xff" + "ç\n".encode()
    path = tmp_path / "x.txt"
    path.write_bytes(data)
    assert first_invalid_utf8(path, chunk) == (7, 2, "invalid start byte")
    path.write_bytes(data.replace(b"\xff", b""))
    assert first_invalid_utf8(path, chunk) is None
    path.write_bytes("abç".encode()[:-1])  # the file ends inside a character
    assert first_invalid_utf8(path, chunk) == (2, 1, "unexpected end of data")


def tokenizer_without_eos(wrap: bool):
    """The word tokenizer with no EOS; with ``wrap``, it puts <s> before every document."""
    from tokenizers import processors

    tokenizer = word_tokenizer()
    tokenizer.eos_token = None
    if wrap:
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tokenizer.bos_token_id)]
        )
    return tokenizer


def test_a_tokenizer_without_eos_that_adds_nothing_is_refused():
    tokenizer = tokenizer_without_eos(wrap=False)
    assert tokenizer.eos_token_id is None
    with pytest.raises(NoDocumentSeparatorError, match="has no EOS token and adds no special"):
        list(token_stream(tokenizer, ["w1 w2", "w3"]))


def test_a_tokenizer_without_eos_separates_documents_by_its_own_special_tokens():
    tokenizer = tokenizer_without_eos(wrap=True)
    bos = tokenizer.bos_token_id
    streams = list(token_stream(tokenizer, ["w1 w2", "w3"]))
    assert [ids[0] for ids in streams] == [bos, bos]  # each document starts with <s> ...
    assert [len(ids) for ids in streams] == [3, 2]  # ... and nothing is appended
    assert describe_document_end(tokenizer) == (
        "no EOS token: documents are separated by the special tokens ['<s>'] added to each"
    )
    assert describe_document_end(word_tokenizer()) == "each document ends in EOS '</s>'"
