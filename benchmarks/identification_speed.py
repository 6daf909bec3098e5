"""The identify stage's matchers on a finished run's shards: speed against reference size,
librosa's subsequence DTW beside the alignment's own, the shortlist against full alignment,
and what pooling reference windows from one pass costs against embedding each as a clip.

Reads a run of configs/identification.yaml (its results folder), in one process:

1. matchers: for every embedder and matcher, queries per second of the stage's own matcher
   functions (workflow_scripts/identification/matching.py) on ``--queries`` queries of
   ``--seconds`` from ``--rendering``, against references of 100, 200 and every piece, and
   about 4,000 by replicating the reference's recordings under new ids;
2. alignment: the alignment step alone (one query against one piece under one shift), the
   stage's numpy recursion against ``librosa.sequence.dtw(C, subseq=True,
   step_sizes_sigma=[[1, 0], [1, 1], [1, 2]], backtrack=False)`` on the same cost matrices,
   with the largest difference of their best costs (they compute the same recursion);
3. shortlist: chroma_align's top-1 with the configured (order-aware) shortlist, with the
   mean-chroma shortlist (shortlist_parts 1) and aligning every piece under all 12 shifts,
   on the same queries of each of ``--tuning-renderings``, and each shortlist's recall;
4. tuning: chroma_align's top-1 on ``--tuning-renderings`` for chroma compressions 0, 1, 10
   and 100 (log(1 + c x)), and with the shortlist's 2 best shifts against all 12;
5. rates: chroma_align's and roll_align's top-1 on ``--tuning-renderings`` at the run's
   frame rate and at rates ``--rate-factors`` times lower (summary windows merged, exactly);
6. windows: for ``--window-pieces`` reference pieces and each embedder, the cosine between
   a reference window pooled from the whole piece's time summary (what the matchers use)
   and the same stretch of audio embedded as a clip of its own, every ``--window-hop`` s.

    .venv/bin/snakemake --cores 2 --resources gpu=1 --configfile configs/identification.yaml
    .venv/bin/pip install librosa==0.11.0   # for part 2 only; not a dependency of the workflow
    .venv/bin/python benchmarks/identification_speed.py --results results
    .venv/bin/python benchmarks/identification_speed.py --results results --sections rates   # one part
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from workflow_scripts.embedders import build_embedder
from workflow_scripts.embedders.base import Embedder
from workflow_scripts.embedders.registry import declaration
from workflow_scripts.identification import alignment
from workflow_scripts.identification.matching import LEARNED, MATCHERS, Recordings, recordings
from workflow_scripts.identification.queries import query_seconds
from workflow_scripts.identification.reference import (
    Summarised,
    frame_mean,
    layer_of,
    read_summarised,
    sliding_windows,
)
from workflow_scripts.plumbing.settings import complete_config, embedder_settings
from workflow_scripts.plumbing.snippet_audio import read_snippet_audio
from workflow_scripts.stages.identify import learned_projection, subset, training_pieces, usable_matchers

REFERENCE_SIZES = (100, 200)
SECTIONS = ("matchers", "alignment", "shortlist", "tuning", "rates", "windows")
REPLICATED_SIZE = 4000


def run_config(config_file: Path) -> dict:
    """config.yaml with ``config_file``'s keys over it, completed as the workflow completes it."""
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())

    def merge(base, extra):
        for key, value in extra.items():
            base[key] = (
                merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
            )
        return base

    config = merge(config, yaml.safe_load(config_file.read_text()))
    from snakemake.utils import validate

    from workflow_scripts.embedders.schema import workflow_schema_file

    schema_file = workflow_schema_file()  # the schema with the embedders' parts, as the Snakefile reads it
    validate(config, str(schema_file), set_default=True)
    schema = yaml.safe_load(Path(schema_file).read_text())
    complete_config(config, schema)
    return config


def shards(results: Path, embedder: str, name: str) -> list[Path]:
    return sorted((results / "identification/embeddings" / embedder / name).glob("*.parquet"))


def replicated(reference: Recordings, size: int) -> Recordings:
    """About ``size`` pieces: the reference's recordings repeated under new ids."""
    copies = -(-size // len(reference.ids))
    rows = [row for _ in range(copies) for row in range(len(reference.ids))]
    grown = subset(reference, rows)
    grown.ids = [f"{piece}#{copy}" for copy in range(copies) for piece in reference.ids]
    grown.pieces = list(grown.ids)
    return grown


def queries_per_second(matcher: str, reference: Recordings, queries: Recordings, seconds: float, settings: dict):
    began = time.perf_counter()
    answers = MATCHERS[matcher](reference, queries, seconds, settings)
    elapsed = time.perf_counter() - began
    return len(queries.ids) / elapsed, answers


def top1(answers, queries: Recordings, reference: Recordings) -> float:
    column = {piece: index for index, piece in enumerate(reference.pieces)}
    truth = np.array([column[piece] for piece in queries.pieces])
    return float((np.argmax(answers.scores, axis=1) == truth).mean())


def matcher_rows(reference, queries, seconds, settings, matchers):
    sizes = [size for size in REFERENCE_SIZES if size < len(reference.ids)] + [len(reference.ids)]
    for matcher in matchers:
        for size in sizes:
            kept = [row for row, piece in enumerate(queries.pieces) if piece in set(reference.pieces[:size])]
            rate, answers = queries_per_second(
                matcher, subset(reference, range(size)), subset(queries, kept), seconds, settings
            )
            yield {"matcher": matcher, "pieces": size, "queries_per_s": rate}
        rate, _ = queries_per_second(matcher, replicated(reference, REPLICATED_SIZE), queries, seconds, settings)
        yield {"matcher": matcher, "pieces": len(replicated(reference, REPLICATED_SIZE).ids), "queries_per_s": rate}


def alignment_against_librosa(reference: Recordings, queries: Recordings, pairs: int) -> dict:
    """One query against one piece under its best shift: the stage's recursion and librosa's."""
    import librosa

    steps = np.array([[1, 0], [1, 1], [1, 2]])
    costs = []
    for row in range(pairs):
        query = queries.chroma[row % len(queries.ids)]
        piece = reference.chroma[(row * 7) % len(reference.ids)]
        shift = row % alignment.SEMITONES
        costs.append(1.0 - np.roll(query, shift, axis=-1) @ piece.T)
    began = time.perf_counter()
    ours = [alignment.subsequence_align(cost)[0].min() * len(cost) for cost in costs]
    our_seconds = time.perf_counter() - began
    librosa.sequence.dtw(C=costs[0], subseq=True, step_sizes_sigma=steps, backtrack=False)  # numba compiles here
    began = time.perf_counter()
    theirs = [
        librosa.sequence.dtw(C=cost, subseq=True, step_sizes_sigma=steps, backtrack=False)[-1].min() for cost in costs
    ]
    librosa_seconds = time.perf_counter() - began
    return {
        "pairs": pairs,
        "cost_matrix": f"{costs[0].shape[0]} x ~{int(np.mean([cost.shape[1] for cost in costs]))}",
        "ours_pairs_per_s": pairs / our_seconds,
        "librosa_pairs_per_s": pairs / librosa_seconds,
        "largest_cost_difference": float(np.max(np.abs(np.array(ours) - np.array(theirs)))),
        "librosa": librosa.__version__,
    }


def shortlist_against_full(reference, queries, seconds, settings) -> dict:
    """chroma_align's top-1 with the configured shortlist, with the mean-chroma shortlist
    (shortlist_parts 1, blind to order) and aligning every piece under all 12 shifts; and how
    often each shortlist holds the true piece."""
    mean_chroma = {**settings, "shortlist_parts": 1}
    full = {**settings, "shortlist": 0, "shortlist_shifts": alignment.SEMITONES}
    rate, shortlisted = queries_per_second("chroma_align", reference, queries, seconds, settings)
    mean_rate, mean_shortlisted = queries_per_second("chroma_align", reference, queries, seconds, mean_chroma)
    full_rate, aligned = queries_per_second("chroma_align", reference, queries, seconds, full)
    rolls = {}
    if reference.keys is not None:
        roll_rate, roll_answers = queries_per_second("roll_align", reference, queries, seconds, settings)
        rolls = {
            "top1_roll_align_shortlist": top1(roll_answers, queries, reference),
            "queries_per_s_roll_align": roll_rate,
        }
    return {
        "shortlist": settings["shortlist"],
        "shortlist_shifts": settings["shortlist_shifts"],
        "shortlist_parts": settings["shortlist_parts"],
        "shortlist_stretches": settings["shortlist_stretches"],
        "top1_shortlist": top1(shortlisted, queries, reference),
        "top1_mean_chroma_shortlist": top1(mean_shortlisted, queries, reference),
        "top1_every_piece_and_shift": top1(aligned, queries, reference),
        "recall_shortlist": shortlist_recall(reference, queries, seconds, settings),
        "recall_mean_chroma_shortlist": shortlist_recall(reference, queries, seconds, mean_chroma),
        "queries_per_s_shortlist": rate,
        "queries_per_s_mean_chroma_shortlist": mean_rate,
        "queries_per_s_every_piece_and_shift": full_rate,
        **rolls,
    }


def shortlist_recall(reference, queries, seconds, settings) -> float:
    """Share of queries whose own piece is among the shortlist's pieces (stage one only)."""
    span = max(1, int(round(seconds * reference.hz)))
    shortlister = alignment.Shortlister.of(
        reference.chroma, reference.counts, span, settings["shortlist_parts"], settings["shortlist_stretches"]
    )
    stage_one = shortlister.scores(queries.chroma, queries.counts)
    found = [
        reference.pieces.index(piece) in alignment.shortlisted(per_shift, settings["shortlist"] or 10**9, 1)[0]
        for piece, per_shift in zip(queries.pieces, stage_one)
    ]
    return float(np.mean(found))


COMPRESSIONS = (0.0, 1.0, 10.0, 100.0)


def tuning_rows(results: Path, embedder: str, settings: dict, renderings: list[str], seconds: float, count: int):
    """chroma_align's top-1 per query rendering under each compression and shortlist shift count."""
    pitch = declaration(embedder).pitch_classes
    whole = read_summarised(shards(results, embedder, f"whole_{settings['reference']}"))
    for rendering in renderings:
        summarised = read_summarised(shards(results, embedder, f"queries_{rendering}"))
        for compression in COMPRESSIONS:
            reference = recordings(whole, settings["layer"], pitch, compression, settings["roll_compression"])
            queries = chosen_queries(
                recordings(summarised, settings["layer"], pitch, compression, settings["roll_compression"]),
                seconds,
                count,
            )
            for shifts in (settings["shortlist_shifts"], alignment.SEMITONES):
                _, answers = queries_per_second(
                    "chroma_align", reference, queries, seconds, {**settings, "shortlist_shifts": shifts}
                )
                yield {
                    "embedder": embedder,
                    "rendering": rendering,
                    "compression": compression,
                    "shortlist_shifts": shifts,
                    "top1": top1(answers, queries, reference),
                    "queries": len(queries.ids),
                }


def coarser(summarised: Summarised, factor: int) -> Summarised:
    """The same recordings at ``hz / factor``: every ``factor`` successive summary windows
    merged into one, the exact frame mean of theirs (frame counts weigh them). A rate above
    the run's ``frame_hz`` needs the embed stage again; one below it does not."""
    means, frames = [], []
    for mean, count in zip(summarised.means, summarised.frames):
        starts = np.arange(0, len(count), factor)
        weights = count.astype(np.float64)
        totals = np.add.reduceat(mean.astype(np.float64) * weights[None, :, None], starts, axis=1)
        merged = np.add.reduceat(weights, starts)
        means.append((totals / np.maximum(merged, 1.0)[None, :, None]).astype(np.float32))
        frames.append(merged.astype(count.dtype))
    return Summarised(summarised.ids, summarised.pieces, means, frames, summarised.hz / factor, summarised.embedder)


def rate_rows(results: Path, embedder: str, settings: dict, renderings: list[str], seconds: float, count: int, factors):
    """chroma_align's and roll_align's top-1 per query rendering at the run's frame rate and
    at rates ``factors`` times lower (``coarser``)."""
    pitch = declaration(embedder).pitch_classes
    whole = read_summarised(shards(results, embedder, f"whole_{settings['reference']}"))
    matchers, _ = usable_matchers(embedder, ["chroma_align", "roll_align"])
    for rendering in renderings:
        summarised = read_summarised(shards(results, embedder, f"queries_{rendering}"))
        for factor in factors:
            compressions = (settings["chroma_compression"], settings["roll_compression"])
            reference = recordings(coarser(whole, factor), settings["layer"], pitch, *compressions)
            queries = chosen_queries(
                recordings(coarser(summarised, factor), settings["layer"], pitch, *compressions), seconds, count
            )
            for matcher in matchers:
                rate, answers = queries_per_second(matcher, reference, queries, seconds, settings)
                yield {
                    "embedder": embedder,
                    "rendering": rendering,
                    "matcher": matcher,
                    "frame_hz": reference.hz,
                    "top1": top1(answers, queries, reference),
                    "queries_per_s": rate,
                    "queries": len(queries.ids),
                }


def chosen_queries(every_query: Recordings, seconds: float, count: int) -> Recordings:
    """``count`` queries of ``seconds`` (their ids say the length: workflow_scripts/identification/queries.py),
    spread over the corpus (every k-th)."""
    length = [row for row, query in enumerate(every_query.ids) if query_seconds(query) == seconds]
    return subset(every_query, length[:: max(1, len(length) // count)][:count])


def window_agreement(results: Path, config: dict, embedder: str, pieces: int, seconds: float, hop: float) -> dict:
    """Cosine between pooled-from-the-whole-piece windows and the same audio embedded as clips."""
    settings = config["identification"]
    reference = settings["reference"]
    summarised = read_summarised(shards(results, embedder, f"whole_{reference}")[:pieces])
    model = build_embedder(embedder, embedder_settings(config, embedder))
    if type(model).read_clips is not Embedder.read_clips:
        # It reads the manifest's notes, not audio (pianoroll): its frames hold only the notes
        # sounding in them; cutting its clips means re-timing notes (identification/queries.py), not done here.
        return {"embedder": embedder, "windows": 0, "note": "not measured: it reads the notes, not audio"}
    rate = config["render"]["sample_rate"]
    span = int(round(seconds * summarised.hz))
    similarities = []
    for piece, means, frames in zip(summarised.pieces, summarised.means, summarised.frames):
        audio_folder = results / "identification/audio" / reference
        (recording,) = read_snippet_audio(
            audio_folder / f"{piece}.flac", pq.read_table(audio_folder / f"{piece}.snippets.parquet")
        )
        pooled = sliding_windows(layer_of(means, settings["layer"]), frames, span)
        starts = np.arange(0, len(pooled), max(1, int(round(hop * summarised.hz))))
        clips = [recording[int(start / summarised.hz * rate) :][: int(seconds * rate)] for start in starts]
        _, clip_summaries = model.embed_with_summaries(clips, summarised.hz)
        for start, summary in zip(starts, clip_summaries):
            clip = frame_mean(layer_of(summary.means.astype(np.float32), settings["layer"]), summary.frames)
            window = pooled[start]
            similarities.append(float(clip @ window / max(np.linalg.norm(clip) * np.linalg.norm(window), 1e-12)))
    similarities = np.array(similarities)
    return {
        "embedder": embedder,
        "windows": len(similarities),
        "mean_cosine": float(similarities.mean()),
        "p05_cosine": float(np.percentile(similarities, 5)),
        "min_cosine": float(similarities.min()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results")
    parser.add_argument("--configfile", type=Path, default=REPO_ROOT / "configs/identification.yaml")
    parser.add_argument("--rendering", default="organ")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=2000, help="alignment pairs timed against librosa")
    parser.add_argument("--window-pieces", type=int, default=10)
    parser.add_argument("--window-hop", type=float, default=2.0)
    parser.add_argument("--skip-librosa", action="store_true")
    parser.add_argument("--tuning-renderings", default="organ,pianoDown3")
    parser.add_argument("--rate-factors", default="1,2,4", help="frame rates: the run's frame_hz divided by each")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"which of {','.join(SECTIONS)} to run")
    arguments = parser.parse_args()
    sections = set(arguments.sections.split(","))
    config = run_config(arguments.configfile)
    settings = config["identification"]
    report = {"matchers": [], "alignment": None, "shortlist": {}, "tuning": [], "rates": [], "windows": []}
    for embedder in config["embedders"]:
        pitch = declaration(embedder).pitch_classes
        matchers, _ = usable_matchers(embedder, settings["matchers"])
        layer, compression = settings["layer"], settings["chroma_compression"]
        reference = recordings(
            read_summarised(shards(arguments.results, embedder, f"whole_{settings['reference']}")),
            layer,
            pitch,
            compression,
            settings["roll_compression"],
        )
        every_query = recordings(
            read_summarised(shards(arguments.results, embedder, f"queries_{arguments.rendering}")),
            layer,
            pitch,
            compression,
            settings["roll_compression"],
        )
        queries = chosen_queries(every_query, arguments.seconds, arguments.queries)
        if any(name in LEARNED for name in matchers):
            # cosine_lda's projection as the identify stage fits it, from this rendering's queries only.
            seen = training_pieces(arguments.results / "splits" / next(iter(config["variants"])) / "by_piece.parquet")
            settings = {
                **settings,
                "projection": learned_projection(
                    reference, {arguments.rendering: every_query}, arguments.seconds, seen
                ),
            }
        if "matchers" in sections:
            for row in matcher_rows(reference, queries, arguments.seconds, settings, matchers):
                report["matchers"].append({"embedder": embedder, **row})
                print(json.dumps(report["matchers"][-1]), flush=True)
        renderings = arguments.tuning_renderings.split(",")
        if pitch is not None and "shortlist" in sections:
            for rendering in renderings:
                these = chosen_queries(
                    recordings(
                        read_summarised(shards(arguments.results, embedder, f"queries_{rendering}")),
                        layer,
                        pitch,
                        compression,
                        settings["roll_compression"],
                    ),
                    arguments.seconds,
                    arguments.queries,
                )
                row = {"embedder": embedder, "rendering": rendering}
                row.update(shortlist_against_full(reference, these, arguments.seconds, settings))
                report["shortlist"].setdefault(embedder, []).append(row)
                print(json.dumps(row), flush=True)
        if pitch is not None and report["alignment"] is None and "alignment" in sections and not arguments.skip_librosa:
            report["alignment"] = alignment_against_librosa(reference, queries, arguments.pairs)
            print(json.dumps(report["alignment"]), flush=True)
        if pitch is not None and "tuning" in sections:
            for row in tuning_rows(
                arguments.results, embedder, settings, renderings, arguments.seconds, arguments.queries
            ):
                report["tuning"].append(row)
                print(json.dumps(row), flush=True)
        if pitch is not None and "rates" in sections:
            factors = [int(factor) for factor in arguments.rate_factors.split(",")]
            for row in rate_rows(
                arguments.results, embedder, settings, renderings, arguments.seconds, arguments.queries, factors
            ):
                report["rates"].append(row)
                print(json.dumps(row), flush=True)
        if "windows" in sections:
            report["windows"].append(
                window_agreement(
                    arguments.results,
                    config,
                    embedder,
                    arguments.window_pieces,
                    arguments.seconds,
                    arguments.window_hop,
                )
            )
            print(json.dumps(report["windows"][-1]), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
