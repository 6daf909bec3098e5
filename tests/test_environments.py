"""The declared environments match the code: conda env per rule, pyproject, lint."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from workflow_runner import REPO_ROOT

from workflow_scripts.embedders.registry import built_in_implementations, stage_code_digest, stage_modules
from workflow_scripts.plumbing.code_graph import (
    imported_names,
    module_digest,
    module_path,
    third_party_imports,
    workflow_closure,
)
from workflow_scripts.plumbing.provenance import ENVIRONMENT_LOCK, TORCH_PIN, normalized_name, pinned_versions

# conda-forge names that differ from the PyPI distribution's (as in scripts/pin_conda_envs.py).
CONDA_NAME = {"torch": "pytorch", "soundfile": "pysoundfile"}
# conda packages that are no PyPI distribution: the interpreter and FluidSynth's C library.
NOT_ON_PYPI = {"python", "fluidsynth"}
RULE_START = re.compile(r"^\s*rule\b", re.MULTILINE)
WORKFLOW_IMPORT = re.compile(
    r"^\s*from (workflow_scripts[\w.]*) import|^\s*import (workflow_scripts[\w.]*)", re.MULTILINE
)


@functools.cache
def _installed_distributions() -> dict[str, list[str]]:
    return packages_distributions()


@functools.cache
def distribution_of(import_name: str) -> str:
    distributions = _installed_distributions().get(import_name)
    assert distributions, f"no installed distribution provides `import {import_name}`"
    return distributions[0].lower().replace("_", "-")


def conda_dependencies(env_file: Path) -> set[str]:
    dependencies = yaml.safe_load(env_file.read_text())["dependencies"]
    return {
        re.split(r"[<>=! ]", entry)[0].lower().replace("_", "-") for entry in dependencies if isinstance(entry, str)
    }


def workflow_modules_of_text(text: str) -> list[str]:
    """The workflow modules that a file's text imports."""
    return sorted({match.group(1) or match.group(2) for match in WORKFLOW_IMPORT.finditer(text)})


def third_party_of_text(text: str) -> set[str]:
    """Third-party imports of the workflow modules that a file's text imports."""
    found: set[str] = set()
    for module in workflow_modules_of_text(text):
        if module_path(module) is not None:
            found |= third_party_imports(module)
    return found


def workflow_definition_text() -> str:
    """The Snakefile and every rules/*.smk: what Snakemake parses at each start."""
    return "\n".join(path.read_text() for path in [REPO_ROOT / "Snakefile", *(REPO_ROOT / "rules").glob("*.smk")])


def rule_blocks() -> list[tuple[str, str]]:
    """(file, text of one rule definition) for every rule of every .smk file."""
    blocks = []
    for smk in sorted((REPO_ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [match.start() for match in RULE_START.finditer(text)] + [len(text)]
        blocks += [(smk.name, text[start:end]) for start, end in zip(starts, starts[1:])]
    return blocks


STAGE_PARAM = re.compile(r'stage="(\w+)"')
RUN_STAGE = "workflow_scripts/run_stage.py"


def stage_rules() -> list[tuple[str, str, str]]:
    """(file, rule text, stage) for every rule that runs a stage through run_stage.py."""
    found = []
    for smk, block in rule_blocks():
        if "script:" not in block:
            continue
        assert f'"../{RUN_STAGE}"' in block, f"a rule in rules/{smk} runs another script than {RUN_STAGE}"
        stage = STAGE_PARAM.search(block)
        assert stage, f"a rule in rules/{smk} runs {RUN_STAGE} without naming its stage in params"
        found.append((smk, block, stage.group(1)))
    assert len(found) == sum(path.read_text().count("script:") for path in (REPO_ROOT / "rules").glob("*.smk"))
    return found


def stage_third_party_imports(stage: str) -> set[str]:
    """What a stage imports; a stage that reaches the embedders' registry runs whichever
    implementation its embedder declares (imported by name, which the walk cannot follow)."""
    module = f"workflow_scripts.stages.{stage}"
    needed = third_party_imports(module)
    if "workflow_scripts.embedders.registry" in workflow_closure(module):
        needed |= set().union(*(third_party_imports(item) for item in built_in_implementations()))
    return needed


def test_every_rule_with_code_has_a_conda_env_that_declares_its_imports():
    for smk, block, stage in stage_rules():
        conda = re.search(r'conda:\s*"\.\./(envs/[\w-]+\.yaml)"', block)
        assert conda, f"the {stage} rule in rules/{smk} declares no conda env"
        declared = conda_dependencies(REPO_ROOT / conda.group(1))
        needed = third_party_of_text((REPO_ROOT / RUN_STAGE).read_text())
        needed |= stage_third_party_imports(stage)
        missing = {
            name for name in needed if CONDA_NAME.get(distribution_of(name), distribution_of(name)) not in declared
        }
        assert not missing, f"{conda.group(1)} lacks {sorted(missing)}, imported by stage {stage} (rules/{smk})"


def test_the_workflow_env_declares_what_the_snakefile_imports():
    needed = third_party_of_text(workflow_definition_text())
    declared = conda_dependencies(REPO_ROOT / "envs/workflow.yaml")
    missing = {name for name in needed if CONDA_NAME.get(distribution_of(name), distribution_of(name)) not in declared}
    assert not missing, f"envs/workflow.yaml lacks {sorted(missing)}"


def test_every_conda_env_pins_the_versions_of_the_lock():
    # A rule run with --use-conda must compute with the versions the .venv has (bootstrap.sh
    # installs the lock); scripts/lock.sh re-pins the envs with scripts/pin_conda_envs.py.
    locked = pinned_versions(ENVIRONMENT_LOCK) | pinned_versions(TORCH_PIN)
    pypi_name = {conda: pypi for pypi, conda in CONDA_NAME.items()}
    for env_file in sorted((REPO_ROOT / "envs").glob("*.yaml")):
        for entry in yaml.safe_load(env_file.read_text())["dependencies"]:
            name, spec = re.fullmatch(r"([A-Za-z0-9][\w.-]*)\s*(.*)", entry).groups()
            if name in NOT_ON_PYPI:
                continue
            pypi = normalized_name(pypi_name.get(name, name))
            where = f"envs/{env_file.name}: '{entry}'"
            assert pypi in locked, f"{where} is not locked: add it to pyproject.toml, run bash scripts/lock.sh"
            assert spec == f"=={locked[pypi]}", f"{where}, but the lock pins {locked[pypi]}: run pin_conda_envs.py"


# Every Snakemake start (a dry run, a no-op rerun, each cluster job) parses the Snakefile:
# these would add seconds to each (torch alone ~2.5 s, transformers ~7 s).
HEAVY_AT_PARSE_TIME = (
    "torch",
    "transformers",
    "music21",
    "sklearn",
    "matplotlib",
    "soundfile",
    "fluidsynth",
    "onnxruntime",
)


def test_parsing_the_workflow_imports_no_heavy_package():
    modules = workflow_modules_of_text(workflow_definition_text())
    assert modules, "no workflow module imported by the Snakefile: the pattern no longer matches"
    probe = "import importlib, sys\n" + "".join(f"importlib.import_module({module!r})\n" for module in modules)
    # Reading the embedders' declarations imports every embedder module: their heavy imports
    # must stay inside functions.
    probe += "from workflow_scripts.embedders.registry import declarations\n"
    probe += "from workflow_scripts.embedders.schema import workflow_schema_file\n"
    probe += "declarations(); workflow_schema_file()\n"
    probe += f"print(sorted(name for name in {HEAVY_AT_PARSE_TIME!r} if name in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]", (
        f"the Snakefile's imports ({modules}) load {loaded.strip()}: move that import into the job's module"
    )


def test_pyproject_declares_every_third_party_import():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        re.split(r"[<>=!~\[ ;]", requirement)[0].lower().replace("_", "-") for requirement in project["dependencies"]
    }
    modules = {
        f"workflow_scripts.{path.relative_to(REPO_ROOT / 'workflow_scripts').with_suffix('').as_posix().replace('/', '.')}"
        for path in (REPO_ROOT / "workflow_scripts").rglob("*.py")
        if path.name not in ("__init__.py", "run_stage.py")
    }
    needed = set().union(*(third_party_imports(module) for module in modules))
    missing = {name for name in needed if distribution_of(name) not in declared}
    assert not missing, f"pyproject.toml's dependencies lack {sorted(missing)}"


def test_the_import_walk_follows_lazy_imports_inside_functions():
    # The MERT embedder imports torch and transformers inside its functions; the walk must see them.
    assert {"torch", "transformers"} <= third_party_imports("workflow_scripts.embedders.mert")
    assert "workflow_scripts.embedders.weights" in workflow_closure("workflow_scripts.embedders.mert")
    assert {"torch", "transformers", "onnxruntime"} <= stage_third_party_imports("embed")
    assert "music21" not in stage_third_party_imports("embed")


def test_a_stage_cache_key_covers_its_own_code_only():
    # Editing the report or a probe must not re-render or re-embed every piece.
    for stage in ("workflow_scripts.stages.render", "workflow_scripts.stages.embed"):
        assert not {"workflow_scripts.stages.report", "workflow_scripts.stages.classify"} & workflow_closure(stage)
    assert "workflow_scripts.music.segment" in workflow_closure("workflow_scripts.stages.render")
    assert module_digest("workflow_scripts.stages.render") != module_digest("workflow_scripts.stages.embed")


def test_a_digest_covers_the_embedders_implementations_a_stage_runs_and_no_other():
    # Editing mert.py must not rerun the spectral embed jobs (nor invalidate their cached
    # pieces), nor fetch_model when spectral.py changes.
    spectral = stage_modules("embed", "spectral")
    assert {"workflow_scripts.embedders.spectral", "workflow_scripts.embedders.base"} <= spectral
    assert not {"workflow_scripts.embedders.mert", "workflow_scripts.embedders.weights"} & spectral
    assert "workflow_scripts.embedders.posteriorgram" in stage_modules("embed", "pianoroll")
    assert "workflow_scripts.embedders.weights" in stage_modules("fetch_model")
    assert not built_in_implementations() & stage_modules("fetch_model")
    assert len({stage_code_digest("embed", name) for name in ("spectral", "basic_pitch", "pianoroll", "mert")}) == 4
    assert stage_code_digest("embed", "mert") == stage_code_digest("embed", "hubert_base")  # one module
    # The classify stage finds its probe kinds at run time: rules/common.smk's classify_code_digest
    # adds them to the stage's modules. No probe code is behind the render or embed results.
    from workflow_scripts.probes.kinds import kinds_code_modules

    kinds = {f"workflow_scripts.probes.kinds.{kind}" for kind in ("neural", "logistic", "knn")}
    assert kinds <= kinds_code_modules() and not kinds & stage_modules("classify")
    for stage, embedder in (("render", None), ("embed", "spectral"), ("embed", "mert")):
        assert not {module for module in stage_modules(stage, embedder) if module.startswith("workflow_scripts.probes")}
    # An implementation importing another (not through the package's lazy build_embedder)
    # would be left out of its digest: none does.
    for module in built_in_implementations():
        for reached in workflow_closure(module, built_in_implementations() - {module}) - {"workflow_scripts.embedders"}:
            assert not (imported_names(module_path(reached)) & built_in_implementations()) - {module}, (module, reached)


def test_the_import_walk_reads_every_import_form(tmp_path):
    module = tmp_path / "forms.py"
    module.write_text(
        "import os, json as j\n"
        "from a.b import (\n    c,\n    d as e,  # why\n)\n"
        "def lazy():\n    from f import g; import h\n"
        "from . import relative\n"
        '"""import is a word in prose, too"""\n'
    )
    assert imported_names(module) == {"os", "json", "a.b", "a.b.c", "a.b.d", "f", "f.g", "h"}


def test_every_stage_rule_reruns_when_the_code_behind_it_changes():
    # Snakemake watches a rule's script file (run_stage.py) only; the digest of the stage's
    # modules in params makes an edit to workflow_scripts/stages/<stage>.py rerun the stage.
    stages = set()
    for smk, block, stage in stage_rules():
        # classify adds the probe kinds and poolings it finds at run time (workflow_scripts/probes/kinds/,
        # workflow_scripts/pooling/), retrieval the poolings: rules/common.smk's <stage>_code_digest.
        found_at_run_time = {"classify", "retrieval"}
        digest = (
            rf"{stage}_code_digest\(\)"
            if stage in found_at_run_time
            else rf'stage_code_digest\("{stage}"(, embedder)?\)'
        )
        assert re.search(rf"code={digest}", block), f"{stage} in rules/{smk}: no code digest"
        module = module_path(f"workflow_scripts.stages.{stage}")
        assert module is not None, f"rules/{smk} names stage {stage}, but there is no stages/{stage}.py"
        assert "\ndef main(snakemake)" in module.read_text(), f"stages/{stage}.py has no main(snakemake)"
        stages.add(stage)
    modules = {path.stem for path in (REPO_ROOT / "workflow_scripts/stages").glob("[!_]*.py")}
    assert stages == modules, f"stage modules no rule runs: {sorted(modules - stages)}"
    assert "workflow_scripts.stages.split" in workflow_closure("workflow_scripts.stages.transfer_split")
    from workflow_scripts.pooling import pooling_code_modules

    assert "workflow_scripts.pooling.sequence" in pooling_code_modules()


@pytest.mark.workflow
def test_snakemake_lint_is_clean():
    completed = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Congratulations, your workflow is in a good condition!" in output, output
