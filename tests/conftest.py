"""Shared fixtures (tiny real-class models on disk, a small corpus, the tiny config, one finished
pipeline run per session) and the ``workflow`` marker on every test under tests/workflow/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tiny_models import corpus, save_causal_lm, write_jsonl
from tests.helpers.workflow import run_snakemake, tiny_config

WORKFLOW_TESTS = Path(__file__).parent / "workflow"


def pytest_collection_modifyitems(config, items):
    """Every test under tests/workflow/ runs Snakemake: mark it ``workflow``."""
    for item in items:
        if item.path.is_relative_to(WORKFLOW_TESTS):
            item.add_marker(pytest.mark.workflow)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return save_causal_lm(tmp_path_factory.mktemp("models") / "llama", "llama")


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "corpus.jsonl", corpus())


@pytest.fixture
def good(tiny_llama, corpus_file) -> dict:
    """The tiny config as written (validate_config not run: defaults not filled in)."""
    return tiny_config(tiny_llama, corpus_file)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, tiny_llama, corpus_file) -> tuple[Path, dict]:
    """One complete run of the whole pipeline on a tiny Llama; returns (workdir, config)."""
    workdir = tmp_path_factory.mktemp("pipeline")
    # A third seed at the focus fractions (50 %, 90 %) only: rule evaluate_focus runs too.
    config = tiny_config(tiny_llama, corpus_file, eval={"n_tokens": 128, "focus_seeds": 3})
    run_snakemake(workdir, config, "--cores", "2")
    return workdir, config
