"""What pre-flight found: problems (each stops the run) and notes, collected across every check
of :mod:`neuron_ablation.preflight`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Findings:
    """Problems (each stops the run) and notes (said, but the run goes on)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
