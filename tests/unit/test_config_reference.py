"""config/README.md is the config reference: every key of the schema, and every embedded asset,
is documented there; the README's minimal config is valid."""

from __future__ import annotations

import re
from typing import Any

import yaml

from neuron_ablation.config import validate_config
from neuron_ablation.demo import catalog
from tests.helpers.workflow import REPO

SCHEMA = REPO / "src/neuron_ablation/schemas/config.schema.yaml"
REFERENCE = REPO / "config/README.md"


def schema_keys(node: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of a schema node's properties (``models.<name>.source``); a ``$ref`` or a map
    of named entries (``models``, ``datasets``) contributes its own key, then its entries'."""
    keys = []
    for name, child in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        keys.append(key)
        if "$ref" not in child:
            keys += schema_keys(child, f"{key}.")
            entry = child.get("additionalProperties")
            if isinstance(entry, dict):
                keys += schema_keys(entry, f"{key}.<name>.")
    return keys


def test_schema_keys_walks_nested_and_named_entries():
    schema = {
        "properties": {
            "models": {"additionalProperties": {"properties": {"source": {}}}},
            "eval": {"properties": {"sweep": {"$ref": "#/$defs/counts"}}},
        }
    }
    assert schema_keys(schema) == ["models", "models.<name>.source", "eval", "eval.sweep"]


def test_every_schema_key_is_documented_in_the_config_reference():
    text = REFERENCE.read_text()
    keys = schema_keys(yaml.safe_load(SCHEMA.read_text()))
    assert "models.<name>.resources.mem_mb" in keys and "resample.top_k" in keys
    undocumented = [key for key in keys if f"`{key}`" not in text]
    assert not undocumented, f"schema keys missing from config/README.md: {undocumented}"


def test_every_embedded_asset_is_named_in_the_config_reference():
    text = REFERENCE.read_text()
    names = [*catalog.MODELS, *catalog.DATASETS]
    missing = [name for name in names if f"`embedded:{name}`" not in text]
    assert not missing, f"embedded assets missing from config/README.md: {missing}"


def test_the_readme_minimal_config_is_valid():
    """The README's minimal config passes the schema and the cross-checks as written."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## A minimal config", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"^```yaml\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    config = validate_config(yaml.safe_load(block))
    assert list(config["models"]) == ["gpt2"] and config["stats"]["bin_width"] == 0.01
