"""Where model weights come from: a local folder, or the Hugging Face cache at a pinned revision.

Embedding jobs never download: they read the cache with ``local_files_only``. The
``fetch_model`` rule (a local rule, run on the submit host) downloads into the cache
first, so compute nodes without internet still find the weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from workflow_scripts.embedders.base import EmbedderError
from workflow_scripts.plumbing.io_utils import sha256_file

# Only what loading needs: configs and weights, never the repository's Python code.
MODEL_FILES = ("config.json", "preprocessor_config.json", "*.safetensors", "pytorch_model.bin")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# What known_files must record as a sha256: the whole digest, never its leading digits.
FULL_SHA256 = re.compile(r"[0-9a-f]{64}")


def fetch_target(name: str) -> str:
    """The fetch rule's output for an entry (rules/common.smk: model_marker), named in error messages."""
    return f"results/models/{name}.json"


def hub_cache_folder(settings: dict[str, Any]) -> str:
    if settings.get("cache_dir"):
        return str(settings["cache_dir"])
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _how_to_get_weights(settings: dict[str, Any], name: str) -> str:
    return (
        f"On a machine with internet, run `snakemake --cores 1 {fetch_target(name)}` (or "
        f"`huggingface-cli download {settings['model_id']} --revision {settings['revision']}`) "
        f"with the same cache ({hub_cache_folder(settings)}; set HF_HOME or embedder_settings.{name}.cache_dir), "
        f"or put the model files in a folder and set embedder_settings.{name}.local_dir. "
        f"Without weights, use the offline embedders: embedders: {offline_embedders()}."
    )


def offline_embedders() -> list[str]:
    """The embedders that need nothing fetched, as their declarations say."""
    from workflow_scripts.embedders.registry import declarations

    return [name for name, item in declarations().items() if item.weights in ("none", "wheel")]


def resolve_model_folder(settings: dict[str, Any], name: str, download: bool = False) -> Path:
    """The folder holding config.json and the weights; downloads only when ``download``."""
    if settings.get("local_dir"):
        folder = Path(settings["local_dir"]).expanduser()
        if not (folder / "config.json").is_file():
            raise EmbedderError(
                f"embedder_settings.{name}.local_dir '{folder}' has no config.json; point it at a folder holding "
                f"{settings.get('model_id') or 'the model'}'s config.json, preprocessor_config.json and weights."
            )
        return folder
    if not settings.get("model_id"):
        raise EmbedderError(
            f"embedder_settings.{name}.model_id is not set: name the Hugging Face model (for example "
            "facebook/wav2vec2-base) and pin its revision, or set local_dir to a folder holding its files."
        )
    if not settings.get("revision"):
        raise EmbedderError(
            f"embedder_settings.{name}.revision is not pinned: set it to the full commit hash of {settings['model_id']} "
            "you mean to use (the model page's 'Files and versions' history lists them), so an upstream change "
            "cannot alter results; or set local_dir."
        )
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
            f"(cache: {hub_cache_folder(settings)}): {type(error).__name__}: {error}. "
            + _how_to_get_weights(settings, name)
        ) from error
    return Path(folder)


def weight_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise EmbedderError(f"{folder} holds no model weights ({' or '.join(WEIGHT_FILES)}).")


def expected_files(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The checksums to hold the files to: those recorded for the pinned revision, none for a
    ``local_dir`` (which overrides model_id and revision, so it holds some other files)."""
    return {} if settings.get("local_dir") else dict(settings.get("known_files") or {})


def check_known_files(files: dict[str, dict[str, Any]], known: dict[str, dict[str, Any]], name: str) -> None:
    """Refuse model files whose size or SHA-256 differs from what the config records.

    ``known`` maps a file name to ``bytes`` and/or ``sha256``, the full 64-digit digest; a recorded
    file the folder lacks is refused too. A shorter ``sha256`` (leading digits) is refused before
    any file is looked at: a prefix pin would accept a different file that shares those digits.
    Every error names the file's value and the recorded one in full.
    """
    short = [
        f"{file_name}: '{expected['sha256']}'"
        for file_name, expected in known.items()
        if expected.get("sha256") is not None and not FULL_SHA256.fullmatch(str(expected["sha256"]))
    ]
    if short:
        raise EmbedderError(
            f"embedder_settings.{name}.known_files records SHA-256 values that are not full digests "
            f"(64 lowercase hex digits): {'; '.join(short)}. Record each file's full SHA-256 (the hub's file "
            "page lists it; or `sha256sum` of a copy you trust), or leave sha256 out and check bytes only."
        )
    problems = []
    for file_name, expected in known.items():
        found = files.get(file_name)
        if found is None:
            problems.append(f"{file_name} is missing (the folder has {sorted(files)})")
            continue
        if expected.get("bytes") is not None and found["bytes"] != expected["bytes"]:
            problems.append(f"{file_name} has {found['bytes']:,} bytes, not the recorded {expected['bytes']:,}")
        if expected.get("sha256") and found["sha256"] != expected["sha256"]:
            problems.append(f"{file_name} has SHA-256 {found['sha256']}, not the recorded {expected['sha256']}")
    if problems:
        raise EmbedderError(
            f"the model files of {name} are not those embedder_settings.{name}.known_files records: "
            + "; ".join(problems)
            + ". Fetch the pinned revision again, or correct revision and known_files together."
        )


def describe_model_folder(folder: Path) -> dict[str, Any]:
    """Checksums of what loading reads, for provenance."""
    files = {}
    for name in ("config.json", "preprocessor_config.json", weight_file(folder).name):
        path = folder / name
        if path.is_file():
            files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return {"folder": os.fspath(folder), "files": files}
