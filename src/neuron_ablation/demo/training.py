"""What the demo's two trainers share: seeding, the optimiser and its schedule, the batch order,
and the record of where and how long a training ran.

No pretrained vision transformer or masked LM can be downloaded offline, so the pipeline trains
its own, on a CPU, in float32 everywhere (so that a result does not depend on which CPU's
kernels ran it):

* :func:`neuron_ablation.demo.vit.train_vit`: a ViT trained from random initialisation on
  Fashion-MNIST or scikit-learn's digits.
* :func:`neuron_ablation.demo.masked_lm.train_masked_lm`: a masked LM on the Wikipedia leads,
  the pretrained MiniLM's encoder layers and an MLM head trained on its frozen embeddings.

Each writes a ``save_pretrained`` directory that the ``Auto*`` classes load, plus
``training.json`` (its ``run`` entry: :func:`run_record`). Runs are seeded: the same seed,
thread count and machine give the same model.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neuron_ablation.machine import git_commit, machine_record


def setup(seed: int, threads: int | None) -> None:
    """Seed torch and set its thread count (None keeps torch's default)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)


def optimizer_and_schedule(
    model: nn.Module, lr: float, weight_decay: float, total_steps: int, warmup: float = 0.05
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters (no decay on biases/norms) with linear warmup then
    cosine decay to 0."""
    buckets: dict[float, list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            buckets.setdefault(weight_decay if p.ndim >= 2 else 0.0, []).append(p)
    groups = [{"params": ps, "weight_decay": wd} for wd, ps in buckets.items()]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    warmup_steps = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step(loss: torch.Tensor, optimizer, scheduler, model: nn.Module) -> None:
    """One update: backward, gradient norm clipped to 1, AdamW step, schedule step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()


def batch_indices(
    n: int, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``steps`` batches of ``batch_size`` indices into ``n`` items, [batch_size] int64 each:
    passes over a fresh permutation, a batch may straddle two passes (so every batch is full)."""
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        while len(order) < batch_size:
            order = torch.cat([order, torch.randperm(n, generator=generator)])
        yield order[:batch_size]
        order = order[batch_size:]


def train_loop(
    model: nn.Module,
    n: int,
    loss_of: Callable[[torch.Tensor], torch.Tensor | None],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
    progress: bool,
    desc: str,
) -> list[float]:
    """``steps`` AdamW steps of ``model``'s trainable parameters on batches of ``n`` items
    (:func:`batch_indices`); ``loss_of`` maps a batch's indices [batch_size] to its loss (None:
    skip the batch). Returns the losses."""
    optimizer, scheduler = optimizer_and_schedule(model, lr, weight_decay, steps)
    model.train()
    losses: list[float] = []
    batches = batch_indices(n, batch_size, steps, generator)
    bar = tqdm(batches, total=steps, desc=desc, unit="step", disable=not progress)
    for batch in bar:
        loss = loss_of(batch)
        if loss is None:
            continue
        step(loss, optimizer, scheduler, model)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
    return losses


class Stopwatch:
    """Wall and CPU seconds (all threads of this process) since it was made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def seconds(self) -> dict[str, float]:
        return {
            "wall": round(time.perf_counter() - self.wall, 2),
            "cpu": round(time.process_time() - self.cpu, 2),
        }


def run_record(seed: int, train_seconds: dict[str, float]) -> dict[str, Any]:
    """Where and how this training ran: git commit (None outside a checkout), command line,
    seed, machine (:func:`neuron_ablation.machine.machine_record`) and the wall and CPU seconds
    of the training itself (``train_seconds``, a :meth:`Stopwatch.seconds`)."""
    return {
        "commit": git_commit(),
        "command": shlex.join(sys.argv),
        "seed": seed,
        "machine": machine_record(),
        "train_seconds": train_seconds,
    }
