"""Scoring an evaluation batch from the model's own logits against the chunked vocabulary head.

    python benchmarks/evaluation_speed.py --width smollm2-135m --tokens 24576
    python benchmarks/evaluation_speed.py --width smollm2-135m --tokens 24576 --system-allocator

On the same random token ids, batch by batch (the order alternating), three steps run back to
back: ``full logits`` (the model's [prediction, vocab] logits, then cross-entropy and top-1: what
``evaluate`` does for Gemma 2 and 3 and what the optimal-ablation training does), ``chunked``
(``neuron_ablation.scoring.score_batch``: the head on 24 MiB chunks, what ``evaluate`` does
for every other language model) and a body-only forward for reference. Prints tokens/s of each,
the chunked / full-logits time ratio with a 95 % bootstrap interval over the batches, the page
faults per batch and the peak RSS; every batch's scores are checked equal on the way.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import torch
from ablation_speed import (
    batches,
    build_model,
    load_average,
    model_and_batch_arguments,
    random_ids,
)


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    parser = model_and_batch_arguments(__doc__.splitlines()[0], tokens=24576)
    args = parser.parse_args()

    from neuron_ablation.memory import keep_freed_memory
    from neuron_ablation.scoring import Score, batch_predictions, score_batch

    kept = False if args.system_allocator else keep_freed_memory()
    torch.set_num_threads(args.threads)
    print(f"load average (1, 5, 15 min) before: {load_average()}")
    model = build_model(args)
    ids = random_ids(model, args.tokens, args.seq_len)

    def full_logits(batch):
        score = Score()
        predictions, n_rows = batch_predictions(model, "causal-lm", {"input_ids": batch.numpy()})
        score.add(*predictions, n_rows)
        return score

    def chunked(batch):
        score = Score()
        score_batch(model, "causal-lm", {"input_ids": batch.numpy()}, score)
        return score

    def body(batch):
        model.base_model(input_ids=batch)

    steps = {"full logits": full_logits, "chunked": chunked, "body": body}
    seconds = {name: [] for name in steps}
    faults = {name: [] for name in steps}
    with torch.inference_mode():
        warm_up = torch.from_numpy(ids[: args.batch_size])
        full_logits(warm_up), chunked(warm_up)
        for i, batch in enumerate(batches(ids, args.batch_size)):
            scores = {}
            for name in steps if i % 2 == 0 else reversed(steps):
                before, start = page_faults(), time.perf_counter()
                scores[name] = steps[name](batch)
                seconds[name].append(time.perf_counter() - start)
                faults[name].append(page_faults() - before)
            full, fast = scores["full logits"], scores["chunked"]
            assert full.correct == fast.correct and full.n == fast.n
            np.testing.assert_allclose(full.loss_sum, fast.loss_sum, rtol=1e-6)

    times = {name: np.array(values) for name, values in seconds.items()}
    draws = np.random.default_rng(0).integers(0, len(times["body"]), (2000, len(times["body"])))
    resampled = times["chunked"][draws].sum(1) / times["full logits"][draws].sum(1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    allocator = "kept freed memory" if kept else "system allocator"
    name = args.model or f"{args.width} (random weights)"
    print(
        f"{name}: {ids.size} tokens, batch {args.batch_size}x{args.seq_len}, "
        f"{args.threads} threads, {allocator}"
    )
    for name, values in times.items():
        print(
            f"{name:<12} {ids.size / values.sum():7.0f} tok/s   "
            f"{np.mean(faults[name]):9.0f} page faults per batch"
        )
    ratio = times["chunked"].sum() / times["full logits"].sum()
    print(f"chunked / full logits {ratio:.3f}   95 % interval [{low:.3f}, {high:.3f}]")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"load average (1, 5, 15 min) after:  {load_average()}")


if __name__ == "__main__":
    main()
