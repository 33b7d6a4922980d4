"""Asserting what an integrity check says of a damaged artifact (tests/unit/test_integrity*.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuron_ablation.integrity import DamagedArtifact


def damage_of(path: Path, check, *args, **kwargs) -> str:
    """The problem ``check(path, *args, **kwargs)`` finds; its DamagedArtifact must name ``path``
    first and end with the command that rebuilds it."""
    with pytest.raises(DamagedArtifact) as caught:
        check(path, *args, **kwargs)
    assert caught.value.path == path
    message = str(caught.value)
    assert message.startswith(f"{path}: {caught.value.problem}. The artifact is damaged")
    assert "snakemake --cores all --forcerun" in message
    return caught.value.problem
