"""Where model weights come from: a local folder, or the Hugging Face cache at a pinned revision.

Embedding jobs never download: they read the cache with ``local_files_only``. The
``fetch_model`` rule (a local rule, run on the submit host) downloads into the cache
first, so compute nodes without internet still find the weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from workflow_scripts.embedders.base import EmbedderError
from workflow_scripts.io_utils import sha256_file

# Only what loading needs: configs and weights, never the repository's Python code.
MODEL_FILES = ("config.json", "preprocessor_config.json", "*.safetensors", "pytorch_model.bin")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# The fetch rule's output (rules/common.smk: model_marker("mert")), named in error messages.
FETCH_TARGET = "results/models/mert.json"


def hub_cache_folder(settings: dict[str, Any]) -> str:
    if settings.get("cache_dir"):
        return str(settings["cache_dir"])
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _how_to_get_weights(settings: dict[str, Any]) -> str:
    return (
        f"On a machine with internet, run `snakemake --cores 1 {FETCH_TARGET}` (or "
        f"`huggingface-cli download {settings['model_id']} --revision {settings['revision']}`) "
        f"with the same cache ({hub_cache_folder(settings)}; set HF_HOME or embedder_settings.mert.cache_dir), "
        "or put the model files in a folder and set embedder_settings.mert.local_dir. "
        "Without weights, use the offline embedder: embedders: [spectral]."
    )


def resolve_model_folder(settings: dict[str, Any], download: bool = False) -> Path:
    """The folder holding config.json and the weights; downloads only when ``download``."""
    if settings.get("local_dir"):
        folder = Path(settings["local_dir"]).expanduser()
        if not (folder / "config.json").is_file():
            raise EmbedderError(
                f"embedder_settings.mert.local_dir '{folder}' has no config.json; point it at a folder holding "
                f"{settings['model_id']}'s config.json, preprocessor_config.json and weights."
            )
        return folder
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            settings["model_id"],
            revision=settings["revision"],
            cache_dir=settings.get("cache_dir") or None,
            allow_patterns=list(MODEL_FILES),
            local_files_only=not download,
        )
    except Exception as error:  # offline, missing from the cache, unknown revision, no network
        verb = "download" if download else "find in the local cache"
        raise EmbedderError(
            f"could not {verb} {settings['model_id']} at revision {settings['revision']} "
            f"(cache: {hub_cache_folder(settings)}): {type(error).__name__}: {error}. " + _how_to_get_weights(settings)
        ) from error
    return Path(folder)


def weight_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise EmbedderError(f"{folder} holds no model weights ({' or '.join(WEIGHT_FILES)}).")


def describe_model_folder(folder: Path) -> dict[str, Any]:
    """Checksums of what loading reads, for provenance."""
    files = {}
    for name in ("config.json", "preprocessor_config.json", weight_file(folder).name):
        path = folder / name
        if path.is_file():
            files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return {"folder": os.fspath(folder), "files": files}


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    from workflow_scripts.io_utils import write_json_atomic
    from workflow_scripts.job_log import job_logger

    logger = job_logger("fetch_model", snakemake.log[0])
    settings = snakemake.params.settings
    folder = resolve_model_folder(settings, download=True)
    record = {"model_id": settings["model_id"], "revision": settings["revision"], **describe_model_folder(folder)}
    logger.info("model files ready: %s", record)
    write_json_atomic(snakemake.output.marker, record)
