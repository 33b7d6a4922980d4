import math

import numpy as np
import torch
from tiny_models import load

from neuron_ablation.evaluation import evaluate


def test_causal_metrics_match_a_plain_loop(tiny_llama):
    model = load(tiny_llama, "llama")
    ids = np.random.default_rng(0).integers(4, 60, size=(5, 9))
    result = evaluate(model, {"input_ids": ids}, "causal-lm", batch_size=2)

    losses, correct = [], 0
    with torch.no_grad():
        for row in ids:
            logits = model(input_ids=torch.tensor(row[None])).logits[0]
            for t in range(len(row) - 1):
                log_probs = torch.log_softmax(logits[t].double(), dim=-1)
                losses.append(-float(log_probs[row[t + 1]]))
                correct += int(int(logits[t].argmax()) == row[t + 1])
    assert result["n_tokens"] == 5 * 8
    assert math.isclose(result["loss"], sum(losses) / len(losses), rel_tol=1e-5)
    assert result["top1"] == correct / len(losses)
