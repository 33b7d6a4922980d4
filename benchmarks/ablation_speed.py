"""Speed and memory of the pipeline's passes, as ratios against clean forward passes (one run).

    python benchmarks/ablation_speed.py --model resources/models/smollm2-135m --tokens 8192
    python benchmarks/ablation_speed.py --width opt-1.3b --layers 4 --tokens 2048
    python benchmarks/ablation_speed.py --width mistral-7b --layers 2 --tokens 1024
    python benchmarks/ablation_speed.py --quick --model DIR        # smoke run, not a measurement

``--model`` is a real causal LM; ``--width`` builds one with random weights from the published
shape of SmolLM2-135M, OPT-1.3B or Mistral-7B (``--layers`` keeps the first N layers: each ratio
below is a per-layer ratio for the body, so a truncated model measures it at full width). On the
same random token ids it prints

- statistics pass / body-only forward  (the pass runs ``model.base_model``: the like-for-like
  ratio; targets <= 1.10 at SmolLM2 width, <= 1.05 at OPT-1.3B width)
- statistics pass / full forward       (with the vocabulary projection; for reference)
- ablated / clean evaluation step      (target <= 1.02; 50 % of neurons folded into W_O; a step is
  what ``evaluate`` pays per batch: the forward and the scoring of every prediction)
- resampled forward / clean forward    (target <= 1.15; 50 % of neurons from a 16-sequence bank,
  hook set-up included)
- the time spent inside the histogram updates during one statistics pass, as a share of the body
  forward (a decomposition that a noisy machine blurs less than a ratio of two wall times)
- peak RSS of a statistics pass at N and 4N tokens, each in a fresh process (target: flat)
- process start-up (imports) and model load, the fixed cost of every job

Everything runs under the allocator setting of the pipeline's commands
(``neuron_ablation.memory.keep_freed_memory``); ``--system-allocator`` runs it without.

Each ratio is the ratio of summed times over (baseline, candidate) pairs interleaved batch by
batch (``--repeats`` passes over the ids, the order alternating), with a 95 % bootstrap interval
over the pairs: on this shared 2-core VM a whole pass's time moves by +-15 % from run to run, far
more than the effects measured, and pairing single batches puts both sides of a pair under the
same load. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def published_configs() -> dict:
    """Published shapes (config.json of each model on the hub), for random-weight stand-ins: the
    paper's models from benchmarks/paper_memory.py, plus the demo's SmolLM2-135M."""
    import transformers
    from paper_memory import PAPER_MODELS

    smollm2 = transformers.LlamaConfig(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    )
    paper = {name: PAPER_MODELS[name].config for name in ("opt-1.3b", "mistral-7b")}
    return {"smollm2-135m": smollm2, **paper}


WIDTHS = ("mistral-7b", "opt-1.3b", "smollm2-135m")
RATIOS = ("statistics", "ablated", "resampled")


def random_weight_model(
    width: str, layers: int | None, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """A causal LM of a published shape with random weights (first ``layers`` layers), on
    ``device`` in ``dtype``."""
    import transformers

    config = copy.deepcopy(published_configs()[width])
    config.num_hidden_layers = layers or config.num_hidden_layers
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    return model.to(device=device, dtype=dtype).eval()


def random_ids(model, n_tokens: int, seq_len: int, seed: int = 0) -> np.ndarray:
    """int64 [sequence, position] uniform over the vocabulary."""
    n_sequences = -(-n_tokens // seq_len)
    rng = np.random.default_rng(seed)
    return rng.integers(0, model.config.vocab_size, size=(n_sequences, seq_len))


def batches(ids: np.ndarray, batch_size: int):
    """int64 [batch, position] CPU tensors; each step copies its batch to the model's device, as
    the pipeline copies every batch it reads."""
    for start in range(0, len(ids), batch_size):
        yield torch.from_numpy(ids[start : start + batch_size])


@torch.inference_mode()
def clean_forward(model, ids: np.ndarray, batch_size: int) -> None:
    """The full model with its head: what an evaluation pays per batch."""
    for batch in batches(ids, batch_size):
        model(input_ids=batch.to(model.device))


@torch.inference_mode()
def body_forward(model, ids: np.ndarray, batch_size: int) -> None:
    """The model body only (``model.base_model``): what the statistics pass runs."""
    for batch in batches(ids, batch_size):
        model.base_model(input_ids=batch.to(model.device))


def synchronize() -> None:
    """Wait for the GPU's queued kernels (CUDA calls return before their work is done); nothing
    on a CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn) -> float:
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def batch_paired_ratio(
    ids: np.ndarray,
    batch_size: int,
    passes: int,
    baseline,
    candidate,
    candidate_state=contextlib.nullcontext,
) -> tuple[float, float, float, int]:
    """candidate / baseline time, paired batch by batch: each batch runs through both sides back to
    back (the order alternating), so a load change on a shared machine, which moves whole-pass
    times by +-15 % here, hits both sides of a pair.

    Args:
        baseline, candidate: ``step(batch)`` on int64 [batch, position] ids.
        candidate_state: a context manager entered around each candidate step, outside its
            timing (the ablation folded into the same model for one step and undone).

    Returns:
        (ratio of summed times, 95 % bootstrap interval over the pairs (low, high), pairs).
    """
    times = []
    for _ in range(passes):
        for i, batch in enumerate(batches(ids, batch_size)):
            if i % 2 == 0:
                base_seconds = timed(lambda: baseline(batch))  # noqa: B023 - called at once
                with candidate_state():
                    candidate_seconds = timed(lambda: candidate(batch))  # noqa: B023
            else:
                with candidate_state():
                    candidate_seconds = timed(lambda: candidate(batch))  # noqa: B023
                base_seconds = timed(lambda: baseline(batch))  # noqa: B023
            times.append((base_seconds, candidate_seconds))
    pairs = np.array(times)
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(pairs), size=(2000, len(pairs)))
    resampled = pairs[draws].sum(axis=1)
    low, high = np.percentile(resampled[:, 1] / resampled[:, 0], [2.5, 97.5])
    return float(pairs[:, 1].sum() / pairs[:, 0].sum()), float(low), float(high), len(pairs)


def statistics_grid():
    """The default config's grid: bin width 0.01 over [-10, 10) (2,000 bins per neuron)."""
    from neuron_ablation.histogram import BinGrid

    return BinGrid.covering(0.01, -10, 10)


def statistics_pass(model, ids: np.ndarray, batch_size: int, histograms=None) -> list:
    """The pipeline's statistics pass; with ``histograms``, adding to them (no allocation)."""
    from neuron_ablation.statistics import collect_statistics

    columns = {"input_ids": np.asarray(ids)}
    grid = statistics_grid()
    return collect_statistics(
        model, columns, grid, batch_size, progress=False, histograms=histograms
    )


def new_histograms(model) -> list:
    """Empty histograms of every layer on the model's device (the backend the pass would pick)."""
    from neuron_ablation.architectures import neuron_widths
    from neuron_ablation.histogram import layer_histograms

    return layer_histograms(neuron_widths(model), statistics_grid(), model.device)


def histogram_update_seconds(model, ids: np.ndarray, batch_size: int) -> tuple[float, float]:
    """(seconds inside the histogram updates, seconds of the whole pass) of one statistics pass:
    what the histograms cost in place, with the model's caches as the pass leaves them."""
    from neuron_ablation.histogram import NeuronHistogram

    inside = 0.0
    update = NeuronHistogram.update

    def timed_update(self, z, *what):  # the update's check of finite values counts too
        nonlocal inside
        start = time.perf_counter()
        update(self, z, *what)
        inside += time.perf_counter() - start

    NeuronHistogram.update = timed_update
    try:
        total = timed(lambda: statistics_pass(model, ids, batch_size))
    finally:
        NeuronHistogram.update = update
    return inside, total


def folded_ablation(model, value: float = 0.005):
    """A context factory: 50 % of the neurons, fixed to ``value``, folded into ``model``'s output
    projections as the evaluate command does (in place, on the same modules), undone on exit."""
    from neuron_ablation.ablation import folded_constant_ablation
    from neuron_ablation.architectures import neuron_widths
    from neuron_ablation.selection import ablation_masks, neuron_ranks

    widths = neuron_widths(model)
    masks = ablation_masks(neuron_ranks(widths, seed=0), 0.5)
    values = [torch.full((w,), value, dtype=torch.float64) for w in widths]
    return lambda: folded_constant_ablation(model, masks, values)


def zero_bias(model):
    """A context factory: a zero bias on every output projection that has none (what a fold adds,
    without the fold), removed on exit."""
    from neuron_ablation.architectures import architecture_of, attention_output_projections

    out_dim = 0 if architecture_of(model).layout == "linear" else 1

    @contextlib.contextmanager
    def state():
        added = [p for p in attention_output_projections(model) if p.bias is None]
        for projection in added:
            width = projection.weight.shape[out_dim]
            weight = projection.weight
            projection.bias = torch.nn.Parameter(
                torch.zeros(width, dtype=weight.dtype, device=weight.device)
            )
        try:
            yield
        finally:
            for projection in added:
                projection.bias = None

    return state


def resample_setup(model, n_bank: int, seq_len: int):
    """50 % masks and a bank of ``n_bank`` sequences (random values: speed does not depend on
    them), per layer float32 [n_bank, seq_len, neuron]."""
    from neuron_ablation.architectures import neuron_widths
    from neuron_ablation.selection import ablation_masks, neuron_ranks

    widths = neuron_widths(model)
    generator = torch.Generator().manual_seed(0)
    bank = [torch.randn(n_bank, seq_len, w, generator=generator) for w in widths]
    return ablation_masks(neuron_ranks(widths, seed=0), 0.5), bank


def resampled_forward(model, ids: np.ndarray, batch_size: int, masks, bank) -> None:
    from neuron_ablation.resampling import resample_ablation

    with resample_ablation(model, masks, bank):
        clean_forward(model, ids, batch_size)


def build_model(args, attention: str | None = None) -> torch.nn.Module:
    """The ``--model`` as the pipeline loads it, or random weights of the ``--width``; with
    ``attention``, that attention kernel instead of the default."""
    if args.width:
        model = random_weight_model(args.width, args.layers)
    else:
        from neuron_ablation.models import load_model

        model = load_model(args.model, "causal-lm", device="cpu")
    if attention:
        model.set_attn_implementation(attention)
    return model


def use_allocator_setting(args) -> None:
    """The pipeline's allocator setting, as every ``neuron-ablation`` command applies it."""
    from neuron_ablation.memory import keep_freed_memory

    if not args.system_allocator:
        keep_freed_memory()


def evaluation_step(model, batch: torch.Tensor) -> None:
    """What ``evaluate`` pays per batch of int64 [sequence, position] ids: forward and scoring."""
    from neuron_ablation.scoring import Score, score_batch

    score_batch(model, "causal-lm", {"input_ids": batch.numpy()}, Score())


def warm_up(model, ids: np.ndarray, batch_size: int) -> None:
    """One batch through the statistics pass and the full model: first-call costs (kernel
    compilation, allocator growth, CUDA context) are not per-batch costs."""
    statistics_pass(model, ids[:batch_size], batch_size)
    clean_forward(model, ids[:batch_size], batch_size)


def ratio_pairings(model, batch_size: int, seq_len: int) -> dict:
    """label: (group of ``--ratios``, baseline step, candidate step, candidate state, target).

    Each step takes one int64 [batch, position] CPU batch and copies it to ``model``'s device.
    """
    device = model.device
    kept = new_histograms(model)
    masks, bank = resample_setup(model, 16, seq_len)

    def body(batch):
        with torch.inference_mode():
            model.base_model(input_ids=batch.to(device))

    def full(batch):
        with torch.inference_mode():
            model(input_ids=batch.to(device))

    def stats(batch):
        statistics_pass(model, batch.numpy(), batch_size, histograms=kept)

    def forward_step(batch):
        with torch.inference_mode():
            evaluation_step(model, batch)

    def resampled(batch):
        with torch.inference_mode():
            resampled_forward(model, batch.numpy(), batch_size, masks, bank)

    same = contextlib.nullcontext
    # Ablated and clean steps run the same modules (the fold is applied and undone around each
    # ablated step, untimed): two copies of one model differed by up to 5 % per batch here.
    ablation, zeros = folded_ablation(model), folded_ablation(model, 0)
    return {
        "statistics / body forward": ("statistics", body, stats, same, "<= 1.10 / 1.05"),
        "statistics / full forward": ("statistics", full, stats, same, "reference"),
        "ablated / clean eval": ("ablated", forward_step, forward_step, ablation, "<= 1.02"),
        "resampled / clean": ("resampled", full, resampled, same, "<= 1.15"),
        # Where an ablated step's time goes: the pairing itself, the bias a fold adds, the fold.
        "clean / clean": ("fold-parts", forward_step, forward_step, same, "1"),
        "zero bias / clean": ("fold-parts", forward_step, forward_step, zero_bias(model), "-"),
        "fold of zeros / clean": ("fold-parts", forward_step, forward_step, zeros, "-"),
    }


def paired_ratios(
    model, ids: np.ndarray, batch_size: int, repeats: int, groups: list[str]
) -> dict[str, tuple[tuple[float, float, float, int], str]]:
    """label: ((ratio, 95 % interval low, high, batch pairs), target) of every pairing of
    :func:`ratio_pairings` in ``groups``, on the int64 [sequence, position] ``ids``."""
    pairings = ratio_pairings(model, batch_size, ids.shape[1])
    return {
        label: (batch_paired_ratio(ids, batch_size, repeats, baseline, candidate, state), target)
        for label, (group, baseline, candidate, state, target) in pairings.items()
        if group in groups
    }


def rss_child(args) -> None:
    """Run one statistics pass and print this process's peak RSS in MiB as JSON."""
    use_allocator_setting(args)
    torch.set_num_threads(args.threads)
    model = build_model(args)
    statistics_pass(model, random_ids(model, args.tokens, args.seq_len), args.batch_size)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tokens": args.tokens, "peak_rss_mib": peak_mib}))


def peak_rss(args, n_tokens: int) -> float:
    source = ["--width", args.width] if args.width else ["--model", args.model]
    if args.layers:
        source += ["--layers", str(args.layers)]
    cmd = [sys.executable, __file__, "--rss-child", *source, "--tokens", str(n_tokens)]
    cmd += ["--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size)]
    cmd += ["--threads", str(args.threads)] + (
        ["--system-allocator"] if args.system_allocator else []
    )
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mib"]


def startup_seconds() -> float:
    code = "import torch, transformers, neuron_ablation.cli; transformers.AutoModelForCausalLM"
    return timed(lambda: subprocess.run([sys.executable, "-c", code], check=True))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def model_and_batch_arguments(
    description: str, tokens: int, sweep: bool = False
) -> argparse.ArgumentParser:
    """The options every speed benchmark shares: the model (or a published width), the tokens,
    the batch shape, the threads and the allocator; with ``sweep``, lists of batch sizes
    (``--batch-sizes``) and thread counts (``--threads``) instead of one of each."""
    parser = argparse.ArgumentParser(description=description)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="causal LM directory or hub id")
    source.add_argument("--width", choices=WIDTHS, help="random weights of this shape")
    parser.add_argument("--layers", type=int, help="with --width: keep the first N layers")
    parser.add_argument("--tokens", type=int, default=tokens)
    parser.add_argument("--seq-len", type=int, default=256)
    if sweep:
        parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
        parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    else:
        parser.add_argument("--batch-size", type=int, default=8)
        parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--system-allocator",
        action="store_true",
        help="leave glibc's allocator as it is (the pipeline's commands keep freed memory)",
    )
    return parser


def parse_args() -> argparse.Namespace:
    parser = model_and_batch_arguments(__doc__.splitlines()[0], tokens=8192)
    parser.add_argument("--repeats", type=int, default=5, help="passes of paired batches per ratio")
    parser.add_argument(
        "--ratios",
        nargs="+",
        choices=(*RATIOS, "fold-parts"),
        default=list(RATIOS),
        help="which candidates to pair with their baselines (default: all but fold-parts, which "
        "splits an ablated step's extra time into the pairing, the added bias and the fold)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 pair, few tokens")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.repeats = min(args.tokens, 2 * args.seq_len), 1
    return args


def main() -> None:
    args = parse_args()
    if args.rss_child:
        return rss_child(args)
    load_before = load_average()
    use_allocator_setting(args)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = build_model(args)
    load_seconds = time.perf_counter() - start
    ids = random_ids(model, args.tokens, args.seq_len)
    warm_up(model, ids, args.batch_size)
    allocation_seconds = timed(lambda: new_histograms(model))

    @torch.inference_mode()
    def evaluation_pass():
        for batch in batches(ids, args.batch_size):
            evaluation_step(model, batch)

    body_seconds = min(timed(lambda: body_forward(model, ids, args.batch_size)) for _ in range(2))
    full_seconds = min(timed(lambda: clean_forward(model, ids, args.batch_size)) for _ in range(2))
    evaluation_seconds = min(timed(evaluation_pass) for _ in range(2))
    ratios = paired_ratios(model, ids, args.batch_size, args.repeats, args.ratios)
    inside, total = histogram_update_seconds(model, ids, args.batch_size)
    rss_small, rss_large = peak_rss(args, args.tokens), peak_rss(args, 4 * args.tokens)

    n_tokens = ids.size
    name = args.model or f"{args.width} (random weights, {model.config.num_hidden_layers} layers)"
    print(
        f"model {name}: {n_tokens} tokens, batch {args.batch_size}x{args.seq_len}, "
        f"{args.threads} threads, {args.repeats} passes of batch-interleaved pairs"
        + ("  [--quick: smoke run, not a measurement]" if args.quick else "")
    )
    print(f"load average (1, 5, 15 min) before: {load_before}")
    print(f"body forward             {body_seconds:8.2f} s  ({n_tokens / body_seconds:7.0f} tok/s)")
    print(f"full forward             {full_seconds:8.2f} s  ({n_tokens / full_seconds:7.0f} tok/s)")
    print(
        f"evaluation (scored)      {evaluation_seconds:8.2f} s  "
        f"({n_tokens / evaluation_seconds:7.0f} tok/s)"
    )
    for label, ((value, low, high, n_pairs), target) in ratios.items():
        print(
            f"{label:<25}{value:8.3f}   95 % interval [{low:.3f}, {high:.3f}] over {n_pairs} "
            f"batch pairs   (target {target})"
        )
    print(
        f"histogram allocation     {allocation_seconds:8.3f} s once per pass "
        f"({100 * allocation_seconds / body_seconds:.1f} % of this body forward)"
    )
    print(
        f"histogram updates        {inside:8.2f} s of a {total:.2f} s statistics pass "
        f"({100 * inside / body_seconds:.1f} % of the best body forward)"
    )
    print(
        f"statistics peak RSS      {rss_small:8.0f} MiB at {args.tokens} tokens, "
        f"{rss_large:.0f} MiB at {4 * args.tokens} tokens "
        f"(ratio {rss_large / rss_small:.3f}, target 1)"
    )
    print(f"start-up (imports)       {startup_seconds():8.2f} s per process")
    print(f"model load / build       {load_seconds:8.2f} s per process")
    print(f"load average (1, 5, 15 min) after:  {load_average()}")


if __name__ == "__main__":
    main()
