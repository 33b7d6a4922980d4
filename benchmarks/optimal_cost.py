"""Cost of learning optimal-ablation constants, as a ratio to a clean forward pass (one run).

    python benchmarks/optimal_cost.py --model resources/models/smollm2-135m --threads 1

On the same random token ids (``--steps`` batches of ``--batch-size`` x ``--seq-len``), prints the
median over interleaved pairs of

- optimal training (forward + backward to the constants, Adam step) / clean forward (full model
  with its head, inference mode), i.e. the price of one training step in forward passes;
- tokens per second of both, and the machine's load average before and after.

A config's training cost is then about ratio x steps x batch_size x seq_len tokens of forward
passes per (model, seed, fraction).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from neuron_ablation.architectures import neuron_widths
from neuron_ablation.models import load_model
from neuron_ablation.optimal import OptimalSettings, train_constants


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="causal-LM directory or hub id")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}")

    model = load_model(args.model, "causal-lm", "cpu")
    rng = np.random.default_rng(0)
    n_rows = args.steps * args.batch_size
    ids = rng.integers(0, model.config.vocab_size, size=(n_rows, args.seq_len))
    columns = {"input_ids": ids}
    widths = neuron_widths(model)
    masks = [torch.from_numpy(rng.random(w) < args.fraction) for w in widths]
    mean = [torch.zeros(w, dtype=torch.float64) for w in widths]
    spread = [torch.ones(w, dtype=torch.float64) for w in widths]
    settings = OptimalSettings(steps=args.steps, batch_size=args.batch_size, lr=0.1)

    @torch.inference_mode()
    def forward() -> None:
        for start in range(0, n_rows, args.batch_size):
            model(input_ids=torch.from_numpy(ids[start : start + args.batch_size]))

    def train() -> None:
        train_constants(model, columns, "causal-lm", masks, mean, spread, settings)

    forward()  # warm-up: allocator and kernels
    ratios, tokens = [], n_rows * args.seq_len
    for _ in range(args.repeats):
        clean, learned = timed(forward), timed(train)
        ratios.append(learned / clean)
        print(
            f"forward {tokens / clean:7.1f} tok/s  training {tokens / learned:7.1f} tok/s  "
            f"ratio {learned / clean:.3f}"
        )
    print(f"optimal training / clean forward, same tokens: {np.median(ratios):.3f} (median)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
