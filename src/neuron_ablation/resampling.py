"""Activation resampling: ablated neurons take the values they have on a randomised input.

Three pieces, one per pipeline stage:

1. **Inputs** (``results/{model}/resample/{source}.inputs.arrow``): seeded random model inputs,
   stored exactly as fed to the model (``input_ids`` list<int32>, or ``pixel_values``
   large_list<float32> with a ``shape:pixel_values`` schema entry, like the token and image files
   of stage 1). Text sources add a ``text`` column for reading (chars: the random string; else the
   decoded ids); the schema metadata ``resample`` holds the settings as JSON.

   ========== ===================================================================================
   source     what each sequence is
   ========== ===================================================================================
   chars      RS1: random text of alphanumeric characters ``[A-Za-z0-9]`` (each character a space
              with probability ``space_probability``, so there are words), tokenised like a
              document (``add_special_tokens=True``) and cut to ``seq_len`` tokens.
   tokens     RS2: ``seq_len`` ids drawn uniformly from the tokenizer's vocabulary minus every
              special token (no BOS is added).
   generated  RS3: ancestral sampling (temperature, optional top-k) from a causal LM, started from
              one token (the generator's BOS, else its EOS, else a random non-special token). The
              generator is the model itself, or a configured causal LM; text from another model's
              tokenizer is decoded and re-tokenised with the evaluated model's tokenizer. Masked
              LMs cannot generate, so they need a configured generator.
   pixels     random images, every channel value uniform over 0..255, put through the model's
              image processor (resize/rescale/normalise) -> ``pixel_values`` [C, H, W].
   ========== ===================================================================================

   Everything is seeded: the same settings give the same inputs (characters and token ids from
   ``numpy.random.default_rng(seed)``; generated sequence ``i`` from its own
   ``torch.Generator`` seeded with ``SeedSequence([seed, i])``, so it does not depend on batching).

2. **Bank** (``results/{model}/resample/{source}.h5``): the clean model's z (input of every
   attention output projection) on those inputs. One float32 dataset per layer, ``layer_00`` ...,
   shape [sequence, position, neuron], chunked one sequence per chunk; file attrs describe model,
   source, seed and generation settings. Size: ``n_layers * n_sequences * n_positions * width * 4``
   bytes.

3. **Ablation** (:func:`resample_ablation`): the pairing rule is

   * evaluated sequence ``j`` (0-based, in evaluation-file order) uses bank sequence
     ``j mod n_bank``, so the 1,001st sequence of an evaluation set is resampled exactly like the
     1st when the bank holds 1,000;
   * position ``t`` uses bank position ``t mod bank_length`` (the pipeline makes the bank as long
     as the evaluated sequences, so this only matters for a longer evaluation sequence);
   * only the selected neurons change; every other neuron keeps its clean value.

   The hook is a forward pre-hook on each attention output projection that returns
   ``torch.where(mask, bank_slice, z)``: the batch's bank slice is gathered once per batch and
   layer (a view, without copying, while the rows are consecutive and the evaluated sequence is no
   longer than the bank), so the extra cost is one elementwise pass over z per layer. (Folding the
   replacement into ``W_O`` instead, i.e. zeroing ``W[:, S]`` and adding a precomputed
   ``r[..., S] @ W[:, S].T``, saves nothing, because the dense matmul costs the same with zeroed
   columns, and the precomputation over the bank cost 1.4x a clean forward in our measurement.)
"""

from __future__ import annotations

import json
import logging
import math
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import torch
from torch import nn
from tqdm import tqdm

from neuron_ablation.architectures import attention_output_projections
from neuron_ablation.config import methods_for_task
from neuron_ablation.hooks import ModuleHook, hooks_installed
from neuron_ablation.integrity import bank_read, check_bank, check_resample_inputs_table
from neuron_ablation.io import atomic_output, sequences_table, write_arrow
from neuron_ablation.methods import RESAMPLE_METHODS, TEXT_SOURCES
from neuron_ablation.methods import RESAMPLE_SOURCES as SOURCES
from neuron_ablation.statistics import HOOK_POINT, forward_kwargs, iter_batches

log = logging.getLogger("neuron_ablation")

ALPHANUMERIC = string.ascii_letters + string.digits
PAIRING_RULE = (
    "evaluated sequence j uses bank sequence j mod n_sequences; position t uses bank position "
    "t mod n_positions; only the selected neurons are replaced"
)


def is_resample_method(method: str) -> bool:
    return method in RESAMPLE_METHODS


def source_of(method: str) -> str:
    """``resample-chars`` -> ``chars``."""
    if not is_resample_method(method):
        raise ValueError(f"{method!r} is not a resampling method; those are {RESAMPLE_METHODS}")
    return method.removeprefix("resample-")


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ResampleSettings:
    """Everything that determines a source's inputs (stored in the inputs file and the bank)."""

    source: str
    n_sequences: int
    seq_len: int
    seed: int
    space_probability: float = 0.15
    temperature: float = 1.0
    top_k: int = 0
    generator: str | None = None
    """Source of the generating causal LM; None: the evaluated model itself."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Facts found while generating (start token, image shape, ...)."""

    def attrs(self) -> dict[str, Any]:
        """Only the settings that matter for this source, as JSON-serialisable attrs."""
        keep = {"source", "n_sequences", "seed"}
        if self.source in TEXT_SOURCES:
            keep.add("seq_len")
        if self.source == "chars":
            keep.add("space_probability")
        if self.source == "generated":
            keep |= {"temperature", "top_k", "generator"}
        settings = {k: v for k, v in asdict(self).items() if k in keep}
        return settings | self.extra


def special_token_ids(tokenizer) -> set[int]:
    """Ids of every special token, named ones and special added tokens (e.g. chat markers)."""
    ids = set(tokenizer.all_special_ids)
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids |= {int(i) for i, token in decoder.items() if getattr(token, "special", False)}
    return ids


def ordinary_token_ids(tokenizer, vocab_size: int | None = None) -> np.ndarray:
    """int64 ids of the vocabulary without special tokens (and below the model's vocab_size)."""
    n = len(tokenizer) if vocab_size is None else min(len(tokenizer), vocab_size)
    special = special_token_ids(tokenizer)
    return np.array([i for i in range(n) if i not in special], dtype=np.int64)


def random_token_ids(
    tokenizer, n_sequences: int, seq_len: int, seed: int, vocab_size: int | None = None
) -> np.ndarray:
    """RS2: int64 [sequence, position], uniform over the non-special vocabulary."""
    allowed = ordinary_token_ids(tokenizer, vocab_size)
    rng = np.random.default_rng(seed)
    return allowed[rng.integers(0, len(allowed), size=(n_sequences, seq_len))]


def random_text(rng: np.random.Generator, n_chars: int, space_probability: float) -> str:
    """``n_chars`` alphanumeric characters, each a space with probability ``space_probability``."""
    letters = np.array(list(ALPHANUMERIC))[rng.integers(0, len(ALPHANUMERIC), size=n_chars)]
    letters[rng.random(n_chars) < space_probability] = " "
    return "".join(letters)


def random_char_ids(
    tokenizer, n_sequences: int, seq_len: int, seed: int, space_probability: float = 0.15
) -> tuple[np.ndarray, list[str]]:
    """RS1: int64 [sequence, position] of random characters tokenised like a document, and the
    random strings (their first ``seq_len`` tokens are the ids).

    Each sequence's text grows block by block (4 characters per wanted token) until it has
    ``seq_len`` tokens; the random stream is consumed in a fixed order, so the result depends only
    on the seed, the settings and the tokenizer.
    """
    rng = np.random.default_rng(seed)
    rows = np.empty((n_sequences, seq_len), dtype=np.int64)
    texts = []
    for i in tqdm(range(n_sequences), desc="random characters", unit="seq", mininterval=1.0):
        text = ""
        for _ in range(64):
            text += random_text(rng, 4 * seq_len, space_probability)
            ids = tokenizer(text, add_special_tokens=True)["input_ids"]
            if len(ids) >= seq_len:
                rows[i] = ids[:seq_len]
                texts.append(text)
                break
        else:
            raise ValueError(
                f"random characters never reached {seq_len} tokens with this tokenizer; "
                "raise resample.space_probability"
            )
    return rows, texts


def sequence_seeds(seed: int, n_sequences: int) -> list[int]:
    """One independent seed per sequence, from ``numpy.random.SeedSequence([seed, i])``."""
    return [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(n_sequences)]


def start_token_id(tokenizer, seed: int) -> int:
    """The single token RS3 starts from: BOS, else EOS, else a seeded random ordinary token."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    allowed = ordinary_token_ids(tokenizer)
    return int(allowed[np.random.default_rng(seed).integers(len(allowed))])


@torch.inference_mode()
def sample_causal_lm(
    model: nn.Module,
    start_id: int,
    n_tokens: int,
    seeds: Sequence[int],
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    n_valid: int | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """Ancestral sampling with a KV cache: int64 [sequence, n_tokens], start token included.

    Our own loop rather than ``generate()``: a model's ``generation_config`` may silently set
    top-k/top-p/repetition penalties, and ``generate()`` draws from the global RNG. Sequence ``i``
    samples with its own generator seeded ``seeds[i]``. Ids ``>= n_valid`` (padding rows of the
    embedding beyond the tokenizer) are never drawn.
    """
    device = next(model.parameters()).device
    out = np.empty((len(seeds), n_tokens), dtype=np.int64)
    bar = tqdm(total=len(seeds) * n_tokens, desc="generating", unit="tok", mininterval=1.0)
    for begin in range(0, len(seeds), batch_size):
        generators = [torch.Generator().manual_seed(s) for s in seeds[begin : begin + batch_size]]
        current = torch.full((len(generators), 1), start_id, dtype=torch.long, device=device)
        tokens, past = [current], None
        for _ in range(n_tokens - 1):
            output = model(input_ids=current, past_key_values=past, use_cache=True)
            past = output.past_key_values
            logits = output.logits[:, -1].float() / temperature
            if n_valid is not None:
                logits[:, n_valid:] = -math.inf
            if top_k:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            probs = torch.softmax(logits, dim=-1).cpu()
            drawn = [
                torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators, strict=True)
            ]
            current = torch.stack(drawn).to(device)
            tokens.append(current)
            bar.update(len(generators))
        out[begin : begin + len(generators)] = torch.cat(tokens, dim=1).cpu().numpy()
        bar.update(len(generators))
    bar.close()
    return out


def generated_ids(
    tokenizer,
    generator: nn.Module,
    generator_tokenizer,
    n_sequences: int,
    seq_len: int,
    seed: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    batch_size: int = 8,
) -> tuple[np.ndarray, int]:
    """RS3: int64 [sequence, seq_len] and the start token id (in the generator's vocabulary).

    With the model itself as generator (``generator_tokenizer is None``) the sampled ids are the
    inputs. Otherwise each sample is decoded (special tokens dropped) and re-tokenised with
    ``tokenizer``; samples too short for ``seq_len`` tokens are redrawn twice as long, from the
    same per-sequence seeds, so they extend the same text.
    """
    own = generator_tokenizer is None
    gen_tokenizer = tokenizer if own else generator_tokenizer
    start = start_token_id(gen_tokenizer, seed)
    seeds = sequence_seeds(seed, n_sequences)
    n_valid = min(len(gen_tokenizer), int(generator.config.vocab_size))
    sample_args = {"temperature": temperature, "top_k": top_k, "n_valid": n_valid}
    n_tokens = seq_len
    for _ in range(8):
        sampled = sample_causal_lm(
            generator, start, n_tokens, seeds, batch_size=batch_size, **sample_args
        )
        if own:
            return sampled, start
        texts = gen_tokenizer.batch_decode(sampled, skip_special_tokens=True)
        ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
        if min(len(row) for row in ids) >= seq_len:
            return np.array([row[:seq_len] for row in ids], dtype=np.int64), start
        n_tokens *= 2
    raise ValueError(f"generated text never reached {seq_len} tokens of the evaluated model")


def random_pixels(image_processor, config, n_sequences: int, seed: int) -> np.ndarray:
    """Random images through the model's image processor: float32 [image, channel, height, width].

    Raw images are uint8 [height, width, channel] at the model's ``image_size``, every value uniform
    over 0..255, handed to the processor as PIL images (grey-scale for one channel) exactly like
    real images (``neuron_ablation.images``), so they get the same resize/rescale/normalisation.
    """
    from PIL import Image

    size = config.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    channels = int(getattr(config, "num_channels", 3))
    rng = np.random.default_rng(seed)
    arrays = rng.integers(0, 256, size=(n_sequences, height, width, channels), dtype=np.uint8)
    images = [Image.fromarray(a[..., 0] if channels == 1 else a) for a in arrays]
    processed = image_processor(images=images, return_tensors="np")
    return np.asarray(processed["pixel_values"], dtype=np.float32)


def pixel_table(pixel_values: np.ndarray) -> pa.Table:
    """float32 [image, C, H, W] -> one large_list<float32> row per image (the layout of
    ``neuron_ablation.images``), the shape in the schema metadata."""
    n, *shape = pixel_values.shape
    size = int(np.prod(shape))
    offsets = pa.array(np.arange(0, (n + 1) * size, size, dtype=np.int64))
    column = pa.LargeListArray.from_arrays(offsets, pa.array(pixel_values.reshape(-1)))
    table = pa.table({"pixel_values": column})
    return table.replace_schema_metadata({"shape:pixel_values": ",".join(map(str, shape))})


def generate_inputs(
    model_source: str,
    task: str,
    settings: ResampleSettings,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 8,
) -> tuple[pa.Table, ResampleSettings]:
    """Build one source's inputs for a model; returns the table and the settings with ``extra``."""
    import transformers

    from neuron_ablation.models import load_model, load_tokenizer

    check_source_applies(settings.source, task, settings.generator)
    config = transformers.AutoConfig.from_pretrained(model_source)
    extra: dict[str, Any] = {}
    if settings.source == "pixels":
        processor = transformers.AutoImageProcessor.from_pretrained(model_source)
        pixels = random_pixels(processor, config, settings.n_sequences, settings.seed)
        extra["pixel_shape"] = list(pixels.shape[1:])
        table = pixel_table(pixels)
    else:
        tokenizer = load_tokenizer(model_source)
        vocab_size = int(config.vocab_size)
        n, seq_len, seed = settings.n_sequences, settings.seq_len, settings.seed
        texts = None
        if settings.source == "chars":
            ids, texts = random_char_ids(tokenizer, n, seq_len, seed, settings.space_probability)
        elif settings.source == "tokens":
            ids = random_token_ids(tokenizer, n, seq_len, seed, vocab_size)
        else:
            own = settings.generator in (None, model_source)
            generator_source = model_source if own else settings.generator
            generator = load_model(generator_source, "causal-lm", device, dtype)
            ids, start = generated_ids(
                tokenizer,
                generator,
                None if own else load_tokenizer(generator_source),
                n,
                seq_len,
                seed,
                temperature=settings.temperature,
                top_k=settings.top_k,
                batch_size=batch_size,
            )
            extra |= {"start_token_id": start, "generator_source": generator_source}
            extra |= {"generation_batch_size": batch_size, "generation_dtype": dtype}
            extra["generation_device"] = str(next(generator.parameters()).device)
        if ids.max() >= vocab_size:
            raise ValueError(f"generated id {ids.max()} is outside the model's vocabulary")
        table = sequences_table(ids)
        # Readable text next to the ids, for inspection (the paper's Table 3 shows extracts).
        if texts is None:
            texts = tokenizer.batch_decode(ids)
        table = table.append_column("text", pa.array(texts, pa.string()))
    settings = ResampleSettings(**{**asdict(settings), "extra": extra})
    metadata = dict(table.schema.metadata or {})
    metadata[b"resample"] = json.dumps(settings.attrs(), sort_keys=True).encode()
    metadata[b"model_source"] = model_source.encode()
    return table.replace_schema_metadata(metadata), settings


def write_inputs(path: str | Path, table: pa.Table) -> None:
    write_arrow(path, table)


def inputs_settings(table: pa.Table, path: str | Path = "<table>") -> dict[str, Any]:
    """The generation settings stored in an inputs file's schema metadata (checked)."""
    return check_resample_inputs_table(path, table)


def check_source_applies(source: str, task: str, generator: str | None) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown resampling source {source!r}; sources: {SOURCES}")
    allowed = [
        source_of(m) for m in methods_for_task(task, generator is not None) if m in RESAMPLE_METHODS
    ]
    if source not in allowed:
        hint = (
            " (a masked LM cannot generate text: set resample.generator to a causal LM)"
            if source == "generated" and task == "masked-lm"
            else ""
        )
        raise ValueError(
            f"resampling source {source!r} does not apply to task {task!r}; "
            f"allowed: {allowed}{hint}"
        )


# ----------------------------------------------------------------------------- bank


def layer_name(layer: int) -> str:
    return f"layer_{layer:02d}"


@torch.inference_mode()
def write_bank(
    path: str | Path,
    model: nn.Module,
    columns: dict[str, np.ndarray],
    attrs: dict[str, Any],
    batch_size: int = 8,
) -> None:
    """Run ``columns`` through the clean model and store every layer's z in an HDF5 bank.

    Batches are written as they come, so memory holds one batch of activations, not the bank.

    Args:
        columns: model inputs, ``{"input_ids": int [sequence, position]}`` or
            ``{"pixel_values": float [image, C, H, W]}``.
        attrs: file attributes (model, source, seed, settings); values must be HDF5-storable.
    """
    projections = attention_output_projections(model)
    n_items = len(next(iter(columns.values())))
    captured: list[torch.Tensor | None] = [None] * len(projections)

    def make_hook(layer: int):
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured[layer] = args[0]

        return hook

    hooks = [(p, make_hook(i)) for i, p in enumerate(projections)]
    with hooks_installed(hooks), atomic_output(path) as tmp, h5py.File(tmp, "w") as bank:
        bank.attrs.update(_h5_attrs(attrs))
        datasets: list[h5py.Dataset] = []
        start = 0
        for batch in tqdm(
            iter_batches(columns, batch_size),
            total=math.ceil(n_items / batch_size),
            desc="resample bank",
            unit="batch",
        ):
            model.base_model(**forward_kwargs(batch, model))  # z does not need the task head
            if not datasets:
                datasets = [_create_layer(bank, i, z, n_items) for i, z in enumerate(captured)]
            for dataset, z in zip(datasets, captured, strict=True):
                dataset[start : start + len(z)] = z.float().cpu().numpy()
            start += len(captured[0])
        bank.attrs["n_positions"] = datasets[0].shape[1]
        bank.attrs["n_layers"] = len(datasets)  # checked on read: a lost layer is damage


def _create_layer(bank: h5py.File, layer: int, z: torch.Tensor, n_items: int) -> h5py.Dataset:
    _, n_positions, width = z.shape
    dataset = bank.create_dataset(
        layer_name(layer),
        shape=(n_items, n_positions, width),
        dtype="float32",
        chunks=(1, n_positions, width),
        fletcher32=True,  # a checksum per chunk: a damaged bank fails to read, see integrity.py
    )
    dataset.attrs["dims"] = ["sequence", "position", "neuron"]
    return dataset


def _h5_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Nested values (dicts, lists of mixed types, None) become JSON strings."""
    out = {}
    for key, value in attrs.items():
        if isinstance(value, (dict, list, tuple)) or value is None:
            out[key] = json.dumps(value, sort_keys=True)
        else:
            out[key] = value
    return out


def bank_attrs(settings: dict[str, Any], model_name: str, model_source: str) -> dict[str, Any]:
    """File attributes of a bank, from its inputs' settings."""
    return {
        "model": model_name,
        "model_source": model_source,
        "source": settings["source"],
        "seed": settings["seed"],
        "n_sequences": settings["n_sequences"],
        "settings": settings,
        "hook_point": HOOK_POINT,
        "neuron_index": "head * d_head + dim",
        "layout": "one float32 dataset per layer, layer_XX: [sequence, position, neuron]",
        "pairing": PAIRING_RULE,
    }


@dataclass
class Bank:
    """A resampling bank in memory: per layer float32 [sequence, position, neuron]."""

    layers: list[torch.Tensor]
    attrs: dict[str, Any]

    @property
    def n_sequences(self) -> int:
        return int(self.layers[0].shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.layers[0].shape[1])


def read_bank(path: str | Path) -> Bank:
    """Load a whole bank into memory (its size on disk: layers x sequences x positions x width x 4
    bytes), after checking its layout; a chunk failing its checksum raises DamagedArtifact."""
    check_bank(path, read_data=False)
    with h5py.File(path, "r") as f:
        layers = []
        for name in sorted(name for name in f if name.startswith("layer_")):
            with bank_read(path, name):
                layers.append(torch.from_numpy(f[name][()]))
        attrs = dict(f.attrs)
    return Bank(layers, attrs)


# ----------------------------------------------------------------------------- ablation


def bank_rows(start: int, batch: int, n_bank: int) -> torch.Tensor:
    """int64 [batch]: bank sequence of evaluated sequences ``start .. start + batch - 1``."""
    return torch.arange(start, start + batch) % n_bank


def bank_positions(n_positions: int, bank_length: int) -> torch.Tensor:
    """int64 [position]: bank position used at each evaluated position (``t mod bank_length``)."""
    return torch.arange(n_positions) % bank_length


def gather_batch(values: torch.Tensor, rows: torch.Tensor, n_positions: int) -> torch.Tensor:
    """The bank slice of one batch: ``values[rows][:, positions]``, [batch, position, feature].

    ``values`` is [n_bank, bank_length, feature]. A run of consecutive rows and an evaluated
    sequence no longer than the bank are plain slices (views, no copy).
    """
    n_bank, length = values.shape[:2]
    first = int(rows[0])
    if first + len(rows) <= n_bank and int(rows[-1]) == first + len(rows) - 1:
        selected = values[first : first + len(rows)]
    else:
        selected = values.index_select(0, rows.to(values.device))
    if n_positions <= length:
        return selected[:, :n_positions]
    return selected.index_select(1, bank_positions(n_positions, length).to(values.device))


class ResampleAblation:
    """Hooks that resample the ablated neurons of every layer; see :func:`resample_ablation`."""

    def __init__(
        self,
        model: nn.Module,
        ablate: Sequence[torch.Tensor],
        bank: Sequence[torch.Tensor],
        start: int = 0,
    ) -> None:
        self.model = model
        self.offset = start
        """Index (in evaluation order) of the next evaluated sequence."""
        self.n_bank = int(bank[0].shape[0])
        self._rows: torch.Tensor | None = None
        projections = attention_output_projections(model)
        if not len(projections) == len(ablate) == len(bank):
            raise ValueError(
                f"model has {len(projections)} layers, got {len(ablate)} masks and "
                f"{len(bank)} bank layers"
            )
        for mask, values in zip(ablate, bank, strict=True):
            if values.shape[-1] != len(mask):
                raise ValueError(
                    f"bank has {values.shape[-1]} neurons per layer, the model {len(mask)}: "
                    "the bank belongs to another model"
                )
        self._layers = [
            (p, m.to(torch.bool), b)
            for p, m, b in zip(projections, ablate, bank, strict=True)
            if bool(m.any())
        ]

    def hooks(self) -> dict[str, list[ModuleHook]]:
        """The keyword arguments of :func:`hooks_installed` for this ablation."""
        pre = []
        for projection, mask, values in self._layers:
            weight = projection.weight
            # Moved and cast once, so a batch costs one slice (or gather) and one torch.where.
            hook = self._hook(mask.to(weight.device), values.to(weight.device, weight.dtype))
            pre.append((projection, hook))
        if not self._layers:
            return {"pre": pre}
        return {
            "pre": pre,
            "pre_with_kwargs": [(self.model, self._begin_batch)],
            "post": [(self.model, self._end_batch)],
        }

    def _begin_batch(self, _module, args, kwargs) -> None:
        first = next(
            (kwargs[k] for k in ("input_ids", "pixel_values", "inputs_embeds") if k in kwargs),
            args[0] if args else None,
        )
        if first is None:
            raise ValueError("resampling needs input_ids, pixel_values or inputs_embeds")
        self._rows = bank_rows(self.offset, int(first.shape[0]), self.n_bank)

    def _end_batch(self, _module, _args, _output) -> None:
        self.offset += len(self._rows)
        self._rows = None

    def _hook(self, mask: torch.Tensor, values: torch.Tensor):
        """Forward pre-hook: ``z[b, t, S] = values[rows[b], t mod length, S]``."""

        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]):
            z = args[0]
            batch, n_positions = z.shape[:2]
            if self._rows is None or len(self._rows) != batch:
                raise RuntimeError(
                    "resampling hooks ran outside a full forward pass of the model (or the "
                    "batch axis changed inside it); call the model on [batch, position] inputs"
                )
            bank_slice = gather_batch(values, self._rows, n_positions)
            return (torch.where(mask, bank_slice, z), *args[1:])

        return hook


@contextmanager
def resample_ablation(
    model: nn.Module,
    ablate: Sequence[torch.Tensor],
    bank: Sequence[torch.Tensor],
    *,
    start: int = 0,
) -> Iterator[ResampleAblation]:
    """Resample the ablated neurons while the block runs (see the module docstring).

    Every forward pass of ``model`` inside the block is taken to be the next batch of evaluated
    sequences in order, the first having index ``start``. The bank is copied to the model's device
    and dtype for the duration (4 bytes per layer, sequence, position and neuron in float32).

    Args:
        ablate: per layer bool [neuron], the neurons to replace.
        bank: per layer float [n_bank, bank_length, neuron], e.g. ``read_bank(path).layers``.
    """
    state = ResampleAblation(model, ablate, bank, start)
    with hooks_installed(**state.hooks()):
        yield state


def evaluate_resample_ablation(
    model: nn.Module,
    columns: dict[str, np.ndarray],
    task: str,
    ablate: Sequence[torch.Tensor],
    bank: Bank,
    batch_size: int = 8,
    desc: str = "evaluating",
) -> dict[str, float | int]:
    """Score ``model`` with the ablated neurons resampled from ``bank``; adds ``n_ablated``."""
    from neuron_ablation.scoring import evaluate

    with resample_ablation(model, ablate, bank.layers):
        result = evaluate(model, columns, task, batch_size, desc=desc)
    n_ablated = int(sum(int(mask.sum()) for mask in ablate))
    return result | {"n_ablated": n_ablated, "n_bank_sequences": bank.n_sequences}


def write_resample_inputs(
    model_source: str,
    task: str,
    source: str,
    n_sequences: int,
    out: str,
    seq_len: int = 256,
    seed: int = 0,
    space_probability: float = 0.15,
    temperature: float = 1.0,
    top_k: int = 0,
    generator_source: str | None = None,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "float32",
    model_digest: str | None = None,
) -> None:
    """The seeded random inputs of one resampling source -> the Arrow file ``out``."""
    from neuron_ablation.models import check_seq_len

    if source != "pixels":
        check_seq_len(model_source, seq_len, "resample.seq_len, else the model's")
    settings = ResampleSettings(
        source=source,
        n_sequences=n_sequences,
        seq_len=seq_len,
        seed=seed,
        space_probability=space_probability,
        temperature=temperature,
        top_k=top_k,
        generator=generator_source,
    )
    from neuron_ablation.provenance import canonical_json, make_record, model_input

    models = {"model": model_input(model_source, model_digest)}
    if generator_source is not None:
        models["generator"] = model_input(generator_source, None)
    table, settings = generate_inputs(
        model_source, task, settings, device=device, dtype=dtype, batch_size=batch_size
    )
    record = canonical_json(make_record(models, settings.attrs()))
    table = table.replace_schema_metadata(table.schema.metadata | {b"provenance": record})
    write_inputs(out, table)
    log.info("wrote %d %s inputs to %s", table.num_rows, source, out)


def write_model_bank(
    model_source: str,
    task: str,
    tokens: str,
    out: str,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "float32",
    model_name: str = "",
    model_digest: str | None = None,
) -> None:
    """The clean model's z on the resampling inputs ``tokens`` -> the HDF5 bank ``out``."""
    from neuron_ablation.io import read_arrow
    from neuron_ablation.models import load_model_and_inputs
    from neuron_ablation.provenance import canonical_json, check_artifact, make_record, model_input

    settings = inputs_settings(read_arrow(tokens), tokens)
    model_record = model_input(model_source, model_digest)
    check_artifact(tokens, {"inputs.model": model_record["id"]})
    record = make_record({"model": model_record, "inputs": tokens}, {"dtype": dtype})
    model, columns = load_model_and_inputs(model_source, task, tokens, device, dtype)
    attrs = bank_attrs(settings, model_name, model_source) | {"dtype": dtype}
    attrs["provenance"] = canonical_json(record)
    write_bank(out, model, columns, attrs, batch_size)
    log.info("wrote %s", out)
