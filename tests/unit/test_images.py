"""Stage 1 for vision models: image folders, their statistics/evaluation split, preprocessing and
the pixel table (one flattened image per row, its shape in the schema metadata)."""

import numpy as np
import pytest
from PIL import Image
from transformers import AutoImageProcessor

from neuron_ablation.images import (
    folder_images,
    iter_labelled_images,
    pixel_table,
    preprocess_images,
    write_image_inputs,
)
from neuron_ablation.io import read_arrow, read_model_inputs, write_arrow
from neuron_ablation.splits import NotEnoughDataError
from tests.helpers.tiny_models import image_folder, save_vit


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """A tiny ViT of 8x8 grey images (labels LABEL_0..LABEL_2)."""
    return save_vit(tmp_path_factory.mktemp("models") / "vit")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three class folders (class0..class2) of four 8x8 grey PNGs each."""
    return image_folder(tmp_path_factory.mktemp("data") / "images", n_per_class=4)


def test_pixel_table_round_trip_restores_the_image_shape(tmp_path):
    pixels = np.random.default_rng(0).normal(size=(5, 3, 4, 2)).astype(np.float32)
    labels = np.array([2, 0, 1, 1, 0], dtype=np.int64)
    table = pixel_table(pixels, {"label": labels})
    assert table.schema.metadata[b"shape:pixel_values"] == b"3,4,2"
    assert table.num_rows == 5 and len(table["pixel_values"][0]) == 3 * 4 * 2
    write_arrow(tmp_path / "eval.arrow", table)
    columns = read_model_inputs(tmp_path / "eval.arrow")
    assert columns["pixel_values"].dtype == np.float32
    np.testing.assert_array_equal(columns["pixel_values"], pixels)  # image i is row i
    np.testing.assert_array_equal(columns["label"], labels)


def test_folder_labels_follow_the_model_where_it_has_the_class(folder):
    files, labels = folder_images(folder, {"class2": 0})
    assert len(files) == 12 and files == sorted(files)
    by_class = {f.parent.name: label for f, label in zip(files, labels, strict=True)}
    # class2 is the model's label 0; the others keep their index among the sorted folders
    assert by_class == {"class0": 0, "class1": 1, "class2": 0}


def test_folder_reads_only_images(tmp_path):
    (tmp_path / "cat").mkdir()
    Image.new("L", (2, 2)).save(tmp_path / "cat" / "a.PNG")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    files, labels = folder_images(tmp_path, {})
    assert [f.name for f in files] == ["a.PNG"] and labels == [0]


def test_a_folder_without_class_folders_is_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="one sub-folder per class, found none"):
        folder_images(tmp_path, {})


def test_statistics_and_evaluation_never_share_an_image(folder):
    def part(name: str, seed: int = 0) -> list[tuple[bytes, int]]:
        pairs = iter_labelled_images(str(folder), name, {}, eval_share=0.25, split_seed=seed)
        return [(np.asarray(image).tobytes(), label) for image, label in pairs]

    stats, evals = part("stats"), part("eval")
    assert len(stats) + len(evals) == 12 and evals
    assert not {pixels for pixels, _ in stats} & {pixels for pixels, _ in evals}
    assert part("stats") == stats  # the same split seed, the same images in the same order
    assert part("stats", seed=1) != stats


def test_preprocessing_gives_the_processor_pixels_and_the_labels(vit, folder):
    processor = AutoImageProcessor.from_pretrained(vit)
    grey = np.full((8, 8), 255, dtype=np.uint8)  # an array, as embedded image sets give them
    pairs = iter([(grey, 2), (Image.fromarray(np.zeros((8, 8), np.uint8)), 0), (grey, 1)])
    pixels, labels = preprocess_images(processor, pairs, n_images=2, batch=1)
    assert pixels.shape == (2, 1, 8, 8) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels[0], 1.0)  # (1 - mean 0.5) / std 0.5
    np.testing.assert_allclose(pixels[1], -1.0)
    assert labels.tolist() == [2, 0] and labels.dtype == np.int64


def test_too_few_images_is_an_error_naming_both_counts(vit):
    processor = AutoImageProcessor.from_pretrained(vit)
    pairs = iter([(np.zeros((8, 8), np.uint8), 0)] * 3)
    with pytest.raises(NotEnoughDataError, match="only 3 images available .* 4 needed"):
        preprocess_images(processor, pairs, n_images=4)


def test_image_inputs_file_of_a_folder(vit, folder, tmp_path):
    out = tmp_path / "stats.arrow"
    write_image_inputs(
        str(vit),
        str(folder),
        "stats",
        out,
        n_images=6,
        provenance='{"made_by": "a test"}',
        eval_share=0.25,
        split_seed=0,
    )
    columns = read_model_inputs(out)
    assert columns["pixel_values"].shape == (6, 1, 8, 8)
    assert set(columns["label"].tolist()) <= {0, 1, 2}
    metadata = read_arrow(out).schema.metadata
    assert metadata[b"part"] == b"stats" and metadata[b"dataset"] == str(folder).encode()
    assert metadata[b"provenance"] == b'{"made_by": "a test"}'
