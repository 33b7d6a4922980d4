"""environment.yml installs what pyproject.toml declares (its comment promises it), and the
package's long description is the short user README whose links resolve."""

from __future__ import annotations

import re

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


def test_environment_yml_installs_the_documentation_tool_of_the_dev_extra():
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    (mkdocs,) = [d for d in dev["dev"] if d.startswith("mkdocs-material")]
    assert mkdocs in environment["dependencies"]


def relative_links(markdown: str) -> list[str]:
    """Targets of the markdown links that point into the repository (no URL, no bare anchor),
    without their anchors."""
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]


def test_relative_links_keep_urls_and_anchors_out():
    text = "[a](docs/x.md#y) [b](https://e.org) [c](#here) [d](CONTRIBUTING.md)"
    assert relative_links(text) == ["docs/x.md", "CONTRIBUTING.md"]


def test_long_description_is_the_short_user_readme():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["readme"] == "README.md"
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("document", ["README.md", "CONTRIBUTING.md", "config/README.md"])
def test_links_of_the_documents_outside_the_site_resolve(document):
    """mkdocs build --strict checks the links of docs/; these three live outside it."""
    path = REPO / document
    broken = [t for t in relative_links(path.read_text()) if not (path.parent / t).exists()]
    assert not broken, f"{document} links to missing files: {broken}"
