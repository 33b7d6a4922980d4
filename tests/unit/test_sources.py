"""sources.py: the one reader of ``source`` strings, and the one way into neuron_ablation.demo."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from neuron_ablation import sources, tokenization
from neuron_ablation.demo import catalog
from neuron_ablation.sources import (
    check_source,
    dataset_path,
    embedded_asset,
    local_inputs,
    model_path,
    parse_source,
    source_inputs,
)
from tests.helpers.workflow import REPO


def test_parse_source_kinds(tmp_path):
    assert parse_source("embedded:smollm2-135m") == sources.Source(
        "embedded:smollm2-135m", "embedded", "smollm2-135m"
    )
    folder = tmp_path / "model"
    folder.mkdir()
    for local in (str(folder), "./missing", "~/corpus", "/nowhere", "corpus.jsonl", "a.parquet"):
        assert parse_source(local) == sources.Source(local, "local"), local
    for hub in ("gpt2", "EleutherAI/pythia-70m", "Salesforce/wikitext"):
        assert parse_source(hub) == sources.Source(hub, "hub"), hub
    assert embedded_asset("embedded:digits") == "digits" and embedded_asset("gpt2") is None


def test_model_path_of_each_kind(tmp_path):
    assert model_path("embedded:vit-digits") == str(Path("resources/models/vit-digits"))
    assert model_path(str(tmp_path)) == str(tmp_path)
    assert model_path("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"


def test_dataset_path_of_each_kind(tmp_path):
    assert dataset_path("embedded:wikipedia-leads") == str(
        Path("resources/datasets/wikipedia-leads.jsonl")
    )
    assert dataset_path("embedded:digits") == "embedded:digits"  # read in place
    corpus = str(tmp_path / "corpus.jsonl")
    assert dataset_path(corpus) == corpus
    assert dataset_path("Salesforce/wikitext") == "Salesforce/wikitext"


def test_what_snakemake_tracks(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "a"}\n')
    built = model_path("embedded:smollm2-135m")
    assert local_inputs(built, str(corpus), str(tmp_path / "gone.txt"), "gpt2") == [
        built,
        str(corpus),
    ]
    assert source_inputs("embedded:wikipedia-leads", "dataset") == [
        dataset_path("embedded:wikipedia-leads")
    ]
    assert source_inputs("embedded:digits", "dataset") == []  # scikit-learn ships it
    assert source_inputs("gpt2", "model") == []


def test_unknown_embedded_name_names_the_field_and_the_allowed_values():
    (problem,) = check_source("models.m.source", "embedded:gpt5", sources.EMBEDDED_MODELS)
    assert problem.startswith("models.m.source: unknown embedded asset 'embedded:gpt5'")
    assert all(f"'embedded:{name}'" in problem for name in catalog.MODELS)
    (problem,) = check_source("datasets.d.source", "embedded:smollm2-135m", catalog.DATASETS)
    assert "datasets.d.source" in problem and "'embedded:fashion-mnist'" in problem
    assert check_source("datasets.d.source", "embedded:digits", catalog.DATASETS) == []


def test_a_missing_local_path_is_named_a_hub_id_is_not_checked(tmp_path):
    missing = str(tmp_path / "corpus.jsonl")
    assert check_source("datasets.d.source", missing, catalog.DATASETS) == [
        f"datasets.d.source: local path {missing!r} does not exist"
    ]
    assert check_source("datasets.d.source", "Salesforce/wikitext", catalog.DATASETS) == []


def test_local_suffixes_are_the_text_formats_tokenization_reads():
    assert tuple(tokenization.DOCUMENT_READERS) == sources.LOCAL_SUFFIXES


def test_load_image_set_reads_an_embedded_image_set():
    images, labels, names = sources.load_image_set("embedded:digits", "test")
    assert images.shape == (360, 8, 8) and len(labels) == 360 and names[0] == "0"
    with pytest.raises(ValueError, match="image dataset"):
        sources.load_image_set("embedded:wikipedia-leads", "test")


# ----------------------------------------------------------------------------- the import rule

PACKAGE = REPO / "src" / "neuron_ablation"
PACKAGES = {
    ".".join(("neuron_ablation", *init.parent.relative_to(PACKAGE).parts))
    for init in PACKAGE.rglob("__init__.py")
}
DEMO_IMPORTERS = {
    "sources.py": {"neuron_ablation.demo.catalog", "neuron_ablation.demo.image_sets"},
    "cli.py": {"neuron_ablation.demo.cli"},  # add_demo_commands, user_errors
}
"""The only modules of the package outside neuron_ablation.demo that import it, and what."""


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` anywhere in ``path`` names: ``from
    <package> import x`` names ``<package>.x``; relative imports are resolved as from a
    module at the top of the package."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(p for p in ("neuron_ablation", base) if p)
            if base in PACKAGES:
                modules |= {f"{base}.{alias.name}" for alias in node.names}
            else:
                modules.add(base)
    return modules


def _demo_imports(path: Path) -> set[str]:
    return {
        m for m in _imported_modules(path) if m == "neuron_ablation.demo" or
        m.startswith("neuron_ablation.demo.")
    }  # fmt: skip


def test_the_core_reaches_the_demo_only_through_sources_and_the_cli():
    found = {
        path.name: imports
        for path in sorted(PACKAGE.glob("*.py"))
        if (imports := _demo_imports(path))
    }
    assert found, "the scan found no importer at all: it looks in the wrong place"
    outside = {
        name: sorted(imports - DEMO_IMPORTERS.get(name, set()))
        for name, imports in found.items()
        if imports - DEMO_IMPORTERS.get(name, set())
    }
    assert not outside, (
        f"{outside} import neuron_ablation.demo: go through neuron_ablation.sources instead "
        "(or extend DEMO_IMPORTERS in tests/unit/test_sources.py, with the reason)"
    )


def test_the_import_scan_sees_every_form(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import neuron_ablation.demo.training\n"
        "from neuron_ablation.demo import assets\n"
        "from neuron_ablation import demo\n"
        "def f():\n    from .demo.image_sets import load_image_dataset\n"
        "import neuron_ablation.demonstration\n"
    )
    assert _demo_imports(module) == {
        "neuron_ablation.demo.training",
        "neuron_ablation.demo.assets",
        "neuron_ablation.demo",
        "neuron_ablation.demo.image_sets",
    }
