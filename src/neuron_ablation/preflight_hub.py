"""Pre-flight of hub ids: one probe of the hub endpoint (short timeout), then a model's
``config.json`` (downloaded, or cached when the hub cannot be reached) and a dataset's page (it
exists; a gated one needs a login)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from neuron_ablation.preflight_findings import Findings

HUB_TIMEOUT_S = 5.0


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


class Hub:
    """The Hugging Face hub as seen from this machine: probed once, with a short timeout."""

    def __init__(self, timeout_s: float = HUB_TIMEOUT_S):
        self.timeout_s = timeout_s
        self._unreachable: str | None | bool = False  # False: not probed yet

    def unreachable_reason(self) -> str | None:
        """Why the hub cannot be reached (None when it answers, whatever the status)."""
        if self._unreachable is False:
            self._unreachable = self._probe()
        return self._unreachable

    def _probe(self) -> str | None:
        request = urllib.request.Request(hub_endpoint() + "/api/models?limit=1", method="HEAD")
        try:
            urllib.request.urlopen(request, timeout=self.timeout_s).close()
        except urllib.error.HTTPError:
            return None  # it answered
        except (urllib.error.URLError, OSError) as error:
            return str(getattr(error, "reason", error))
        return None

    def cached_config(self, repo_id: str) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, "config.json")
        return Path(cached) if isinstance(cached, str) else None

    def download_config(self, repo_id: str) -> Path:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, "config.json", etag_timeout=self.timeout_s))

    def dataset_gated(self, repo_id: str) -> bool:
        from huggingface_hub import HfApi

        return bool(HfApi().dataset_info(repo_id, timeout=self.timeout_s).gated)


def _hub_id_problem(field_name: str, source: str, kind: str) -> str | None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(source)
    except HFValidationError:
        return (
            f"{field_name}: {source!r} is neither an existing local {kind} (relative paths are "
            f"relative to {Path.cwd()}) nor a valid hub id (owner/name); fix the path"
        )
    return None


def _unreachable_problem(field_name: str, source: str, reason: str, kind: str) -> str:
    repo_type = " --repo-type dataset" if kind == "dataset" else ""
    # Models are loaded from the local cache when the hub is down; datasets are streamed.
    unavailable = (
        "it is not in the local cache" if kind == "model" else "the tokenize job streams datasets"
    )
    return (
        f"{field_name}: {source!r} is a hub id, but the Hugging Face hub ({hub_endpoint()}) cannot "
        f"be reached from this machine ({reason}), and {unavailable}. Check the "
        f"network or proxy (HTTPS_PROXY), or download the {kind} where there is a network "
        f"(huggingface-cli download {source} --local-dir DIR{repo_type}) and set the source to DIR"
    )


def hub_model_config(
    field_name: str, source: str, hub: Hub, findings: Findings
) -> dict[str, Any] | None:
    """``config.json`` of a hub model (downloaded, or cached when offline), or None."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
    )

    if problem := _hub_id_problem(field_name, source, "model directory"):
        findings.problems.append(problem)
        return None
    reason = "HF_HUB_OFFLINE is set" if hub_offline() else hub.unreachable_reason()
    if reason is not None:
        cached = hub.cached_config(source)
        if cached is None:
            findings.problems.append(_unreachable_problem(field_name, source, reason, "model"))
            return None
        findings.notes.append(
            f"{field_name}: the hub cannot be reached ({reason}); the cached copy of {source} "
            "is used"
        )
        return json.loads(cached.read_text())
    try:
        return json.loads(hub.download_config(source).read_text())
    except GatedRepoError:
        findings.problems.append(
            f"{field_name}: {source} is gated: accept its terms on {hub_endpoint()}/{source} and "
            "log in (huggingface-cli login)"
        )
    except RepositoryNotFoundError:
        findings.problems.append(
            f"{field_name}: {source} is not on the hub (a typo, or a private repository: log in "
            "with huggingface-cli login)"
        )
    except EntryNotFoundError:
        findings.problems.append(
            f"{field_name}: {source} has no config.json: not a transformers model"
        )
    except (HfHubHTTPError, OSError) as error:
        findings.problems.append(f"{field_name}: could not fetch {source}/config.json: {error}")
    return None


def check_hub_dataset(field_name: str, source: str, hub: Hub, findings: Findings) -> None:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if problem := _hub_id_problem(field_name, source, "dataset file or folder"):
        findings.problems.append(problem)
        return
    if hub_offline():
        findings.notes.append(f"{field_name}: HF_HUB_OFFLINE is set; {source} is not checked")
        return
    if (reason := hub.unreachable_reason()) is not None:
        # Datasets are streamed from the hub by the tokenize job: a cache does not help.
        problem = _unreachable_problem(field_name, source, reason, "dataset")
        if Path(source).suffix:
            problem += f" (if {source} is meant to be a local file: it does not exist here)"
        findings.problems.append(problem)
        return
    try:
        gated = hub.dataset_gated(source)
    except RepositoryNotFoundError:
        findings.problems.append(
            f"{field_name}: dataset {source} is not on the hub (a typo, or private: log in with "
            "huggingface-cli login)"
        )
        return
    except (HfHubHTTPError, OSError) as error:
        findings.problems.append(f"{field_name}: could not look up dataset {source}: {error}")
        return
    from huggingface_hub import get_token

    if gated and get_token() is None:
        findings.problems.append(
            f"{field_name}: dataset {source} is gated: accept its terms on "
            f"{hub_endpoint()}/datasets/{source} and log in (huggingface-cli login)"
        )
