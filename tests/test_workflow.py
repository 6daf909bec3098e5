"""End-to-end: the real workflow (music21, FluidSynth, Parquet, torch) on four chorales."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from workflow_runner import (
    FOUR_CHORALES,
    local_rule_patterns,
    make_project,
    planned_jobs,
    planned_outputs,
    snakemake,
    snakemake_command,
    write_config,
)

from workflow_scripts.plumbing.io_utils import read_provenance

PIECES = FOUR_CHORALES
pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    folder = make_project(tmp_path_factory.mktemp("workflow"))
    snakemake(folder, "--cores", "2")
    return folder


def test_outputs_have_their_schema_and_provenance(finished_run):
    results = finished_run / "results"
    catalog = pd.read_csv(results / "corpus/piano/catalog.tsv", sep="\t")
    assert sorted(catalog.piece_id) == sorted(PIECES) and (catalog.status == "ok").all()
    for piece in PIECES:
        shard = results / f"embeddings/spectral/piano/{piece}.parquet"
        provenance = read_provenance(shard)
        assert provenance["embedder"]["name"] == "spectral"
        assert len(provenance["render"]["soundfont"]["sha256"]) == 64
        assert provenance["code"]["source_digest"]
    dataset = pq.read_table(results / "datasets/spectral/piano/embeddings.parquet")
    assert dataset.num_rows == catalog.snippets.sum()
    folder = results / "probes/spectral/piano/by_snippet/linear_lbfgs_std"
    for name in (
        "per_class.tsv",
        "per_class.png",
        "predictions.parquet",
        "confusion.tsv",
        "confusion.png",
        "curve.tsv",
    ):
        assert (folder / name).stat().st_size > 0
    # A one-shot kind records its fit as one point; only the iterative probe draws a curve.
    assert len(pd.read_csv(folder / "curve.tsv", sep="\t")) == 1 and not (folder / "curve.png").exists()
    assert (folder.parent / "linear_adam/curve.png").stat().st_size > 0
    for rule in (
        "render",
        "embed",
        "catalog",
        "audit",
        "dataset",
        "split",
        "classify",
        "retrieval",
        "geometry",
        "summary",
        "report",
    ):
        assert list((results / "benchmarks" / rule).rglob("*.tsv")), rule
        assert list((results / "logs" / rule).rglob("*.log")), rule


def test_probe_beats_chance(finished_run):
    summary = pd.read_csv(finished_run / "results/summary.tsv", sep="\t")
    # One row per probe setting, the sweep's combinations included.
    assert sorted(summary.probe) == ["linear_adam", "linear_lbfgs_std", "sweep__head-linear", "sweep__head-mlp"]
    kinds = summary.set_index("probe").kind
    assert kinds.to_dict() == {
        "linear_adam": "neural",
        "linear_lbfgs_std": "logistic",
        "sweep__head-linear": "neural",
        "sweep__head-mlp": "neural",
    }
    # A head belongs to the neural kind; the logistic row says what validation chose instead.
    assert (
        set(summary["head"].dropna()) == {"linear", "mlp"}
        and summary.set_index("probe")["head"].isna()["linear_lbfgs_std"]
    )
    assert summary.set_index("probe").selected["linear_lbfgs_std"].startswith("l2=")
    # Four test snippets: one probe may sit at chance (the logistic kind's validation is one
    # snippet here), but the best must learn something.
    best = summary.sort_values("top1").iloc[-1]
    chance = 1 / best.classes
    assert best.top1 > chance
    metrics = json.loads(
        (finished_run / "results/probes/spectral/piano/by_snippet/linear_lbfgs_std/metrics.json").read_text()
    )
    for key in (
        "top1",
        "top5",
        "top1_ci95",
        "per_class_mean",
        "per_class_median",
        "classes_at_0",
        "classes_at_100",
        "train_snippets",
        "test_snippets",
        "attractors",
        "provenance",
    ):
        assert key in metrics
    assert metrics["provenance"]["embedder"]["name"] == "spectral"
    # The default split keeps the overlap guard: nothing is leaky, and the intervals resample pieces.
    assert metrics["overlap_guard"] is True and metrics["leaky"] is False
    assert not summary.leaky.any() and (summary.ci95_resampling == "pieces").all()


def test_evaluation_outputs(finished_run):
    results = finished_run / "results"
    retrieval = json.loads((results / "retrieval/spectral/piano/by_piece/metrics.json").read_text())
    assert {row["representation"] for row in retrieval["results"]} >= {"raw", "standardized"}
    assert all(0 <= row["map"] <= 1 and row["mr1"] >= 1 for row in retrieval["results"])
    for row in retrieval["results"]:
        assert row["ci95_resampling"].startswith("held-out pieces") and "same_music" in row
    geometry = json.loads((results / "geometry/spectral/piano/summary.json").read_text())
    assert 0 <= geometry["auc_cosine"] <= 1
    split = read_provenance(results / "splits/piano/by_piece.parquet")
    assert split["summary"]["snippets"]["test"] > 0
    report = (results / "report/index.html").read_text()
    for section in (
        "Comparison of probes",
        "Retrieval on held-out pieces",
        "Embedding geometry",
        "Corpus audit",
        "34.4%",
    ):
        assert section in report
    assert "data:image/png;base64," in report


def test_snakemake_report_holds_the_flagged_figures(finished_run):
    snakemake(finished_run, "--report", "snakemake-report.html")
    report = (finished_run / "snakemake-report.html").read_text()
    for figure in (
        "confusion.png",
        "per_class.png",
        "curve.png",
        "distances.png",
        "layers.png",
        "tsne.png",
        "comparison.png",
    ):
        assert figure in report, figure
    assert "Embedding geometry" in report and "Probes" in report


def test_long_jobs_log_their_progress(finished_run):
    logs = finished_run / "results/logs"
    render = (logs / "render/piano/batch000.log").read_text()
    # tqdm's meter: percentage, bar, done/total, elapsed<remaining, rate.
    meter = r"100%\|#+\| {done}/{done} \[\d\d:\d\d<00:00, +[\d.]+(?:{unit}/s|s/{unit})\]"
    assert "outside SLURM" in render and re.search(meter.format(done=2, unit="piece"), render), render
    embed = (logs / "embed/spectral/piano/batch000.log").read_text()
    assert re.search(meter.format(done=2, unit="piece"), embed) and "finished in" in embed, embed
    training = (logs / "classify/spectral/piano/by_snippet/linear_adam.log").read_text()
    assert re.search(meter.format(done=100, unit="epoch"), training), training


def test_second_run_has_nothing_to_do(finished_run):
    assert planned_jobs(finished_run) == {}


def test_changing_one_piece_recomputes_only_that_piece(tmp_path):
    import music21

    folder = make_project(tmp_path / "project")
    snakemake(folder, "--cores", "2")
    shards = folder / "results/embeddings/spectral/piano"
    before = {path.name: path.read_bytes() for path in shards.glob("*.parquet")}

    changed = folder / "scores/bwv4.8.mxl"  # the first piece of the second batch
    music21.converter.parse(changed).transpose(2).write("mxl", fp=changed)

    jobs = planned_jobs(folder)
    assert "render_piano_batch000" not in jobs and "embed_spectral_piano_batch000" not in jobs
    assert jobs["render_piano_batch001"] == 1 and jobs["embed_spectral_piano_batch001"] == 1
    snakemake(folder, "--cores", "2")

    render_log = (folder / "results/logs/render/piano/batch001.log").read_text()
    assert "bwv4.8: 3 snippets" in render_log and "bwv6.6: unchanged, restored from cache" in render_log
    embed_log = (folder / "results/logs/embed/spectral/piano/batch001.log").read_text()
    assert "'computed': 1, 'restored': 1" in embed_log
    after = {path.name: path.read_bytes() for path in shards.glob("*.parquet")}
    assert [name for name in before if before[name] != after[name]] == ["bwv4.8.parquet"]
    assert planned_jobs(folder) == {}


@pytest.mark.slow
def test_two_runs_from_scratch_give_identical_results(finished_run, tmp_path):
    again = make_project(tmp_path / "again")
    snakemake(again, "--cores", "2")
    for relative in ("results/datasets/spectral/piano/embeddings.parquet", "results/splits/piano/by_snippet.parquet"):
        first, second = pq.read_table(finished_run / relative), pq.read_table(again / relative)
        assert first.equals(second), relative
    for name in ("linear_adam", "linear_lbfgs_std"):
        relative = f"results/probes/spectral/piano/by_snippet/{name}/metrics.json"
        first = json.loads((finished_run / relative).read_text())
        second = json.loads((again / relative).read_text())
        for key in ("top1", "top5", "top1_ci95", "per_class_mean"):
            assert first[key] == second[key], (name, key)
    audio = "results/audio/piano/bwv2.6.flac"
    assert (finished_run / audio).read_bytes() == (again / audio).read_bytes()


def test_a_new_variant_and_transfer_compute_only_what_is_new(tmp_path):
    folder = make_project(tmp_path / "project", {"retrieval": {"metric_head": {"epochs": 20}}})
    snakemake(folder, "--cores", "2")
    write_config(
        folder,
        {
            "variants": {"piano": {}, "organ": {"programs": [19]}},
            "variant_transfers": [{"train": ["piano"], "test": "organ"}],
            "retrieval": {"metric_head": {"epochs": 20}},
        },
    )
    outputs = planned_outputs(folder)
    assert not [path for path in outputs if "/piano/" in path], "adding a variant must not recompute the piano variant"
    assert any(path.startswith("results/audio/organ/") for path in outputs)
    assert "results/probes/spectral/piano_to_organ/by_snippet/linear_lbfgs_std/metrics.json" in outputs
    snakemake(folder, "--cores", "2")

    results = folder / "results"
    across = pq.read_table(
        results / "probes/spectral/piano_to_organ/by_snippet/linear_lbfgs_std/predictions.parquet"
    ).to_pandas()
    within = pq.read_table(
        results / "probes/spectral/organ/by_snippet/linear_lbfgs_std/predictions.parquet"
    ).to_pandas()
    # Same test snippets, heard as organ in both; the transfer's probe never heard organ.
    assert sorted(across.snippet_id.str.removeprefix("organ/")) == sorted(within.snippet_id)
    training = pq.read_table(results / "splits/piano_to_organ/by_snippet.parquet").to_pandas()
    assert set(training[training.role != "test"].variant) == {"piano"} and set(
        training[training.role == "test"].variant
    ) == {"organ"}
    summary = pd.read_csv(results / "summary.tsv", sep="\t").set_index(["variant", "probe"])
    assert summary.loc[("piano_to_organ", "linear_lbfgs_std"), ["train_variants", "test_variant"]].tolist() == [
        "piano",
        "organ",
    ]
    assert "Across rendering variants" in (results / "report/index.html").read_text()
    assert planned_jobs(folder) == {}


def test_mert_embedder_runs_in_the_workflow_from_a_local_model(tmp_path):
    from mert_fixture import build_small_mert

    build_small_mert(tmp_path / "mert-model")
    folder = make_project(
        tmp_path / "project",
        {
            "embedders": ["mert"],
            "embedder_settings": {
                "mert": {"local_dir": str(tmp_path / "mert-model"), "device": "auto", "batch_size": 4}
            },
            "probes": {"linear_lbfgs_std": {"optimizer": "lbfgs", "normalization": "standardize", "layer": "last"}},
            "sweep": {"grid": {}},
        },
    )
    plan = snakemake(folder, "--dry-run", "--resources", "gpu=1").stdout
    embed_jobs = [block for block in plan.split("\n\n") if "rule embed_mert_piano_batch" in block]
    assert embed_jobs and all("gpu=1" in block for block in embed_jobs)
    snakemake(folder, "--cores", "2", "--resources", "gpu=1")

    marker = json.loads((folder / "results/models/mert.json").read_text())
    assert "pytorch_model.bin" in marker["files"]
    provenance = read_provenance(folder / "results/embeddings/mert/piano/bwv2.6.parquet")
    assert provenance["embedder"]["layers"] == 3 and provenance["embedder"]["model_id"] == "m-a-p/MERT-v1-95M"
    metrics = json.loads((folder / "results/probes/mert/piano/by_snippet/linear_lbfgs_std/metrics.json").read_text())
    assert metrics["provenance"]["embedder"]["name"] == "mert"
    assert metrics["test_snippets"] > 0


def test_a_spectrogram_encoder_runs_in_the_workflow_through_the_generic_entry(tmp_path):
    """transformers_encoder with only local_dir set: class, rate and input kind from the checkpoint."""
    from mert_fixture import build_small_ast

    build_small_ast(tmp_path / "ast-model", max_length=512)
    folder = make_project(
        tmp_path / "project",
        {
            "embedders": ["transformers_encoder"],
            "embedder_settings": {"transformers_encoder": {"local_dir": str(tmp_path / "ast-model"), "batch_size": 4}},
            "probes": {"linear_lbfgs_std": {"kind": "logistic", "layer": "last"}},
            "sweep": {"grid": {}},
            "retrieval": {"metric_head": {"epochs": 20}},
        },
    )
    snakemake(folder, "--cores", "2", "--resources", "gpu=1")
    provenance = read_provenance(folder / "results/embeddings/transformers_encoder/piano/bwv2.6.parquet")
    described = provenance["embedder"]
    assert described["layers"] == 3 and described["dim"] == 32 and described["model_id"] == "local folder ast-model"
    assert described["settings"]["loader"] == "transformers ASTModel"
    assert described["settings"]["resampling"] == "soxr soxr_hq 24000 -> 16000 Hz"
    summary = pd.read_csv(folder / "results/summary.tsv", sep="\t")
    assert set(summary.embedder) == {"transformers_encoder"} and (summary.status == "ran").all()


def test_basic_pitch_and_pianoroll_run_end_to_end(tmp_path):
    folder = make_project(
        tmp_path / "project",
        {
            "embedders": ["basic_pitch", "pianoroll"],
            "probes": {
                "linear_lbfgs_std": {"optimizer": "lbfgs", "normalization": "standardize", "weight_decay": 0.001},
                "in_order": {"kind": "logistic", "pooling": "sequence"},  # from the time summaries
            },
            "sweep": {"grid": {}},
            "retrieval": {"metric_head": {"epochs": 20}, "pooling": "mean_std"},
        },
    )
    snakemake(folder, "--cores", "2")
    results = folder / "results"
    for embedder, revision in (
        ("basic_pitch", "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec"),
        ("pianoroll", "1"),
    ):
        provenance = read_provenance(results / f"embeddings/{embedder}/piano/bwv2.6.parquet")
        assert provenance["embedder"]["layers"] == 3 and provenance["embedder"]["dim"] == 176
        assert provenance["embedder"]["revision"] == revision
        assert (results / f"retrieval/{embedder}/piano/by_piece/metrics.json").is_file()
    summary = pd.read_csv(results / "summary.tsv", sep="\t").set_index(["embedder", "probe"])
    for embedder in ("basic_pitch", "pianoroll"):
        for probe, pooling in (("linear_lbfgs_std", "native"), ("in_order", "sequence")):
            row = summary.loc[(embedder, probe)]
            assert row.top1 > 1 / row.classes and row.pooling == pooling, (embedder, probe)
        metrics = json.loads((results / f"retrieval/{embedder}/piano/by_piece/metrics.json").read_text())
        assert metrics["status"] == "ran" and metrics["provenance"]["settings"]["pooling"] == "mean_std"
    assert planned_jobs(folder) == {}


KILL_PIECES = ("bwv2.6", "bwv3.6", "bwv4.8", "bwv6.6", "bwv10.7", "bwv11.6", "bwv13.6", "bwv14.5")


def make_kill_project(folder: Path) -> Path:
    overrides = {
        "render": {"pieces_per_job": 8},
        "embed": {"pieces_per_job": 8},
        "probes": {"linear_lbfgs_std": {"optimizer": "lbfgs", "normalization": "standardize"}},
        "sweep": {"grid": {}},
    }
    return make_project(folder, overrides, pieces=KILL_PIECES)


@pytest.mark.slow
def test_a_run_killed_while_embedding_resumes_without_recomputing(tmp_path):
    import signal
    import subprocess
    import time

    folder = make_kill_project(tmp_path / "killed")
    command = snakemake_command(folder, "--cores", "1")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    embed_log = folder / "results/logs/embed/spectral/piano/batch000.log"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if embed_log.exists() and "| 2/8 [" in embed_log.read_text():
            break
        if process.poll() is not None:
            pytest.fail("the workflow ended before the embedding could be interrupted")
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # as a node failure would: no chance to clean up
    process.wait()
    done_before_kill = embed_log.read_text().count("snippets embedded")
    assert 1 <= done_before_kill < 8, "the kill did not land mid-batch"
    assert not (folder / "results/datasets").exists()

    # A SIGKILL leaves Snakemake's lock behind: the documented recovery is --unlock, then --rerun-incomplete.
    snakemake(folder, "--unlock")
    snakemake(folder, "--cores", "2", "--rerun-incomplete")
    log = embed_log.read_text()
    assert log.count("unchanged, restored from cache") == done_before_kill
    assert log.count("snippets embedded") == 8 - done_before_kill

    uninterrupted = make_kill_project(tmp_path / "uninterrupted")
    snakemake(uninterrupted, "--cores", "2")
    relative = "results/datasets/spectral/piano/embeddings.parquet"
    assert pq.read_table(folder / relative).equals(pq.read_table(uninterrupted / relative))
    for name in ("top1", "top5"):
        metric = "results/probes/spectral/piano/by_snippet/linear_lbfgs_std/metrics.json"
        assert json.loads((folder / metric).read_text())[name] == json.loads((uninterrupted / metric).read_text())[name]


EMPTY_MUSICXML = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.1"><part-list><score-part id="P1"><part-name>S</part-name></score-part></part-list>
<part id="P1"><measure number="1"><attributes><divisions>1</divisions></attributes></measure></part></score-partwise>
"""


def test_a_folder_with_broken_scores_runs_through_to_the_report(tmp_path):
    """Unreadable, empty and percussion-only scores are excluded with their reasons; a tune
    book gives one piece per tune; everything else, the report included, finishes."""
    from workflow_scripts.stages.corpus import music21_corpus_folder

    folder = make_project(
        tmp_path / "broken",
        {"probes": {"linear_lbfgs_std": {"optimizer": "lbfgs", "normalization": "standardize"}}, "sweep": {"grid": {}}},
    )
    (folder / "scores" / "unreadable.mxl").write_bytes(b"this is not a zipped MusicXML file")
    (folder / "scores" / "empty.musicxml").write_text(EMPTY_MUSICXML, encoding="utf-8")
    demos = music21_corpus_folder("demos")
    (folder / "scores" / "drums.xml").write_bytes((demos / "drum_sample.xml").read_bytes())
    (folder / "scores" / "book.abc").write_text(TUNE_BOOK, encoding="utf-8")
    snakemake(folder, "--cores", "2")

    catalog = pd.read_csv(folder / "results/corpus/piano/catalog.tsv", sep="\t", keep_default_na=False)
    excluded = catalog[catalog.status != "ok"].set_index("piece_id")
    assert set(excluded.index) == {"unreadable", "empty", "drums"} and all(excluded.reason.str.len() > 0)
    assert "32 unpitched notes or empty chords skipped" in excluded.reason["drums"]
    included = catalog[catalog.status == "ok"]
    assert set(included.piece_id) == {*PIECES, "book_tune3", "book_tune8"}
    assert all(value.isdigit() for value in included.snippets.astype(str))
    assert catalog.set_index("piece_id").tune_index.astype(str).to_dict()["book_tune8"] == "1"
    report = (folder / "results/report/index.html").read_text()
    assert "3 excluded" in report and "unreadable" in report and "drums" in report


# Two tunes of one book, each two 4-measure windows long at the test tempo.
TUNE_BOOK = """%abc
L:1/4

X:3
T:Third
M:4/4
K:D
DEFG|A2F2|GFED|E4|DEFG|A2F2|GFED|D4|]

X:8
T:Eighth
M:3/4
K:G
GAB|c2A|BAG|A3|GAB|c2A|BAG|G3|]
"""


def test_piece_ids_equal_but_for_case_are_refused_before_anything_runs(tmp_path):
    folder = make_project(tmp_path / "case", pieces=FOUR_CHORALES[:1])
    source = folder / "scores" / f"{FOUR_CHORALES[0]}.mxl"
    (folder / "scores" / f"{FOUR_CHORALES[0].upper()}.mxl").write_bytes(source.read_bytes())
    completed = snakemake(folder, "-n", check=False)
    assert completed.returncode != 0
    message = completed.stdout + completed.stderr
    assert "differ only in case" in message and "BWV2.6.mxl" in message


def test_local_rules_are_read_from_the_workflow_sources(tmp_path):
    """The SLURM test decides where each job should have run from `local_rule_patterns`."""
    planned = planned_jobs(make_project(tmp_path / "project"))
    local = {rule for rule in planned if any(pattern.fullmatch(rule) for pattern in local_rule_patterns())}
    assert {"all", "preconditions", "audit", "catalog", "split", "summary", "report"} <= local, local
    on_compute_nodes = set(planned) - local
    probes_and_evaluation = {"classify", "classify_iterative", "retrieval", "geometry"}
    assert probes_and_evaluation <= on_compute_nodes, on_compute_nodes
    assert all(rule.startswith(("render_", "embed_")) for rule in on_compute_nodes - probes_and_evaluation)
    assert any(pattern.fullmatch("fetch_model_mert") for pattern in local_rule_patterns())
