import numpy as np
import pytest

from neuron_ablation.io import read_arrow, read_model_inputs
from neuron_ablation.tokenization import (
    NotEnoughDataError,
    iter_documents,
    pack_sequences,
    read_local_documents,
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
