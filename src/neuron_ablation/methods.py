"""The ablation methods: one registry that config, CLI, workflow and resampling derive from.

Imports neither torch nor anything that does, so the config check, the CLI's parser and the
Snakefile can use it cheaply. The order of :data:`METHODS` is the order of the ``methods`` enum in
``schemas/config.schema.yaml`` (Snakemake validates configs with that enum; a test keeps the two
equal) and of every per-task method list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from neuron_ablation.tasks import TASKS, TEXT_TASKS, VISION_TASKS

Kind = Literal["constant", "resampling", "learned"]
KINDS: tuple[str, ...] = ("constant", "resampling", "learned")

RESAMPLE_PREFIX = "resample-"


@dataclass(frozen=True)
class Method:
    """One ablation method and what its evaluation needs."""

    name: str
    kind: Kind
    description: str
    """One line, for help texts and the README."""
    tasks: tuple[str, ...] = TASKS
    """The tasks it applies to."""
    needs_statistics: bool = False
    """Its per-neuron constants are the array of the same name in the statistics store
    (``results/<model>/stats.zarr``)."""
    needs_bank: bool = False
    """It replaces activations by those of the resampling bank of :attr:`source`."""
    needs_training: bool = False
    """Its constants are learned by a job of their own (rule ``optimal``)."""
    generator_tasks: tuple[str, ...] = ()
    """Tasks on which it applies only when ``resample.generator`` names a causal LM (a masked LM
    cannot write text itself)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"method {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}"
            )
        unknown = [t for t in (*self.tasks, *self.generator_tasks) if t not in TASKS]
        if unknown:
            raise ValueError(f"method {self.name!r}: unknown tasks {unknown}; tasks: {TASKS}")
        if not set(self.generator_tasks) <= set(self.tasks):
            raise ValueError(f"method {self.name!r}: generator_tasks must be among its tasks")
        if (self.kind == "resampling") != self.needs_bank:
            raise ValueError(f"method {self.name!r}: exactly the resampling methods need a bank")
        if (self.kind == "resampling") != self.name.startswith(RESAMPLE_PREFIX):
            raise ValueError(
                f"method {self.name!r}: resampling methods are named resample-<source>"
            )
        if (self.kind == "learned") != self.needs_training:
            raise ValueError(f"method {self.name!r}: exactly the learned methods need training")
        if self.needs_statistics and self.kind != "constant":
            raise ValueError(f"method {self.name!r}: only constant methods read statistics")

    @property
    def source(self) -> str | None:
        """The resampling source (``resample-chars`` -> ``chars``); None for other kinds."""
        return self.name.removeprefix(RESAMPLE_PREFIX) if self.kind == "resampling" else None

    def applies_to(self, task: str, has_generator: bool = False) -> bool:
        """Whether it applies to ``task`` (``has_generator``: ``resample.generator`` is set)."""
        _check_task(task)
        return task in self.tasks and (has_generator or task not in self.generator_tasks)


METHODS: tuple[Method, ...] = (
    Method("zero", "constant", "replace the selected neurons by 0"),
    Method(
        "mean",
        "constant",
        "replace the selected neurons by their mean on the statistics split",
        needs_statistics=True,
    ),
    Method(
        "peak",
        "constant",
        "replace the selected neurons by the mode of their histogram (peak activation centering)",
        needs_statistics=True,
    ),
    Method(
        "optimal",
        "learned",
        "replace the selected neurons by constants learned to minimise the loss",
        needs_training=True,
    ),
    Method(
        "resample-chars",
        "resampling",
        "replace the selected neurons by their values on random characters",
        tasks=TEXT_TASKS,
        needs_bank=True,
    ),
    Method(
        "resample-tokens",
        "resampling",
        "replace the selected neurons by their values on random tokens",
        tasks=TEXT_TASKS,
        needs_bank=True,
    ),
    Method(
        "resample-generated",
        "resampling",
        "replace the selected neurons by their values on text sampled from a causal LM",
        tasks=TEXT_TASKS,
        needs_bank=True,
        generator_tasks=("masked-lm",),
    ),
    Method(
        "resample-pixels",
        "resampling",
        "replace the selected neurons by their values on random pixels",
        tasks=VISION_TASKS,
        needs_bank=True,
    ),
)

_BY_NAME = {m.name: m for m in METHODS}
if len(_BY_NAME) != len(METHODS):
    raise ValueError("method names in METHODS must be unique")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")


def method(name: str) -> Method:
    """The method called ``name``; a ValueError naming the allowed values otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown ablation method {name!r}; methods: {', '.join(_BY_NAME)}"
        ) from None


def names(kind: str | None = None) -> tuple[str, ...]:
    """The methods' names, in registry order; only those of ``kind`` if given."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown method kind {kind!r}; kinds: {', '.join(KINDS)}")
    return tuple(m.name for m in METHODS if kind is None or m.kind == kind)


def statistics_methods() -> tuple[str, ...]:
    """The methods whose constants are an array (of the method's name) in the statistics store."""
    return tuple(m.name for m in METHODS if m.needs_statistics)


def methods_for_task(task: str, has_generator: bool = False) -> tuple[str, ...]:
    """The methods that apply to ``task``, in registry order.

    Random text (chars, tokens, generated) feeds text models, random pixels vision models. A
    masked LM cannot write text itself, so ``resample-generated`` needs ``resample.generator``.
    """
    return tuple(m.name for m in METHODS if m.applies_to(task, has_generator))


RESAMPLE_METHODS: tuple[str, ...] = names("resampling")
RESAMPLE_SOURCES: tuple[str, ...] = tuple(_BY_NAME[n].source for n in RESAMPLE_METHODS)
TEXT_SOURCES: tuple[str, ...] = tuple(
    _BY_NAME[n].source for n in RESAMPLE_METHODS if set(_BY_NAME[n].tasks) <= set(TEXT_TASKS)
)
"""Resampling sources of text models (their inputs have a sequence length)."""
TEXT_RESAMPLE_METHODS: tuple[str, ...] = tuple(RESAMPLE_PREFIX + s for s in TEXT_SOURCES)
