import copy
import re
from dataclasses import asdict, fields

import pytest
import yaml

from workflow_scripts.embedders.schema import workflow_schema_file
from workflow_scripts.plumbing.settings import SCHEMA_PATH, complete_config, load_schema, sweep_probes
from workflow_scripts.probes.kinds import probe_kinds, selects_on_validation, settings_from_config

REPO = SCHEMA_PATH.parent


def validated(config: dict) -> dict:
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    validate(config, workflow_schema_file(), set_default=True)
    return config


@pytest.mark.parametrize("kind", sorted(probe_kinds()))
def test_each_probe_kind_and_its_schema_block_agree_field_for_field(kind):
    """The kind's dataclass is what runs; its schema block is what validates and documents it."""
    block = load_schema()["definitions"][f"probe_{kind}"]["properties"]
    settings = probe_kinds()[kind].settings
    assert set(block) == {field.name for field in fields(settings)}
    defaults = asdict(settings())
    for name, spec in block.items():
        assert spec["default"] == (list(defaults[name]) if isinstance(defaults[name], tuple) else defaults[name]), name


def test_the_schema_names_exactly_the_probe_kinds_there_are():
    schema = load_schema()["definitions"]
    assert set(schema["probe"]["properties"]["kind"]["enum"]) == set(probe_kinds())
    dispatched = {branch["then"]["$ref"].rsplit("_", 1)[1] for branch in schema["probe"]["allOf"]}
    assert dispatched == set(probe_kinds())


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"optimizer": "lbfgs"}, {"kind": "neural", "optimizer": "lbfgs", "head": "linear", "epochs": 1000}),
        ({"kind": "logistic"}, {"kind": "logistic", "normalization": "standardize", "max_iter": 1000}),
        ({"kind": "knn", "k_grid": [5, 1]}, {"kind": "knn", "normalization": "none", "k_grid": [5, 1]}),
    ],
)
def test_validation_fills_the_defaults_of_the_probes_own_kind_only(entry, expected):
    config = validated({"probes": {"p": entry}})
    complete_config(config, load_schema())
    probe = config["probes"]["p"]
    assert {name: probe[name] for name in expected} == expected
    assert set(probe) == {field.name for field in fields(probe_kinds()[expected["kind"]].settings)}
    assert settings_from_config(probe).kind == expected["kind"]


def test_metric_head_defaults_agree_between_schema_and_code():
    from workflow_scripts.probes.metric_learning import HeadSettings

    schema_head = load_schema()["properties"]["retrieval"]["properties"]["metric_head"]["properties"]
    assert set(schema_head) == {field.name for field in fields(HeadSettings)}
    for field in fields(HeadSettings):
        assert schema_head[field.name]["default"] == field.default, field.name


def test_every_schema_key_has_a_description_and_a_default():
    def walk(node, path):
        for name, spec in node.get("properties", {}).items():
            assert "description" in spec, f"{path}{name}"
            assert "default" in spec, f"{path}{name}"
            walk(spec, f"{path}{name}.")

    walk(load_schema(), "")
    for kind in probe_kinds():
        walk(load_schema()["definitions"][f"probe_{kind}"], f"probe_{kind}.")


def test_shipped_config_is_valid_and_complete():
    config = validated(yaml.safe_load((REPO / "config.yaml").read_text()))
    complete_config(config, load_schema())
    assert config["variants"]["piano"]["tempo_qpm"] is None
    assert all(settings_from_config(probe) for probe in config["probes"].values())


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"corpus": {"sourse": "music21"}}, "sourse"),
        ({"segmentation": {"window_measures": "four"}}, "window_measures"),
        ({"embedders": ["wav2vec"]}, "wav2vec"),
        ({"probes": {"p": {"normalization": "zscore"}}}, "zscore"),
        ({"probes": {"p": {"kind": "svm"}}}, "svm"),
        ({"probes": {"p": {"kind": "knn", "epochs": 10}}}, "epochs"),  # a neural setting on another kind
        ({"probes": {"p": {"kind": "logistic", "l2_grid": [0.0]}}}, "l2_grid"),
        ({"embedder_settings": {"mert": {"revision": "main"}}}, "revision"),
        ({"embed": {"gpu_model": "a100"}}, "gpu_model"),  # moved to stage_resources.gpu_jobs
        ({"stage_resources": {"embedding": {"slurm_partition": "gpu"}}}, "embedding"),
        ({"stage_resources": {"embed": {"gpu": 2}}}, "gpu"),
        ({"stage_resources": {"classify": {"gpu_model": "a100"}}}, "gpu_model"),  # would give classify a GPU
        ({"stage_resources": {"gpu_jobs": {"gpu_model": "a100 --exclusive"}}}, "a100 --exclusive"),
        ({"stage_resources": {"render": {"mem": "8G"}}}, "mem"),
        ({"stage_resources": {"gpu_jobs": {"slurm_extra": "--qos=a\n#SBATCH --exclusive"}}}, "qos"),
    ],
)
def test_invalid_config_is_rejected_naming_the_key(change, named):
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError, match=named):
        validated(change)


def test_sweep_expands_to_one_probe_per_combination():
    probes = sweep_probes({"base": {"optimizer": "adam"}, "grid": {"head": ["linear", "mlp"], "layer": [0, "mean"]}})
    assert len(probes) == 4
    assert probes["sweep__head-mlp__layer-0"] == {"optimizer": "adam", "head": "mlp", "layer": 0}
    assert sweep_probes({}) == {}


def test_sweep_over_an_unknown_field_is_refused():
    config = validated({"sweep": {"grid": {"hiden_units": [1, 2]}}})
    with pytest.raises(ValueError, match="hiden_units"):
        complete_config(config, load_schema())


def test_a_hop_longer_than_the_window_is_refused():
    config = validated({"segmentation": {"window_measures": 4, "hop_measures": 6}})
    with pytest.raises(ValueError, match="hop_measures \\(6\\) is larger"):
        complete_config(config, load_schema())


REPORT_PROTOCOLS = {
    "b_guarded": ["configs/report.yaml"],
    "c_no_guard": ["configs/report.yaml", "configs/report_no_guard.yaml"],
    "d_no_guard_analyses": ["configs/report.yaml", "configs/report_no_guard.yaml", "configs/report_analyses.yaml"],
}


def merged_config(overlays: list[str]) -> dict:
    """config.yaml with the overlay files on top, merged as Snakemake merges --configfile files."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in overlays:
        update_config(config, yaml.safe_load((REPO / overlay).read_text()))
    return config


@pytest.mark.parametrize("protocol", sorted(REPORT_PROTOCOLS))
def test_report_protocol_configs_are_valid(protocol):
    config = validated(merged_config(REPORT_PROTOCOLS[protocol]))
    complete_config(config, load_schema())
    assert config["segmentation"] == {"window_measures": 4, "hop_measures": 2}
    assert config["splits"]["names"] == ["by_snippet"] and config["splits"]["validation_fraction"] == 0
    assert config["splits"]["overlap_guard"] is (protocol == "b_guarded")
    assert config["corpus"]["analyses_as_pieces"] is (protocol == "d_no_guard_analyses")
    # No probe may wait for a validation part the protocol does not carve out.
    assert not any(selects_on_validation(probe) for probe in config["probes"].values())
    assert {"linear_adam", "linear_adam_l2"} <= set(config["probes"])


@pytest.mark.parametrize(("protocol", "render_batches"), [("b_guarded", 26), ("d_no_guard_analyses", 27)])
def test_report_protocol_plans_with_a_dry_run(tmp_path, protocol, render_batches):
    import shutil
    import subprocess
    import sys

    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--quiet",
        "rules",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config.yaml"),
        *[str(REPO / overlay) for overlay in REPORT_PROTOCOLS[protocol]],
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    jobs = {
        line.split()[0]: int(line.split()[1])
        for line in completed.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    render_jobs = sum(count for rule, count in jobs.items() if rule.startswith("render_"))
    assert render_jobs == render_batches  # 410 or 430 pieces
    config = merged_config(REPORT_PROTOCOLS[protocol])
    assert (
        jobs.get("classify", 0) + jobs.get("classify_iterative", 0) == 3 * len(config["embedders"])
        and jobs["split"] == 1
        and "retrieval" not in jobs
    )


RULE_HEADER = re.compile(r"^\s*(?:local)?rule (\w+):$")


def planned_resources(dry_run_output: str) -> dict[str, str]:
    """rule name -> its ``resources:`` line, from a dry run's job list."""
    found, rule = {}, None
    for line in dry_run_output.splitlines():
        header = RULE_HEADER.match(line)
        if header:
            rule = header.group(1)
        elif line.strip().startswith("resources:") and rule:
            found[rule] = line.strip()
    return found


def test_stage_resources_reach_every_job_of_a_stage_generated_batches_included(tmp_path):
    # Render and embed rules are generated per batch, so no --set-resources can address the
    # stage; the config's stage_resources is the way (docs/cluster.md).
    from workflow_runner import make_project, snakemake

    project = make_project(
        tmp_path / "project",
        {
            "embedders": ["spectral", "mert"],
            "stage_resources": {
                "render": {"slurm_partition": "cpu"},
                "embed": {"slurm_partition": "cpu"},
                "classify": {"slurm_partition": "cpu", "mem_mb": 6000},
                "gpu_jobs": {"slurm_partition": "gpu", "gpu_model": "a100"},
            },
        },
    )
    resources = planned_resources(snakemake(project, "-n", "--cores", "8").stdout)
    render = [rule for rule in resources if rule.startswith("render_")]
    spectral = [rule for rule in resources if rule.startswith("embed_spectral_")]
    mert = [rule for rule in resources if rule.startswith("embed_mert_")]
    assert len(render) == 2 and len(spectral) == 2 and len(mert) == 1, sorted(resources)
    for rule in render + spectral:
        assert "slurm_partition=cpu" in resources[rule] and "gpu_model" not in resources[rule], resources[rule]
    assert "slurm_partition=gpu" in resources[mert[0]] and "gpu_model=a100" in resources[mert[0]]
    assert "gpu=1" in resources[mert[0]] and "mem_mb=8000" in resources[mert[0]]
    assert "slurm_partition=cpu" in resources["classify"] and "mem_mb=6000" in resources["classify"]
    assert "slurm_partition" not in resources["retrieval"] and "mem_mb=4000" in resources["retrieval"]


def test_stage_resources_names_exactly_the_stages_whose_rules_take_them():
    rules_text = "".join(path.read_text() for path in (REPO / "rules").glob("*.smk"))
    taking = set(re.findall(r'job_resources\(\s*"(\w+)"', rules_text))
    assert set(load_schema()["properties"]["stage_resources"]["properties"]) == taking | {"gpu_jobs"}


def test_probe_kinds_load_at_dag_build_without_torch_or_scikit_learn():
    """The registry imports every kind at each Snakemake start; torch or scikit-learn there costs seconds."""
    import subprocess
    import sys

    code = (
        "import sys; from workflow_scripts.probes.kinds import probe_kinds; probe_kinds(); "
        "print(sorted({'torch', 'sklearn'} & {name.split('.')[0] for name in sys.modules}))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert completed.stdout.strip() == "[]", completed.stdout + completed.stderr
