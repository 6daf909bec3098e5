"""The embedder contract: each embedder declares itself once, and one from another package
plugs in through the ``chorale_id.embedders`` entry-point group with no file of this repository."""

from __future__ import annotations

import ast
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_settings import validated
from workflow_runner import REPO_ROOT, make_project, planned_jobs, snakemake

from workflow_scripts.embedders import DeclarationError, EmbedderDeclaration, build_embedder
from workflow_scripts.embedders.registry import (
    _collect,
    built_in_declarations,
    declarations,
    needs_gpu,
    needs_weights,
    stage_code_digest,
)
from workflow_scripts.embedders.schema import workflow_schema
from workflow_scripts.embedders.spectral import SpectralEmbedder
from workflow_scripts.plumbing.io_utils import read_provenance


def test_the_built_in_embedders_declare_what_the_workflow_asks_of_them():
    found = built_in_declarations()
    assert {"spectral", "basic_pitch", "pianoroll", "mert", "mert_330m", "mert_v0", "music2vec", "hubert_base"} <= set(
        found
    )
    assert not needs_gpu("spectral") and needs_gpu("mert")
    assert needs_weights("mert") and not needs_weights("basic_pitch")  # its model file is inside its wheel
    assert found["basic_pitch"].weights == "wheel" and found["pianoroll"].weights == "none"
    assert "onnxruntime" in found["basic_pitch"].packages and "torch" in found["mert"].packages
    assert found["mert"].runtime_limit(1000) == 40 and found["spectral"].runtime_limit(32) == 79


def test_the_schema_embedder_part_is_the_declarations():
    schema = workflow_schema()
    assert schema["properties"]["embedders"]["items"]["enum"][:3] == ["basic_pitch", "pianoroll", "spectral"]
    blocks = schema["properties"]["embedder_settings"]["properties"]
    assert set(blocks) == set(declarations())
    for name, item in declarations().items():
        assert blocks[name]["properties"] == item.settings and blocks[name]["additionalProperties"] is False
    assert blocks["mert"]["properties"]["revision"]["default"] == "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5"


def test_validation_fills_each_declared_setting_and_refuses_what_is_not_declared():
    from snakemake.exceptions import WorkflowError

    filled = validated({"embedders": ["spectral"], "embedder_settings": {"spectral": {"n_mels": 32}}})
    assert filled["embedder_settings"]["spectral"] == {
        "n_fft": 2048,
        "hop_length": 480,
        "n_mels": 32,
        "fmin": 30.0,
        "fmax": 8000.0,
    }
    with pytest.raises(WorkflowError, match="'wav2vec' is not one of"):
        validated({"embedders": ["wav2vec"]})
    with pytest.raises(WorkflowError, match="'n_bands' was unexpected"):
        validated({"embedder_settings": {"spectral": {"n_bands": 3}}})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Band-Energy"}, "name must match"),
        ({"weights": "cloud"}, "weights 'cloud' is not one of"),
        ({"settings": {"bands": {"type": "integer", "default": 4}}}, "setting 'bands' lacks description"),
        ({"settings": {"sample_rate": {"type": "integer", "default": 1, "description": "x"}}}, "the render rate"),
        ({"embedder": object}, "embedder must be an Embedder subclass"),
    ],
)
def test_a_malformed_declaration_is_refused_naming_the_embedder_and_field(fields, message):
    with pytest.raises(DeclarationError, match=message) as caught:
        EmbedderDeclaration(**{"name": "band_energy", "embedder": SpectralEmbedder, "description": "d", **fields})
    assert "embedder declaration" in str(caught.value)


def test_a_name_declared_twice_is_refused_naming_both_origins():
    one = EmbedderDeclaration(name="spectral", embedder=SpectralEmbedder, description="another spectral")
    with pytest.raises(DeclarationError, match="declared twice: by module a and by entry point b"):
        _collect([("module a", [built_in_declarations()["spectral"]]), ("entry point b", one)])
    with pytest.raises(DeclarationError, match="must be a module with DECLARATIONS"):
        _collect([("entry point c", object())])


def test_an_unknown_embedder_is_refused_with_the_known_names():
    with pytest.raises(Exception, match=r"unknown embedder 'wav2vec'; choose one of \[.*'spectral'"):
        build_embedder("wav2vec", {})


def embedder_names_in_strings(path: Path, names: set[str]) -> set[str]:
    """Built-in embedder names written in a file's code: string constants other than docstrings
    (Python), or quoted words (Snakemake rules). Comments and docstrings may mention them."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        return {name for name in names if re.search(rf"[\"']{name}[\"']", text)}
    tree = ast.parse(text)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]
    return {name for name in names for value in strings if re.search(rf"(?<![\w./-]){name}(?!\w)", value)}


def test_each_built_in_embedder_is_named_in_exactly_one_module_of_the_workflow():
    """Outside tests, docs and config files (and the benchmarks' and scripts' defaults), the
    workflow's code names each built-in embedder only in its own module."""
    names = set(built_in_declarations())
    where: dict[str, set[str]] = {name: set() for name in names}
    sources = [
        *(REPO_ROOT / "workflow_scripts").rglob("*.py"),
        REPO_ROOT / "Snakefile",
        *(REPO_ROOT / "rules").glob("*.smk"),
    ]
    for path in sources:
        for name in embedder_names_in_strings(path, names):
            where[name].add(path.relative_to(REPO_ROOT).as_posix())
    for name, item in built_in_declarations().items():
        assert where[name] == {item.module.replace(".", "/") + ".py"}, (name, where[name])


# ---- an embedder from another package ------------------------------------------------------
PLUGIN_MODULE = '''
"""band_energy: log energy in log-spaced frequency bands, mean and standard deviation over frames.
A throwaway embedder package, built by tests/test_embedder_plugins.py."""
import numpy as np

from workflow_scripts.embedders import Embedder, EmbedderDeclaration


class BandEnergy(Embedder):
    name = "band_energy"
    batch_size = 16

    def __init__(self, settings):
        self.sample_rate = int(settings["sample_rate"])
        self.bands = int(settings["bands"])
        edges = np.geomspace(50.0, self.sample_rate / 2, self.bands + 1)
        self.frequencies = np.fft.rfftfreq(1024, 1 / self.sample_rate)
        self.band_of_bin = np.clip(np.searchsorted(edges, self.frequencies) - 1, -1, self.bands)

    def describe(self):
        return {"name": self.name, "model_id": "band-energy-test-plugin", "revision": "1", "layers": 1,
                "dim": 2 * self.bands, "sample_rate": self.sample_rate, "settings": {"bands": self.bands}}

    def _vector(self, clip):
        clip = np.pad(clip, (0, max(0, 1024 - clip.size)))
        frames = np.lib.stride_tricks.sliding_window_view(clip, 1024)[::512] * np.hanning(1024)
        power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
        bands = np.stack([power[:, self.band_of_bin == band].sum(axis=1) for band in range(self.bands)], axis=1)
        log_energy = np.log10(bands + 1e-10)
        return np.concatenate([log_energy.mean(axis=0), log_energy.std(axis=0)])

    def embed(self, clips):
        return np.stack([self._vector(clip) for clip in clips]).astype(np.float32)[:, None, :]


DECLARATIONS = [
    EmbedderDeclaration(
        name="band_energy",
        embedder=BandEnergy,
        description="Log band energies (a test plug-in).",
        settings={"bands": {"type": "integer", "minimum": 2, "default": 12, "description": "Frequency bands."}},
        packages=("numpy",),
        runtime_minutes=(5, 1),
    )
]
'''


def install_plugin(folder: Path) -> Path:
    """A package importable from ``folder`` whose distribution registers the entry point."""
    (folder / "band_energy_plugin").mkdir(parents=True)
    (folder / "band_energy_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN_MODULE), encoding="utf-8")
    info = folder / "band_energy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: band-energy-plugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "top_level.txt").write_text("band_energy_plugin\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[chorale_id.embedders]\nband_energy = band_energy_plugin\n", encoding="utf-8"
    )
    return folder


def test_an_embedder_from_another_package_runs_the_workflow_end_to_end(tmp_path):
    """Nothing in the repository changes: the package is on PYTHONPATH, the config names it."""
    plugin = install_plugin(tmp_path / "site")
    project = make_project(
        tmp_path / "project",
        {
            "embedders": ["band_energy"],
            "embedder_settings": {"band_energy": {"bands": 10}},
            "probes": {"linear_lbfgs_std": {"kind": "logistic"}},
            "sweep": {"grid": {}},
            "retrieval": {"metric_head": {"epochs": 20}},
        },
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin), os.environ.get("PYTHONPATH")]))}
    snakemake(project, "--cores", "2", env=env)
    results = project / "results"
    provenance = read_provenance(results / "embeddings/band_energy/piano/bwv2.6.parquet")
    assert provenance["embedder"]["model_id"] == "band-energy-test-plugin" and provenance["embedder"]["dim"] == 20
    assert provenance["libraries"] == {"numpy": np.__version__}
    summary = pd.read_csv(results / "summary.tsv", sep="\t")
    assert set(summary.embedder) == {"band_energy"} and (results / "report/index.html").is_file()
    assert planned_jobs(project, env) == {}
    # Editing the plug-in's code reruns its embed jobs, as an edit of a built-in module would.
    module = plugin / "band_energy_plugin" / "__init__.py"
    module.write_text(module.read_text() + "\n# edited\n", encoding="utf-8")
    assert any(rule.startswith("embed_band_energy") for rule in planned_jobs(project, env))


def test_a_plugin_name_unknown_without_its_package_is_refused_at_start(tmp_path):
    project = make_project(tmp_path / "project", {"embedders": ["band_energy"]})
    completed = snakemake(project, "--dry-run", check=False)
    assert completed.returncode != 0 and "'band_energy' is not one of" in completed.stderr + completed.stdout
    assert stage_code_digest("embed", "spectral")  # the registry itself is unaffected


def test_a_plugin_that_cannot_be_loaded_is_named_with_its_error(tmp_path, monkeypatch):
    from workflow_scripts.embedders.registry import _from_entry_points

    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[chorale_id.embedders]\nbroken = no_such_module\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        DeclarationError, match=r"entry point 'broken = no_such_module' of broken-plugin .* ModuleNotFound"
    ):
        _from_entry_points()
