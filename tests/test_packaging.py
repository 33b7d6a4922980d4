"""environment.yml installs what pyproject.toml declares (its comment promises it)."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers.workflow import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_environment_yml_lists_the_project_dependencies():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert [d for d in pip_section if not d.startswith("-e")] == declared
    assert "-e .." in pip_section
