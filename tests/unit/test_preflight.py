"""The pre-flight check: every model, dataset and machine problem it can know stops the run before
any job, naming the field and the fix; what only a job can know fails that job the same way."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from neuron_ablation import cli
from neuron_ablation.architectures import ARCHITECTURES
from neuron_ablation.config import ConfigError, validate_config
from neuron_ablation.model_shapes import attention_problems, config_neuron_widths, model_shape
from neuron_ablation.preflight import PreflightError, preflight
from neuron_ablation.preflight_data import CHARS_PER_TOKEN, _part_of_each_document
from neuron_ablation.preflight_hub import Hub
from neuron_ablation.splits import collection_split
from neuron_ablation.tokenization import (
    DatasetFormatError,
    iter_documents,
    read_local_documents,
)
from tests.helpers.tiny_models import (
    CAUSAL_ARCHITECTURES,
    MASKED_ARCHITECTURES,
    VISION_ARCHITECTURES,
    corpus,
    load,
    save_model,
    save_vit,
    write_jsonl,
)
from tests.helpers.workflow import REPO, tiny_config


class OfflineHub(Hub):
    """A hub that cannot be reached and has nothing cached (no network in tests)."""

    def unreachable_reason(self) -> str | None:
        return "test: no network"

    def cached_config(self, repo_id: str) -> Path | None:
        return None


@pytest.fixture
def good(good) -> dict:
    """The tiny config (tests/conftest.py) validated: defaults filled in, as the pre-flight
    sees it."""
    return validate_config(good)


@pytest.fixture
def model_dir(tmp_path, tiny_llama) -> Path:
    """A copy of the tiny Llama to break."""
    return shutil.copytree(tiny_llama, tmp_path / "model")


def check(config: dict, hub: Hub | None = None, **kwargs) -> list[str]:
    return preflight(config, hub=hub or OfflineHub(), **kwargs)


def fails(config: dict, pattern: str, hub: Hub | None = None, **kwargs) -> str:
    with pytest.raises(PreflightError, match=pattern) as error:
        check(config, hub, **kwargs)
    return str(error.value)


def with_model(config: dict, source: str | Path) -> dict:
    config = copy.deepcopy(config)
    config["models"]["tiny"]["source"] = str(source)
    return config


def with_dataset(config: dict, source: str | Path, **settings) -> dict:
    config = copy.deepcopy(config)
    config["datasets"]["corpus"]["source"] = str(source)
    config["datasets"]["corpus"].update(settings)
    return config


def edit_config_json(directory: Path, **changes) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


# ----------------------------------------------------------------------------- models


def test_a_good_config_passes_without_notes(good):
    assert check(good) == []


def test_unsupported_model_type(good, model_dir):
    edit_config_json(model_dir, model_type="t5")
    fails(with_model(good, model_dir), r"models.tiny.source: model_type 't5'.*supported: bert")


def test_task_that_does_not_fit_the_architecture(good):
    config = copy.deepcopy(good)
    config["models"]["tiny"]["task"] = "masked-lm"
    fails(config, r"models.tiny.source: model_type 'llama' is a causal-lm.*set task: causal-lm")


def test_seq_len_over_the_model_positions(good):
    config = copy.deepcopy(good)
    config["models"]["tiny"]["seq_len"] = 512
    fails(config, r"models.tiny.seq_len: 512 .* 128 positions .*max_position_embeddings")


def test_resample_seq_len_over_the_model_positions(good):
    config = copy.deepcopy(good)
    config["methods"] = ["zero", "resample-tokens"]
    config["resample"]["seq_len"] = 200
    fails(config, r"resample.seq_len: 200 .* 128 positions")


def test_truncated_safetensors(good, model_dir):
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    message = fails(with_model(good, model_dir), r"model.safetensors is truncated")
    assert f"{len(data) - 100:,} of {len(data):,} bytes" in message


def test_sharded_model_with_a_missing_shard(good, model_dir):
    index = {"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    fails(with_model(good, model_dir), r"lists shards that are missing: \['model-00002-of")


def test_model_directory_without_config_json(good, model_dir):
    (model_dir / "config.json").unlink()
    fails(with_model(good, model_dir), r"models.tiny.source: .*has no config.json")


def test_model_directory_without_weights(good, model_dir):
    (model_dir / "model.safetensors").unlink()
    fails(with_model(good, model_dir), r"models.tiny.source: .*has no weights")


def test_text_model_without_tokenizer(good, model_dir):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model_dir / name).unlink(missing_ok=True)
    fails(with_model(good, model_dir), r"models.tiny.source: .*has no tokenizer")


def test_model_source_that_is_a_file(good, tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    fails(with_model(good, weights), r"models.tiny.source: .* is a file; a model source")


def test_cuda_device_without_cuda(good):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    config = copy.deepcopy(good)
    config["models"]["tiny"]["device"] = "cuda"
    fails(config, r"models.tiny.device: 'cuda', but CUDA is not available.*device: auto")
    assert check(config, jobs_run_here=False) == []  # a cluster's nodes have their own GPUs


def test_histograms_larger_than_this_machine(good):
    config = copy.deepcopy(good)
    config["stats"].update(bin_width=1e-7, range=[-100.0, 100.0])
    fails(config, r"stats.bin_width/stats.range: .*\(2 layers x 32 neurons x 2,000,000,000 bins")


def test_histograms_larger_than_the_cluster_memory(good):
    config = copy.deepcopy(good)
    config["stats"].update(bin_width=1e-4)  # 80,000 bins: 41 MB of counts, 82 MB while writing
    config["models"]["tiny"]["resources"]["mem_mb"] = 50
    assert check(config) == []  # this machine has the memory
    fails(config, r"more than the 0.05 GiB models.tiny.resources.mem_mb", jobs_run_here=False)


# ----------------------------------------------------------------------------- the hub


def test_hub_model_when_the_hub_is_unreachable(good, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    config = copy.deepcopy(good)
    config["models"]["tiny"]["source"] = "nobody/no-such-model-xyz"

    class Uncached(Hub):
        def cached_config(self, repo_id: str) -> Path | None:
            return None

    message = fails(
        config, r"models.tiny.source: 'nobody/no-such-model-xyz' is a hub id", Uncached()
    )
    assert "cannot be reached" in message and "huggingface-cli download" in message


def test_hub_model_from_the_cache_when_unreachable(good, model_dir):
    config = with_model(good, "owner/cached-model")

    class Cached(OfflineHub):
        def cached_config(self, repo_id: str) -> Path | None:
            return model_dir / "config.json"

    (note,) = check(config, Cached())
    assert "cached copy of owner/cached-model" in note
    config["models"]["tiny"]["seq_len"] = 512  # the cached config.json is checked like a local one
    fails(config, r"models.tiny.seq_len: 512", Cached())


def test_hub_model_when_reachable_is_checked_by_its_config(good, model_dir):
    edit_config_json(model_dir, model_type="t5")

    class Reachable(Hub):
        def unreachable_reason(self) -> str | None:
            return None

        def download_config(self, repo_id: str) -> Path:
            return model_dir / "config.json"

    fails(with_model(good, "google/t5-small"), r"google/t5-small: model_type 't5'", Reachable())


def test_hub_model_that_does_not_exist(good):
    httpx2 = pytest.importorskip("httpx2")
    from huggingface_hub.errors import RepositoryNotFoundError

    class NotFound(Hub):
        def unreachable_reason(self) -> str | None:
            return None

        def download_config(self, repo_id: str) -> Path:
            response = httpx2.Response(404, request=httpx2.Request("GET", "http://hub"))
            raise RepositoryNotFoundError("404", response=response)

    fails(with_model(good, "owner/typo"), r"owner/typo is not on the hub \(a typo", NotFound())


def test_source_that_is_neither_a_directory_nor_a_hub_id(good):
    fails(with_model(good, "my models/tiny"), r"neither an existing local model directory")


def test_hub_dataset_when_the_hub_is_unreachable(good):
    config = with_dataset(good, "owner/some-corpus")
    fails(config, r"datasets.corpus.source: 'owner/some-corpus' is a hub id.*cannot be reached")


def test_embedded_sources_not_built_yet_are_not_required(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no resources/ here
    config = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    assert check(config) == []


# ----------------------------------------------------------------------------- text datasets


def test_empty_text_file(good, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    fails(with_dataset(good, empty), r"datasets.corpus.source: .*empty.txt holds no text")


def test_binary_garbage(good, tmp_path):
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    fails(with_dataset(good, garbage), r"datasets.corpus.source: .*garbage.txt is not UTF-8")


def test_file_far_too_short(good, tmp_path):
    short = write_jsonl(tmp_path / "short.jsonl", corpus(n_documents=5, words_per_document=10))
    message = fails(with_dataset(good, short), r"the stats part of .*cannot give that many")
    assert "stats.n_tokens asks model tiny for 512 tokens" in message


def test_borderline_file_is_counted_with_the_tokenizer(good, tmp_path):
    """Enough bytes to pass the bound, too few tokens: the model's tokenizer counts exactly."""
    texts = corpus(n_documents=60, words_per_document=8)  # 9 tokens per document with EOS
    path = write_jsonl(tmp_path / "borderline.jsonl", texts)
    stats_documents = len(collection_split(len(texts), "stats", 0.25, 0))
    assert sum(map(len, texts)) < 1.5 * CHARS_PER_TOKEN * 512  # borderline by construction
    message = fails(with_dataset(good, path), r"tokens for this tokenizer")
    assert f"has {stats_documents * 9:,} tokens for this tokenizer" in message


def test_jsonl_without_the_text_field(good, tmp_path):
    path = tmp_path / "content.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "content": t}) + "\n" for i, t in enumerate(corpus()))
    )
    fails(with_dataset(good, path), r"datasets.corpus.text_field: .*'text'.*\['content', 'id'\]")


def test_jsonl_with_a_broken_line(good, tmp_path):
    path = write_jsonl(tmp_path / "broken.jsonl", corpus())
    path.write_text(path.read_text() + '{"text": "unterminated\n')  # after plenty of text
    fails(with_dataset(good, path), r"broken.jsonl line 121, column \d+: not valid JSON")


def test_csv_file(good, tmp_path):
    path = tmp_path / "corpus.csv"
    path.write_text("text\n" + "\n".join(corpus()))
    fails(with_dataset(good, path), r"\.csv is not a supported text format; use .txt, .jsonl")


def test_folder_given_to_a_text_model(good, tmp_path):
    fails(with_dataset(good, tmp_path), r"is a folder \(an image dataset\)")


def test_parquet_without_the_text_field(good, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"body": corpus()}), path)
    fails(with_dataset(good, path), r"no column 'text' \(text_field\); columns: \['body'\]")


# ----------------------------------------------------------------------------- image folders


def vision_config(tmp_path: Path, folder: Path) -> dict:
    vit = save_vit(tmp_path / "vit")
    config = tiny_config(vit, folder, methods=["zero"])
    config["models"]["tiny"]["task"] = "image-classification"
    config["stats"]["n_images"], config["eval"]["n_images"] = 8, 4
    return validate_config(config)


def image_folder(root: Path, per_class: int) -> Path:
    from PIL import Image

    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (8, 8), i).save(root / label / f"{i}.png")
    return root


def test_image_folder_with_too_few_images(tmp_path):
    config = vision_config(tmp_path, image_folder(tmp_path / "images", per_class=3))
    fails(config, r"the stats part of .* has \d images .*stats.n_images asks for 8")
    config["stats"]["n_images"], config["eval"]["n_images"] = 2, 1
    assert check(config) == []


def test_image_folder_without_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    config = vision_config(tmp_path, tmp_path / "flat")
    fails(config, r"datasets.corpus.source: .*one sub-folder per class")


# ----------------------------------------------------------------------------- how it reads


def test_parts_are_assigned_like_the_tokenize_job():
    draws = _part_of_each_document(0.3, 7, chunk=5)
    parts = np.array([next(draws) for _ in range(1000)])
    np.testing.assert_array_equal(
        np.flatnonzero(parts == "eval"), collection_split(1000, "eval", 0.3, 7)
    )


def test_txt_documents_are_the_blank_line_blocks(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "x.txt"
    for _ in range(300):
        text = "".join(rng.choice(list("ab \n\n\r\t"), size=rng.integers(0, 40)))
        path.write_bytes(text.encode())
        old = [b.strip() for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]
        assert read_local_documents(path) == old


# ----------------------------------------------------------------------------- where it runs


def test_check_config_runs_the_preflight(good, tmp_path, capsys):
    config = copy.deepcopy(good)
    config["models"]["tiny"]["seq_len"] = 512
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "pre-flight check failed" in err and "models.tiny.seq_len: 512" in err
    assert cli.main(["check-config", str(path), "--no-preflight"]) == 0


# Snakemake runs it before any job, not for a dry run: tests/workflow/test_snakemake_preflight.py.


# ----------------------------------------------------------------------------- inside jobs


def tokenize_args(model: Path, dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        "tokenize",
        f"--model-source={model}",
        "--task",
        "causal-lm",
        f"--dataset-source={dataset}",
        "--part",
        "stats",
        "--out",
        str(out),
        *extra,
    ]


def test_tokenize_job_names_seq_len_before_reading(tmp_path, tiny_llama, corpus_file, capsys):
    out = tmp_path / "stats.arrow"
    args = tokenize_args(tiny_llama, corpus_file, out, "--n", "1024", "--seq-len", "512")
    assert cli.main(args) == 2
    assert "the model's seq_len in the config): 512 tokens" in capsys.readouterr().err
    assert not out.exists()


def test_tokenize_job_names_the_count_to_lower(tmp_path, tiny_llama, corpus_file, capsys):
    out = tmp_path / "stats.arrow"
    args = tokenize_args(tiny_llama, corpus_file, out, "--n", "10000000", "--seq-len", "16")
    assert cli.main(args) == 2
    assert "lower stats.n_tokens" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_hub_stream_without_the_text_field(monkeypatch):
    """Only a job sees a streamed hub dataset's rows: it stops after the first rows."""
    import datasets

    rows = ({"content": f"row {i}"} for i in range(10**6))
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: rows)
    with pytest.raises(
        DatasetFormatError, match=r"set the dataset's text_field to one of \['content'\]"
    ):
        next(iter_documents("owner/corpus", "stats"))


def test_preflight_errors_are_config_errors():
    assert issubclass(PreflightError, ConfigError)


# ----------------------------------------------------------------------------- attention shape


def test_heads_that_do_not_divide_the_hidden_size(good, model_dir):
    edit_config_json(model_dir, num_attention_heads=5, num_key_value_heads=5)
    fails(
        with_model(good, model_dir),
        r"models.tiny.source: config.json: 5 attention heads do not divide hidden_size 32; a "
        r"llama model cuts hidden_size into equal heads",
    )


def test_key_value_heads_that_do_not_divide_the_heads(good, model_dir):
    edit_config_json(model_dir, num_attention_heads=4, num_key_value_heads=3)
    fails(
        with_model(good, model_dir), r"num_key_value_heads 3 does not divide num_attention_heads 4"
    )


def test_head_dim_sets_the_width_only_where_the_family_reads_it():
    llama = {"model_type": "llama", "num_attention_heads": 4, "hidden_size": 32, "head_dim": 16}
    assert attention_problems(llama) == []
    assert model_shape(llama).width == 64
    gpt2 = {"model_type": "gpt2", "n_head": 4, "n_embd": 32, "head_dim": 16}
    assert model_shape(gpt2).width == 32
    odd = llama | {"num_attention_heads": 5, "head_dim": 8}
    assert "head_dim sets the width of a head" in attention_problems(odd)[0]
    # ViT builds heads of hidden_size // heads whatever the remainder: nothing to refuse.
    assert (
        attention_problems({"model_type": "vit", "num_attention_heads": 5, "hidden_size": 32}) == []
    )


ALL_TINY = CAUSAL_ARCHITECTURES + MASKED_ARCHITECTURES + VISION_ARCHITECTURES


@pytest.mark.parametrize("architecture", sorted(set(ARCHITECTURES) & set(ALL_TINY)))
def test_every_tiny_model_passes_and_its_width_is_what_the_model_has(tmp_path, architecture):
    """No false alarm on a model transformers builds, and the pre-flight width (used for the
    histogram memory estimate) is the model's neuron count."""
    from neuron_ablation.architectures import neuron_widths

    directory = save_model(tmp_path / architecture, architecture)
    config = json.loads((directory / "config.json").read_text())
    assert attention_problems(config) == []
    widths = neuron_widths(load(directory, architecture))
    assert model_shape(config).width == widths[0]
    assert config_neuron_widths(str(directory)) == widths  # what the select stage uses


def test_tokenizer_without_eos_is_refused_before_any_job(good, model_dir):
    """Documents would run together: the tokenize job refuses such a tokenizer, and pre-flight
    says so first (tokenization.document_end)."""
    path = model_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(path.read_text())
    del tokenizer_config["eos_token"]
    path.write_text(json.dumps(tokenizer_config))
    fails(with_model(good, model_dir), r"models.tiny.source: .*has no EOS token and adds no")


def test_a_byte_that_is_not_utf8_is_named_by_its_file_offset(good, tmp_path):
    lines = [json.dumps({"text": t}).encode() + b"\n" for t in corpus(1000)]
    data = b"".join(lines)
    offset = len(data) - 1000  # far past the first 64 KiB read
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(data[:offset] + b"\xe9" + data[offset + 1 :])
    fails(with_dataset(good, path), rf"is not UTF-8 text \(byte {offset:,} of the file, line")
