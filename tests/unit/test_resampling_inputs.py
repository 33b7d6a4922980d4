"""Which resampling sources apply to a task, from the method registry (the inputs themselves:
tests/unit/test_resampling.py)."""

from __future__ import annotations

import pytest

from neuron_ablation.resampling_inputs import check_source_applies


def test_sources_per_task():
    for source in ("chars", "tokens", "generated"):
        check_source_applies(source, "causal-lm", None)
    check_source_applies("generated", "masked-lm", "some/causal-lm")
    check_source_applies("pixels", "image-classification", None)


@pytest.mark.parametrize(
    ("source", "task", "message"),
    [
        (
            "generated",
            "masked-lm",
            "resampling source 'generated' does not apply to task 'masked-lm'; allowed: "
            "['chars', 'tokens'] (a masked LM cannot generate text: set resample.generator",
        ),
        ("pixels", "causal-lm", "allowed: ['chars', 'tokens', 'generated']"),
        ("chars", "image-classification", "allowed: ['pixels']"),
        ("noise", "causal-lm", "unknown resampling source 'noise'; sources: ('chars', "),
    ],
)
def test_a_source_that_does_not_apply(source, task, message):
    with pytest.raises(ValueError) as caught:
        check_source_applies(source, task, None)
    assert message in str(caught.value)
