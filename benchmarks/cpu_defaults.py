"""Throughput of the passes by batch size, thread count and attention kernel (one run).

    python benchmarks/cpu_defaults.py --model resources/models/smollm2-135m --tokens 2048

Prints a markdown table of tokens per second (best of ``--repeats``) for the body-only forward,
the statistics pass (body + histograms) and the full forward (evaluation) at each batch size
(sequences of ``--seq-len`` tokens) and thread count, then body and full forward with each
attention implementation at ``--attention-batch``. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from ablation_speed import body_forward, clean_forward, load_average, random_ids, statistics_pass


def best_rate(repeats: int, n_tokens: int, fn) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return n_tokens / min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="causal LM directory or hub id")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--attention", nargs="+", default=["sdpa", "eager"])
    parser.add_argument("--attention-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import transformers

    from neuron_ablation.memory import keep_freed_memory

    keep_freed_memory()  # as every neuron-ablation command runs

    print(f"load average (1, 5, 15 min) before: {load_average()}")
    models = {
        kind: transformers.AutoModelForCausalLM.from_pretrained(
            args.model, attn_implementation=kind
        ).eval()
        for kind in args.attention
    }
    model = models[args.attention[0]]
    ids = random_ids(model, args.tokens, args.seq_len)
    n_tokens = ids.size
    statistics_pass(model, ids[:1], 1)  # warm-up (kernel compilation)

    print(f"\n{args.model}: {n_tokens} tokens of {args.seq_len}, tokens/s (best of {args.repeats})")
    print("\n| threads | batch | body forward | statistics pass | stats / body | full forward |")
    print("|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch_sizes:
            body = best_rate(args.repeats, n_tokens, lambda b=batch: body_forward(model, ids, b))
            stats = best_rate(
                args.repeats, n_tokens, lambda b=batch: statistics_pass(model, ids, b)
            )
            full = best_rate(args.repeats, n_tokens, lambda b=batch: clean_forward(model, ids, b))
            print(
                f"| {threads} | {batch} | {body:.0f} | {stats:.0f} | {body / stats:.3f} "
                f"| {full:.0f} |"
            )

    torch.set_num_threads(max(args.threads))
    batch = args.attention_batch
    threads = max(args.threads)
    print(f"\n| attention ({threads} threads, batch {batch}) | body forward | full forward |")
    print("|---|---|---|")
    for kind, candidate in models.items():
        body = best_rate(args.repeats, n_tokens, lambda m=candidate: body_forward(m, ids, batch))
        full = best_rate(args.repeats, n_tokens, lambda m=candidate: clean_forward(m, ids, batch))
        print(f"| {kind} | {body:.0f} | {full:.0f} |")
    print(f"\nload average (1, 5, 15 min) after:  {load_average()}")


if __name__ == "__main__":
    main()
