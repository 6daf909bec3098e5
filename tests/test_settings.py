import copy
from dataclasses import fields

import pytest
import yaml

from workflow_scripts.classify import ProbeSettings
from workflow_scripts.settings import SCHEMA_PATH, complete_config, load_schema, sweep_probes

REPO = SCHEMA_PATH.parent


def validated(config: dict) -> dict:
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    validate(config, str(SCHEMA_PATH), set_default=True)
    return config


def test_probe_defaults_agree_between_schema_and_code():
    schema_probe = load_schema()["definitions"]["probe"]["properties"]
    for field in fields(ProbeSettings):
        assert field.name in schema_probe, field.name
        assert schema_probe[field.name]["default"] == field.default, field.name


def test_metric_head_defaults_agree_between_schema_and_code():
    from workflow_scripts.metric_learning import HeadSettings

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
    walk(load_schema()["definitions"]["probe"], "probe.")


def test_shipped_config_is_valid_and_complete():
    config = validated(yaml.safe_load((REPO / "config.yaml").read_text()))
    complete_config(config, load_schema())
    assert config["variants"]["piano"]["tempo_qpm"] is None
    assert all(probe["head"] in ("linear", "mlp") for probe in config["probes"].values())


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"corpus": {"sourse": "music21"}}, "sourse"),
        ({"segmentation": {"window_measures": "four"}}, "window_measures"),
        ({"embedders": ["wav2vec"]}, "wav2vec"),
        ({"probes": {"p": {"normalization": "zscore"}}}, "zscore"),
        ({"embedder_settings": {"mert": {"revision": "main"}}}, "revision"),
        ({"embed": {"gpu_model": "a100 --exclusive"}}, "gpu_model"),
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
