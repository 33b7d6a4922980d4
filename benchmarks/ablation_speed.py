"""Speed and memory of the pipeline's passes, as ratios against a clean forward pass (one run).

    python benchmarks/ablation_speed.py --model resources/models/smollm2-135m --tokens 8192

Prints, measured in this run on the same random token ids:

- statistics pass / clean forward      (target <= 1.25)
- ablated forward / clean forward      (target <= 1.05; 50 % of neurons, peak-like constants)
- resampled forward / clean forward    (target <= 1.15; 50 % of neurons from a 16-sequence
  bank, hook set-up included)

Each ratio is the median over ``--repeats`` interleaved (clean, candidate) pairs, so a load
change on a shared machine hits both sides of a pair.
- peak RSS of a statistics pass at N and 4N tokens, each in a fresh process
  (target: independent of the token count)
- process start-up (imports) and model load, the fixed cost of every evaluation job
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def random_ids(model, n_tokens: int, seq_len: int, seed: int = 0) -> np.ndarray:
    """int64 [sequence, position] uniform over the vocabulary."""
    n_sequences = -(-n_tokens // seq_len)
    rng = np.random.default_rng(seed)
    return rng.integers(0, model.config.vocab_size, size=(n_sequences, seq_len))


@torch.inference_mode()
def clean_forward(model, ids: np.ndarray, batch_size: int) -> None:
    for start in range(0, len(ids), batch_size):
        model(input_ids=torch.from_numpy(ids[start : start + batch_size]))


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def paired_ratio(repeats: int, baseline, candidate) -> float:
    """Median of candidate / baseline time over interleaved pairs (robust to a shared machine's
    load changing between blocks of runs)."""
    ratios = []
    for _ in range(repeats):
        base, cand = best_of(1, baseline), best_of(1, candidate)
        ratios.append(cand / base)
    return float(np.median(ratios))


def statistics_pass(model, ids: np.ndarray, batch_size: int) -> None:
    from neuron_ablation.histogram import BinGrid
    from neuron_ablation.statistics import collect_statistics

    collect_statistics(model, {"input_ids": ids}, BinGrid.covering(0.01, -10, 10), batch_size)


def ablated_model(model):
    from neuron_ablation.ablation import fold_constant_ablation
    from neuron_ablation.architectures import neuron_widths
    from neuron_ablation.selection import ablation_masks, neuron_ranks

    widths = neuron_widths(model)
    masks = ablation_masks(neuron_ranks(widths, seed=0), 0.5)
    values = [torch.full((w,), 0.005, dtype=torch.float64) for w in widths]
    ablated = copy.deepcopy(model)
    fold_constant_ablation(ablated, masks, values)
    return ablated


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


def rss_child(args) -> None:
    """Run one statistics pass and print this process's peak RSS in MiB as JSON."""
    from neuron_ablation.models import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model, "causal-lm", device="cpu")
    statistics_pass(model, random_ids(model, args.tokens, args.seq_len), args.batch_size)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tokens": args.tokens, "peak_rss_mib": peak_mib}))


def peak_rss(args, n_tokens: int) -> float:
    cmd = [
        sys.executable,
        __file__,
        "--rss-child",
        "--model",
        args.model,
        "--tokens",
        str(n_tokens),
    ]
    cmd += ["--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size)]
    cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mib"]


def startup_seconds() -> float:
    code = "import torch, transformers, neuron_ablation.cli; transformers.AutoModelForCausalLM"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="causal LM directory or hub id")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3, help="interleaved pairs per ratio")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args)

    from neuron_ablation.models import load_model

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = load_model(args.model, "causal-lm", device="cpu")
    load_seconds = time.perf_counter() - start
    ids = random_ids(model, args.tokens, args.seq_len)
    ablated = ablated_model(model)
    clean_forward(model, ids[: args.batch_size], args.batch_size)  # warm-up

    clean = best_of(args.repeats, lambda: clean_forward(model, ids, args.batch_size))
    masks, bank = resample_setup(model, 16, args.seq_len)
    candidates = {
        "statistics": lambda: statistics_pass(model, ids, args.batch_size),
        "ablated": lambda: clean_forward(ablated, ids, args.batch_size),
        "resampled": lambda: resampled_forward(model, ids, args.batch_size, masks, bank),
    }
    ratios = {
        name: paired_ratio(args.repeats, lambda: clean_forward(model, ids, args.batch_size), fn)
        for name, fn in candidates.items()
    }
    n_tokens = ids.size
    rss_small, rss_large = peak_rss(args, args.tokens), peak_rss(args, 4 * args.tokens)

    print(
        f"model {args.model}: {n_tokens} tokens, batch {args.batch_size}x{args.seq_len}, "
        f"{args.threads} threads"
    )
    print(f"clean forward            {clean:8.2f} s  ({n_tokens / clean:7.0f} tok/s)")
    print(f"statistics / clean       {ratios['statistics']:8.3f}   (target <= 1.25)")
    print(f"ablated / clean          {ratios['ablated']:8.3f}   (target <= 1.05)")
    print(f"resampled / clean        {ratios['resampled']:8.3f}   (target <= 1.15)")
    print(
        f"statistics peak RSS      {rss_small:8.0f} MiB at {args.tokens} tokens, "
        f"{rss_large:.0f} MiB at {4 * args.tokens} tokens "
        f"(ratio {rss_large / rss_small:.3f}, target 1)"
    )
    print(f"start-up (imports)       {startup_seconds():8.2f} s per process")
    print(f"model load               {load_seconds:8.2f} s per process")


if __name__ == "__main__":
    main()
