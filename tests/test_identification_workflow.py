"""Identification end to end: the real workflow on six chorales, four deformations, the three offline embedders."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from workflow_runner import make_project, snakemake

from workflow_scripts.plumbing.io_utils import read_provenance

pytestmark = pytest.mark.workflow

SIX_CHORALES = ("bwv2.6", "bwv3.6", "bwv4.8", "bwv6.6", "bwv7.7", "bwv10.7")
IDENTIFICATION = {
    "enabled": True,
    "reference": "piano",
    "renderings": {
        "piano": {},
        "organ": {"programs": [19]},
        "pianoDown3": {"transpose": -3},
        "pianoSlow": {"tempo_qpm": 85},
    },
    "query_seconds": [4.0, 8.0],
    "queries_per_piece": 2,
    "bootstrap_resamples": 100,
}


@pytest.fixture(scope="module")
def identified(tmp_path_factory):
    folder = make_project(
        tmp_path_factory.mktemp("identification"),
        {"embedders": ["spectral", "pianoroll"], "identification": IDENTIFICATION},
        pieces=SIX_CHORALES,
    )
    snakemake(folder, "--cores", "2", "--resources", "gpu=1")
    return folder


def test_the_score_finds_every_query_through_the_alignment_under_every_deformation(identified):
    metrics = pd.read_csv(identified / "results/identification/pianoroll/metrics.tsv", sep="\t")
    aligned = metrics[metrics.matcher == "chroma_align"]
    assert set(aligned.rendering) == set(IDENTIFICATION["renderings"])
    assert (aligned.queries == 12).all() and (aligned.top1 == 1.0).all()
    assert (aligned.localised >= 0.9).all()


def test_queries_are_recorded_with_their_place_in_seconds_and_measures(identified):
    manifest = identified / "results/identification/queries/pianoSlow/bwv2.6.snippets.parquet"
    table = pq.read_table(manifest).to_pandas()
    assert len(table) == 4 and set((table.end_s - table.start_s).round(6)) == {4.0, 8.0}
    queries = read_provenance(manifest)["queries"]
    assert [query["query_id"] for query in queries] == table.snippet_id.tolist()
    assert all(0 <= query["start_measure"] < query["end_measure"] for query in queries)

    # The same fraction of the span where the longest query fits, in every rendering.
    def fractions(rendering):
        whole = pq.read_table(identified / f"results/identification/audio/{rendering}/bwv2.6.snippets.parquet")
        queries = pq.read_table(identified / f"results/identification/queries/{rendering}/bwv2.6.snippets.parquet")
        span = whole.column("num_samples")[0].as_py() / 24000 - 8.0
        return queries.column("start_s").to_numpy() / span

    assert abs(fractions("pianoSlow") - fractions("piano")).max() < 1e-3


def test_every_matcher_runs_on_every_rendering_and_length(identified):
    record = json.loads((identified / "results/identification/spectral/metrics.json").read_text())
    # spectral's pitch-class view is chroma bins: the key-roll alignment is skipped, and says why.
    assert list(record["skipped"]) == ["roll_align"] and "roll of keys" in record["skipped"]["roll_align"]
    assert {row["matcher"] for row in record["rows"]} == {"cosine", "cosine_std", "cosine_lda", "chroma_align"}
    pianoroll = json.loads((identified / "results/identification/pianoroll/metrics.json").read_text())
    assert pianoroll["skipped"] == {} and "roll_align" in {row["matcher"] for row in pianoroll["rows"]}
    per_query = pq.read_table(identified / "results/identification/spectral/per_query.parquet").to_pandas()
    assert len(per_query) == 4 * 2 * 12 * 4


def test_the_learned_matcher_trains_on_the_by_piece_training_pieces_and_reports_the_others_apart(identified):
    split = pd.read_parquet(identified / "results/splits/piano/by_piece.parquet")
    trained_on = set(split.piece_id[split.role.isin(["train", "validation"])])
    assert trained_on and trained_on < set(SIX_CHORALES)
    record = json.loads((identified / "results/identification/spectral/metrics.json").read_text())
    learned = [row for row in record["rows"] if row["matcher"] == "cosine_lda"]
    assert {row["query_pieces"] for row in learned} == {"held_out", "seen"}
    held_out = [row for row in learned if row["query_pieces"] == "held_out"]
    assert all(row["pieces"] == len(set(SIX_CHORALES) - trained_on) for row in held_out)
    others = [row for row in record["rows"] if row["matcher"] != "cosine_lda"]
    assert {row["query_pieces"] for row in others} == {"all"} and all(row["pieces"] == 6 for row in others)


def test_a_new_deformation_renders_and_embeds_only_what_is_new(identified):
    renderings = {**IDENTIFICATION["renderings"], "strings": {"programs": [40, 41, 42, 43]}}
    folder = identified
    config = folder / "config.yaml"
    text = config.read_text()
    settings = yaml.safe_load(text)
    settings["identification"]["renderings"] = renderings
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    try:
        planned = snakemake(folder, "--dry-run", "--quiet", "rules").stdout
        rules = {
            line.split()[0] for line in planned.splitlines() if len(line.split()) == 2 and line.split()[1].isdigit()
        }
        assert "render_whole_strings_batch000" in rules and "render_whole_organ_batch000" not in rules
        assert "embed_spectral_whole_piano_batch000" not in rules and "identify" in rules
    finally:
        config.write_text(text)


def test_summary_and_report_carry_the_identification_figures(identified):
    summary = pd.read_csv(identified / "results/summary.tsv", sep="\t")
    rows = summary[summary.split == "identification"]
    # 4 renderings x 2 lengths x (3 matchers + cosine_lda's held-out and seen rows), and for
    # pianoroll roll_align too.
    assert len(rows) == 4 * 2 * 5 + 4 * 2 * 6
    metrics = pd.read_csv(identified / "results/identification/pianoroll/metrics.tsv", sep="\t")
    ours = rows[rows.embedder == "pianoroll"].set_index(["variant", "probe", "query_seconds", "query_pieces"])
    theirs = metrics.set_index(["rendering", "matcher", "query_seconds", "query_pieces"])
    ours, theirs = ours.sort_index(), theirs.sort_index()
    assert (ours.top1.to_numpy() == theirs.top1.to_numpy()).all()
    assert (ours.train_variants == "piano").all() and ours.top1_ci95.notna().all()
    page = (identified / "results/report/index.html").read_text()
    assert "<h2>Identifying known music</h2>" in page and "pianoroll / chroma_align" in page
    assert (identified / "results/report/identification.png").stat().st_size > 10_000
