"""Throughput of the passes by batch size, thread count, attention kernel and jobs at a time.

    python benchmarks/cpu_defaults.py --width smollm2-135m --rounds 6
    python benchmarks/cpu_defaults.py --model resources/models/smollm2-135m

Every setting runs the same unit of work: ``--tokens`` random ids in sequences of ``--seq-len``
(a number of sequences that every batch size divides, so each setting sees the same ids). A
round runs the unit once through each pass under each setting, the settings in an order that
rotates from round to round; ``--rounds`` rounds. For each setting the table gives the median
tokens/s over the rounds of the body-only forward, the statistics pass (body + histograms) and
the evaluation step (the forward and the scoring of every prediction, as ``evaluate`` runs it),
and its time relative to the default (the most threads, batch 8) as the ratio of summed times
over the rounds, with a 95 % bootstrap interval over the rounds: on a shared VM a pass's time
moves by +-15 % from one minute to the next, and a default within its interval of the best
setting is a tie, not a loss.

Then the same for each attention kernel at batch 8, and the evaluation step's throughput with
the cores split into one-thread jobs running side by side (how Snakemake runs evaluation jobs)
against one job with every thread. Everything runs under the pipeline's allocator setting
(``--system-allocator``: without). The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch
from ablation_speed import (
    batches,
    body_forward,
    build_model,
    evaluation_step,
    load_average,
    model_and_batch_arguments,
    random_ids,
    statistics_pass,
    timed,
    use_allocator_setting,
)

DEFAULT_BATCH = 8


def evaluation_steps(model, ids: np.ndarray, batch_size: int) -> None:
    for batch in batches(ids, batch_size):
        evaluation_step(model, batch)


PASSES = {
    "body forward": body_forward,
    "statistics pass": statistics_pass,
    "evaluation step": evaluation_steps,
}


def interleaved_seconds(settings: list, run, rounds: int) -> np.ndarray:
    """float [round, setting] seconds of ``run(setting)``, the order of settings rotating."""
    seconds = np.zeros((rounds, len(settings)))
    for r in range(rounds):
        for k in range(len(settings)):
            index = (k + r) % len(settings)
            seconds[r, index] = timed(lambda i=index: run(settings[i]))
    return seconds


def ratio_to(seconds: np.ndarray, reference: int) -> list[tuple[float, float, float]]:
    """Per setting: (summed time / the reference's, 95 % bootstrap interval over rounds)."""
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(seconds), size=(2000, len(seconds)))
    resampled = seconds[draws].sum(axis=1)  # [draw, setting]
    ratios = resampled / resampled[:, [reference]]
    low, high = np.percentile(ratios, [2.5, 97.5], axis=0)
    point = seconds.sum(axis=0) / seconds[:, reference].sum()
    return list(zip(point.tolist(), low.tolist(), high.tolist(), strict=True))


def print_table(title: str, labels: list[str], per_pass: dict, n_tokens: int, reference: int):
    """``per_pass``: pass name -> float [round, setting] seconds."""
    names = list(per_pass)
    print(f"\n| {title} | " + " | ".join(f"{n} tok/s, time / default" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    ratios = {name: ratio_to(seconds, reference) for name, seconds in per_pass.items()}
    for s, label in enumerate(labels):
        cells = []
        for name in names:
            rate = n_tokens / np.median(per_pass[name][:, s])
            ratio, low, high = ratios[name][s]
            cells.append(f"{rate:.0f}, {ratio:.3f} [{low:.3f}, {high:.3f}]")
        print(f"| {label} | " + " | ".join(cells) + " |")


def job_child(args) -> None:
    """One evaluation job: builds its model, says "ready", waits for a line on stdin, then runs
    ``--rounds`` units of evaluation steps."""
    use_allocator_setting(args)
    torch.set_num_threads(args.threads[0])
    model = build_model(args)
    ids = random_ids(model, args.tokens, args.seq_len)
    evaluation_steps(model, ids[:1], 1)  # warm-up
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(args.rounds):
        evaluation_steps(model, ids, args.batch_sizes[0])


def concurrent_jobs_rate(args, jobs: int, threads: int, batch: int) -> float:
    """Tokens/s of ``jobs`` evaluation jobs of ``threads`` threads each, started together once
    every one has loaded its model; timed until the last one ends."""
    command = [sys.executable, __file__, "--job-child", "--threads", str(threads)]
    command += child_arguments(args, batch)
    children = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(jobs)
    ]
    for child in children:
        if child.stdout.readline().strip() != "ready":
            raise SystemExit(f"an evaluation job failed to start: {' '.join(command)}")
    start = time.perf_counter()
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    if any(child.wait() for child in children):
        raise SystemExit(f"an evaluation job failed: {' '.join(command)}")
    return jobs * args.rounds * args.tokens / (time.perf_counter() - start)


def child_arguments(args, batch: int) -> list[str]:
    source = ["--model", args.model] if args.model else ["--width", args.width]
    if args.layers:
        source += ["--layers", str(args.layers)]
    flags = ["--system-allocator"] if args.system_allocator else []
    return source + flags + [
        "--tokens", str(args.tokens), "--seq-len", str(args.seq_len),
        "--batch-sizes", str(batch), "--rounds", str(args.rounds),
    ]  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = model_and_batch_arguments(__doc__.splitlines()[0], tokens=2048, sweep=True)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--attention", nargs="+", default=["sdpa", "eager"])
    parser.add_argument("--job-child", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(seq_len=128)
    args = parser.parse_args()
    sequences, rest = divmod(args.tokens, args.seq_len)
    uneven = [b for b in args.batch_sizes if sequences % b]
    if rest or uneven:
        parser.error(
            f"--tokens {args.tokens} must be --seq-len {args.seq_len} times a multiple of every "
            f"batch size ({', '.join(map(str, args.batch_sizes))})"
        )
    return args


def main() -> None:
    args = parse_args()
    if args.job_child:
        return job_child(args)
    print(f"load average (1, 5, 15 min) before: {load_average()}")
    use_allocator_setting(args)
    models = {kind: build_model(args, attention=kind) for kind in args.attention}
    model = models[args.attention[0]]
    ids = random_ids(model, args.tokens, args.seq_len)
    n_tokens = ids.size
    statistics_pass(model, ids[:1], 1)  # warm-up (kernel compilation)
    source = args.model or f"random weights of {args.width} width"
    print(f"\n{source}: units of {len(ids)} x {args.seq_len} tokens, {args.rounds} rounds")

    most_threads = max(args.threads)
    settings = [(t, b) for t in args.threads for b in args.batch_sizes]
    batch = DEFAULT_BATCH if DEFAULT_BATCH in args.batch_sizes else args.batch_sizes[-1]
    default = settings.index((most_threads, batch))
    print(f"time / default: against {most_threads} threads, batch {batch}")

    def sweep(run_pass):
        def run(setting):
            torch.set_num_threads(setting[0])
            run_pass(model, ids, setting[1])

        return interleaved_seconds(settings, run, args.rounds)

    per_pass = {name: sweep(run_pass) for name, run_pass in PASSES.items()}
    labels = [f"{t} thread{'s' if t > 1 else ''}, batch {b}" for t, b in settings]
    print_table("setting", labels, per_pass, n_tokens, default)

    torch.set_num_threads(most_threads)
    kinds = list(models)
    attention = {
        name: interleaved_seconds(
            kinds, lambda kind, p=PASSES[name]: p(models[kind], ids, batch), args.rounds
        )
        for name in ("body forward", "evaluation step")
    }
    print_table(f"attention ({most_threads} threads, batch {batch})", kinds, attention, n_tokens, 0)

    one_job = concurrent_jobs_rate(args, jobs=1, threads=most_threads, batch=batch)
    split = concurrent_jobs_rate(args, jobs=most_threads, threads=1, batch=batch)
    print(
        f"\nevaluation step, {args.rounds} units per job: 1 job x {most_threads} threads "
        f"{one_job:.0f} tok/s; {most_threads} jobs x 1 thread side by side {split:.0f} tok/s "
        f"together ({split / one_job:.2f} x)"
    )
    print(f"\nload average (1, 5, 15 min) after:  {load_average()}")


if __name__ == "__main__":
    main()
