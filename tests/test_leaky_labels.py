"""A leaky figure (a by-snippet split without the overlap guard) is labelled as such in
metrics.json, summary.tsv and every table of the report."""

import pandas as pd

from workflow_scripts.stages.classify import leak_labels
from workflow_scripts.stages.report import LEAKY_MARK, leaky_warning, marked_probe_names, published_section
from workflow_scripts.stages.summary import summarise


def probe_metrics(probe: str, split_settings: dict) -> dict:
    return {
        **leak_labels(split_settings),
        "top1": 0.5,
        "top5": 0.7,
        "top1_ci95": [0.4, 0.6],
        "top5_ci95": [0.6, 0.8],
        "ci95_resampling": "pieces: every test snippet of a resampled piece together (cluster bootstrap)",
        "train_snippets": 10,
        "validation_snippets": 0,
        "test_snippets": 5,
        "train_top1": 1.0,
        "probe": {"head": "linear", "optimizer": "adam", "normalization": "none"},
        "provenance": {
            "wildcards": {"embedder": "spectral", "variant": "piano", "split": "by_snippet", "probe": probe}
        },
    }


def test_metrics_summary_and_report_mark_leaky_rows(tmp_path):
    import json

    paths = []
    for probe, guard in (("guarded", True), ("unguarded", False)):
        metrics = probe_metrics(probe, {"split": "by_snippet", "overlap_guard": guard})
        assert metrics["overlap_guard"] is guard and metrics["leaky"] is (not guard)
        paths.append(tmp_path / f"{probe}.json")
        paths[-1].write_text(json.dumps(metrics))
    summary = summarise(paths)
    summary.to_csv(tmp_path / "summary.tsv", sep="\t", index=False)
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t")  # as the report reads it
    assert summary.set_index("probe").leaky.to_dict() == {"guarded": False, "unguarded": True}
    assert (summary.ci95_resampling == "pieces").all()
    assert marked_probe_names(summary).tolist() == ["guarded", "unguarded" + LEAKY_MARK]
    assert "1 row(s) are leaky" in leaky_warning(summary)
    leaky_adam = summary.assign(probe="linear_adam")
    assert LEAKY_MARK in published_section(leaky_adam)


def test_metrics_from_before_the_option_are_not_leaky():
    assert leak_labels({"split": "by_snippet", "test_fraction": 0.2}) == {"overlap_guard": True, "leaky": False}
    assert leaky_warning(pd.DataFrame({"probe": ["p"], "leaky": [False]})) == ""
