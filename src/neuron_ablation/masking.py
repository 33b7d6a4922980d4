"""BERT-style corruption for masked-LM evaluation and training.

Of the non-special tokens, each is selected with probability ``prob`` (15 %); a selected token is
replaced by the mask token with probability 0.8, by a uniformly random non-special token with
probability 0.1, and kept with probability 0.1. Only selected positions are scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE = -100


def mask_tokens(
    ids: torch.Tensor,
    special_ids: Sequence[int],
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator,
    prob: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``ids`` (int [..., position]); returns (inputs, labels).

    ``labels`` holds the original id at selected positions and ``IGNORE`` elsewhere. All draws
    come from ``generator``, so the same seed gives the same corruption.
    """
    special = torch.tensor(sorted(set(special_ids)), dtype=ids.dtype)
    selected = ~torch.isin(ids, special) & (torch.rand(ids.shape, generator=generator) < prob)
    kind = torch.rand(ids.shape, generator=generator)
    ordinary = torch.tensor(
        [i for i in range(vocab_size) if i not in set(special_ids)], dtype=ids.dtype
    )
    random_ids = ordinary[torch.randint(len(ordinary), ids.shape, generator=generator)]
    inputs = torch.where(selected & (kind < 0.8), torch.tensor(mask_id, dtype=ids.dtype), ids)
    inputs = torch.where(selected & (kind >= 0.8) & (kind < 0.9), random_ids, inputs)
    labels = torch.where(selected, ids, torch.tensor(IGNORE, dtype=ids.dtype))
    return inputs, labels
