"""What the demo trainers share (neuron_ablation.demo.training): batch order, run record."""

from __future__ import annotations

import json
import sys

import torch

from neuron_ablation.demo.training import Stopwatch, batch_indices, run_record


def test_batch_indices_are_full_batches_covering_every_item_per_pass():
    batches = list(batch_indices(10, 4, 5, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4] * 5
    # The first two passes (20 indices) are each a permutation of the 10 items.
    flat = torch.cat(batches)
    assert sorted(flat[:10].tolist()) == list(range(10))
    assert sorted(flat[10:20].tolist()) == list(range(10))


def test_run_record_names_seed_command_machine_and_seconds(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["neuron-ablation", "train-vit", "--data", "digits"])
    seconds = Stopwatch().seconds()
    record = json.loads(json.dumps(run_record(7, seconds)))
    assert record["seed"] == 7 and record["command"] == "neuron-ablation train-vit --data digits"
    assert record["train_seconds"].keys() == {"wall", "cpu"}
    assert record["machine"]["torch"] == str(torch.__version__)
    assert record["commit"] is None or len(record["commit"]) == 40
