"""A corpus that cannot be split says so once, by name, and the run still ends in its report.

Unit tests of the checks on real splits (workflow_scripts/stages/split.py) of small corpora,
and, marked ``workflow``, the real workflow on one good chorale plus two broken files."""

from __future__ import annotations

import html
import json

import pandas as pd
import pytest
import yaml
from workflow_runner import make_project, planned_jobs, snakemake, write_config

from workflow_scripts.probes.kinds.neural import NeuralSettings
from workflow_scripts.probes.preconditions import (
    catalog_counts,
    failed_preconditions,
    precondition_record,
    refusal,
    run_end_messages,
    run_message,
    split_counts,
)
from workflow_scripts.stages.classify import not_run_metrics, probe_uses
from workflow_scripts.stages.report import headline_table
from workflow_scripts.stages.split import make_split
from workflow_scripts.stages.summary import summary_row

SPLIT_SETTINGS = {"test_fraction": 0.2, "validation_fraction": 0.15, "seed": 0, "overlap_guard": True}


def snippets_of(pieces: dict[str, int]) -> pd.DataFrame:
    """Non-overlapping 4-measure snippets, ``count`` per piece."""
    rows = [
        {
            "snippet_id": f"{piece}:{index:03d}",
            "piece_id": piece,
            "snippet_index": index,
            "first_measure": 4 * index,
            "stop_measure": 4 * index + 4,
        }
        for piece, count in pieces.items()
        for index in range(count)
    ]
    return pd.DataFrame(rows)


def catalog_of(pieces: dict[str, int], excluded: dict[str, str]) -> pd.DataFrame:
    rows = [
        {"piece_id": p, "status": "ok", "reason": "", "snippets": str(n), "source": f"{p}.mxl"}
        for p, n in pieces.items()
    ]
    rows += [
        {"piece_id": p, "status": "excluded", "reason": r, "snippets": "", "source": f"{p}.mxl"}
        for p, r in excluded.items()
    ]
    return pd.DataFrame(rows)


def record_for(pieces: dict[str, int], excluded: dict[str, str] | None = None, settings=SPLIT_SETTINGS) -> dict:
    snippets = snippets_of(pieces)
    assignments = {split: make_split(split, snippets, settings) for split in ("by_snippet", "by_piece")}
    catalogs = {"results/corpus/piano/catalog.tsv": catalog_of(pieces, excluded or {})}
    return precondition_record("piano", assignments, catalogs, geometry=True)


def test_one_piece_left_fails_every_use_and_the_message_names_counts_and_files():
    record = record_for({"bwv2.6": 3}, {"unreadable": "music21 could not parse the file", "empty": "no notes"})
    message = run_message(record, early_stopping_probes=["sweep__head-mlp"], metric_head=True)
    assert "1 piece(s) left after exclusions, 2 excluded" in message
    assert "unreadable (music21 could not parse the file)" in message and "empty (no notes)" in message
    assert "results/corpus/piano/catalog.tsv" in message
    assert "1 piece(s) left to train on (a classifier needs at least 2" in message
    assert "No retrieval on by_piece: 0 held-out piece(s)" in message
    assert "No geometry figures: 1 piece(s) (no different-piece pairs" in message
    # One message for the variant: the excluded files and the remedies are named once.
    assert message.count("2 excluded") == 1 and message.count("What to do:") == 1
    probe = NeuralSettings()
    assert refusal(record, "by_snippet", probe_uses(probe)).startswith("piano: 1 piece(s) left")


def test_an_empty_validation_share_refuses_only_probes_that_stop_early():
    # Two snippets per piece: one goes to test, the last training snippet never to validation.
    record = record_for({f"p{index}": 2 for index in range(6)})
    counts = record["checks"]["by_snippet"]["counts"]
    assert counts["validation_snippets"] == 0 and counts["test_snippets"] == 6
    assert refusal(record, "by_snippet", probe_uses(NeuralSettings(optimizer="lbfgs"))) is None
    stopping = refusal(record, "by_snippet", probe_uses(NeuralSettings(early_stopping=True)))
    assert "No probe that chooses on validation can run on by_snippet: no validation snippet" in stopping
    assert "splits.validation_fraction" in stopping
    # No probe of this run stops early: nothing to say.
    assert run_message(record, early_stopping_probes=[], metric_head=False) == ""
    named = run_message(record, early_stopping_probes=["sweep__head-linear"], metric_head=False)
    assert "The probes that choose on validation are sweep__head-linear." in named


def test_a_corpus_that_can_be_split_passes_every_check():
    record = record_for({f"p{index}": 6 for index in range(8)})
    assert all(not part["failed"] for part in record["checks"].values())
    assert run_message(record, early_stopping_probes=["sweep"], metric_head=True) == ""


def test_a_test_piece_missing_from_training_is_named():
    assignment = pd.DataFrame(
        {
            "snippet_id": ["a:0", "a:1", "b:0", "c:0"],
            "piece_id": ["a", "a", "b", "c"],
            "role": ["train", "test", "train", "test"],
        }
    )
    counts = split_counts(assignment)
    assert counts["test_pieces_without_training"] == 1
    (failure,) = failed_preconditions(counts, ["probes"])
    assert failure.count == "test_pieces_without_training" and failure.found == 1
    assert "a class missing from training" in failure.text


def test_geometry_counts_come_from_the_catalog():
    catalog = catalog_of({"a": 1, "b": 1}, {"c": "broken"})
    counts = catalog_counts(catalog)
    assert counts == {"pieces": 2, "pieces_with_two_snippets": 0}
    assert [failure.count for failure in failed_preconditions(counts, ["geometry"])] == ["pieces_with_two_snippets"]


def test_a_refused_probe_becomes_a_summary_row_and_a_headline_without_figures(tmp_path):
    record = record_for({"bwv2.6": 3}, {"empty": "no notes"})
    probe = NeuralSettings(optimizer="lbfgs", normalization="standardize")
    reason = refusal(record, "by_snippet", probe_uses(probe))
    metrics = not_run_metrics(probe, reason, [], record["checks"]["by_snippet"]["counts"])
    metrics["provenance"] = {
        "wildcards": {"embedder": "spectral", "variant": "piano", "split": "by_snippet", "probe": "linear_lbfgs_std"}
    }
    row = summary_row(metrics)
    assert row["status"] == "not run" and row["reason"] == reason and row["top1"] is None
    summary = pd.DataFrame([row])
    summary.to_csv(tmp_path / "summary.tsv", sep="\t", index=False)
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t")  # as the report reads it
    (headline,) = headline_table(summary, {}).to_dict("records")
    assert headline["best probe"] == "none ran" and headline["its top-1 [95% CI]"] == ""


def test_the_end_of_a_run_repeats_each_message_for_the_uses_it_makes(tmp_path):
    refused, fine = tmp_path / "refused.json", tmp_path / "fine.json"
    refused.write_text(json.dumps(record_for({f"p{index}": 2 for index in range(6)})))  # no validation share
    fine.write_text(json.dumps(record_for({f"p{index}": 6 for index in range(8)})))
    paths = [str(refused), str(fine), str(tmp_path / "missing.json")]
    (message,) = run_end_messages(paths, "results/report/index.html", ["sweep__head-mlp"], metric_head=False)
    assert message.startswith("Not everything could run (results/report/index.html says the same). piano: ")
    assert message.endswith("The probes that choose on validation are sweep__head-mlp.")
    # The record holds no run's probe list: without a probe that chooses on validation, nothing to say.
    assert run_end_messages(paths, "results/report/index.html", [], metric_head=False) == []
    # The job's own log names every use the data fail, whatever the run's probes.
    assert "no validation snippet" in run_message(json.loads(refused.read_text()), None, metric_head=True)


EMPTY_MUSICXML = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.1"><part-list><score-part id="P1"><part-name>S</part-name></score-part></part-list>
<part id="P1"><measure number="1"><attributes><divisions>1</divisions></attributes></measure></part></score-partwise>
"""


@pytest.mark.workflow
def test_one_chorale_and_broken_files_run_to_a_report_that_says_why_no_probe_ran(tmp_path):
    folder = make_project(tmp_path / "one", pieces=("bwv2.6",))
    (folder / "scores" / "unreadable.mxl").write_bytes(b"this is not a zipped MusicXML file")
    (folder / "scores" / "empty.musicxml").write_text(EMPTY_MUSICXML, encoding="utf-8")
    completed = snakemake(folder, "--cores", "2")  # raises, with the output, unless Snakemake exits 0

    output = completed.stdout + completed.stderr
    results = folder / "results"
    record = json.loads((results / "splits/piano/preconditions.json").read_text())
    message = run_message(record, None, metric_head=True)  # what the job logs: every use the data fail
    for named in (
        "1 piece(s) left after exclusions, 2 excluded",
        "unreadable (music21 could not parse",
        "empty (",
        "No probe can run on by_snippet: 1 piece(s) left to train on",
        "What to do:",
    ):
        assert named in message, named
    # Said once by the check and once more as the run's last word; no probe says it again.
    assert output.count("1 piece(s) left after exclusions, 2 excluded") == 2, output
    assert message in (results / "logs/preconditions/piano.log").read_text()
    last_word = output.split("steps (100%) done", 1)[1]
    assert "Not everything could run" in last_word and "No probe can run on by_snippet" in last_word
    assert "Error in rule" not in output
    for stage in ("classify", "retrieval"):
        for log in (results / "logs" / stage).rglob("*.log"):
            text = log.read_text()
            assert "Traceback" not in text and "not run: the split fails" in text, log
    summary = pd.read_csv(results / "summary.tsv", sep="\t")
    assert len(summary) == 4 and (summary.status == "not run").all() and summary.top1.isna().all()
    metrics = json.loads((results / "probes/spectral/piano/by_snippet/linear_lbfgs_std/metrics.json").read_text())
    assert metrics["status"] == "not run" and metrics["reason"].startswith("piano: 1 piece(s) left")
    assert [failure["count"] for failure in metrics["failed_preconditions"]] == ["training_pieces"]
    report = (results / "report/index.html").read_text()
    answer = html.unescape(report.split("<section id='answer'>", 1)[1].split("</section>", 1)[0])
    assert "Not everything could run" in answer and "none ran" in answer
    assert "1 piece(s) left after exclusions, 2 excluded" in answer

    # A new probe leaves the record as it is (it holds what the data allow, not the run's
    # probes), so the new probe's job is planned in this very invocation and no other retrains.
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["probes"]["linear_adam_stopping"] = {"optimizer": "adam", "early_stopping": True}
    write_config(folder, config)
    jobs = planned_jobs(folder)
    assert jobs.pop("classify_iterative") == 1 and "preconditions" not in jobs, jobs
    assert set(jobs) <= {"summary", "report", "all"}, jobs
