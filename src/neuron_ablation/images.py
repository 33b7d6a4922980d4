"""Stage 1 for vision models: images -> preprocessed pixel values in an Arrow IPC file.

Columns of ``results/{model}/tokens/{stats,eval}.arrow`` for ``task: image-classification``:

- ``pixel_values``: list<float32>, one flattened [channel, height, width] image per row, exactly
  what the model's image processor returns; the schema metadata ``shape:pixel_values`` holds
  ``channel,height,width`` (``io.read_model_inputs`` restores the shape);
- ``label``: int64 class id in the model's ``config.id2label``.

Sources and splits (statistics and evaluation never share an image):

- ``embedded:fashion-mnist`` / ``embedded:digits``: the train split for statistics, the test
  split for evaluation;
- a local folder with one sub-folder per class: images are split per file like text documents
  (``eval_share``, ``split_seed``); a class folder name maps to the model's ``label2id`` when
  the model has that label, else to its index among the sorted folder names;
- a hub id (e.g. ``imagenet-1k``): ``stats_split`` / ``eval_split`` streamed, columns ``image``
  and ``label``.

Local collections are shuffled with ``split_seed`` before the first ``n_images`` are taken, so a
class-sorted folder still gives a class-balanced subset.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from neuron_ablation.io import write_arrow
from neuron_ablation.sources import load_image_set, parse_source
from neuron_ablation.splits import NotEnoughDataError, collection_split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def iter_labelled_images(
    source: str,
    part: str,
    label2id: dict[str, int],
    *,
    stats_split: str = "train",
    eval_split: str = "validation",
    eval_share: float = 0.2,
    split_seed: int = 0,
) -> Iterator[tuple[object, int]]:
    """(PIL image or uint8 array, label) pairs of ``part`` ("stats" or "eval") of a source."""
    kind = parse_source(source).kind
    if kind == "embedded":
        images, labels, _ = load_image_set(source, "train" if part == "stats" else "test")
        order = np.random.default_rng(split_seed).permutation(len(images))
        yield from ((images[i], int(labels[i])) for i in order)
    elif kind == "local":
        files, labels = folder_images(Path(source), label2id)
        chosen = collection_split(len(files), part, eval_share, split_seed)
        order = np.random.default_rng(split_seed).permutation(chosen)
        from PIL import Image

        yield from ((Image.open(files[i]), labels[i]) for i in order)
    else:
        from datasets import load_dataset

        split = stats_split if part == "stats" else eval_split
        for row in load_dataset(source, split=split, streaming=True):
            yield row["image"], int(row["label"])


def folder_images(root: Path, label2id: dict[str, int]) -> tuple[list[Path], list[int]]:
    """Image files under ``root/<class>/`` and their label ids, in sorted order."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root}: expected one sub-folder per class, found none")
    files, labels = [], []
    for index, name in enumerate(classes):
        label = label2id.get(name, index)
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
                labels.append(label)
    return files, labels


def preprocess_images(
    processor, pairs: Iterator[tuple[object, int]], n_images: int, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(pixel_values float32 [image, channel, height, width], labels int64 [image])."""
    from PIL import Image

    pixels, labels = [], []
    with tqdm(total=n_images, unit="img", desc="preprocessing") as bar:
        while len(labels) < n_images:
            chunk = list(islice(pairs, min(batch, n_images - len(labels))))
            if not chunk:
                break
            images = [Image.fromarray(x) if isinstance(x, np.ndarray) else x for x, _ in chunk]
            pixels.append(processor(images=images, return_tensors="np")["pixel_values"])
            labels += [label for _, label in chunk]
            bar.update(len(chunk))
    if len(labels) < n_images:
        raise NotEnoughDataError(
            f"only {len(labels)} images available for this split, {n_images} needed"
        )
    return np.concatenate(pixels).astype(np.float32), np.asarray(labels, dtype=np.int64)


def pixel_table(pixel_values: np.ndarray, columns: dict[str, np.ndarray] | None = None) -> pa.Table:
    """float32 [image, C, H, W] -> one large_list<float32> row per image (the layout of the
    module docstring), the shape in the schema metadata; ``columns`` follow (e.g. ``label``).
    The resampling inputs of source ``pixels`` use it too."""
    n, *shape = pixel_values.shape
    size = int(np.prod(shape))
    offsets = pa.array(np.arange(0, (n + 1) * size, size, dtype=np.int64))
    pixels = pa.LargeListArray.from_arrays(offsets, pa.array(pixel_values.reshape(-1)))
    table = pa.table({"pixel_values": pixels, **(columns or {})})
    return table.replace_schema_metadata({"shape:pixel_values": ",".join(map(str, shape))})


def write_image_inputs(
    model_source: str,
    source: str,
    part: str,
    out: str | Path,
    n_images: int,
    provenance: str | None = None,
    **split_options,
) -> pa.Table:
    """Preprocess ``n_images`` images of ``part`` with the model's processor and write ``out``."""
    from transformers import AutoConfig, AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(model_source)
    label2id = dict(AutoConfig.from_pretrained(model_source).label2id or {})
    pairs = iter_labelled_images(source, part, label2id, **split_options)
    pixels, labels = preprocess_images(processor, pairs, n_images)
    table = pixel_table(pixels, {"label": labels})
    metadata = table.schema.metadata or {}
    metadata = {**metadata, b"part": part, b"dataset": source}
    if provenance is not None:  # the record of neuron_ablation.provenance, JSON
        metadata[b"provenance"] = provenance
    table = table.replace_schema_metadata(metadata)
    write_arrow(out, table)
    return table
