"""Which segmentation gives the report's snippet counts (2,487 train + 521 test from 430 pieces)?

Counting snippets needs no audio: each score is parsed once with music21 for its measure
count as written, with its pickup (an incomplete first measure) and with its repeats
expanded; every combination of window, hop, pickup, repeats, tail rule and corpus
(410 scores, or 430 with the 20 Riemenschneider analyses) is then counted, and the test
snippets a by-snippet split would draw per piece (this workflow's rule,
min(n - 1, max(1, round(test_fraction * n))) for a piece of n >= 2 snippets).

    .venv/bin/python scripts/reconcile_counts.py [--facts /tmp/chorale_measures.json] [--top 15]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

REPORT_TRAIN, REPORT_TEST, REPORT_PIECES = 2487, 521, 430


def measure_facts(path: Path) -> dict:
    """Measures as written, whether the first is a pickup, and measures with repeats expanded."""
    import music21

    score = music21.converter.parse(str(path), forceSource=True, storePickle=False)
    part = score.parts[0] if len(score.parts) else score
    measures = list(part.getElementsByClass(music21.stream.Measure))
    first = measures[0]
    pickup = first.number == 0 or float(first.duration.quarterLength) < float(first.barDuration.quarterLength)
    try:
        expanded_part = score.expandRepeats().parts[0] if len(score.parts) else score.expandRepeats()
        expanded = len(list(expanded_part.getElementsByClass(music21.stream.Measure)))
    except Exception:  # noqa: BLE001 - music21 raises many types for repeats it cannot expand
        # such a piece keeps its written form
        expanded = len(measures)
    return {"measures": len(measures), "pickup": bool(pickup), "expanded": expanded}


def corpus_facts(cache: Path) -> dict[str, dict]:
    from workflow_scripts.stages.corpus import (
        ANALYSIS_FORMATS,
        assign_piece_ids,
        list_score_files,
        music21_corpus_folder,
    )

    if cache.exists():
        return json.loads(cache.read_text())
    folder = music21_corpus_folder("bach")
    facts = {
        source.piece_id: {**measure_facts(source.path), "analysis": False}
        for source in assign_piece_ids(list_score_files(folder), allow_format_duplicates=True)
    }
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in ANALYSIS_FORMATS:
            facts[path.stem] = {**measure_facts(path), "analysis": True}
    cache.write_text(json.dumps(facts))
    return facts


def snippets_of(measures: int, window: int, hop: int, keep_tail: bool) -> int:
    if keep_tail:  # a window starts every hop; the last ones may be short
        return -(-measures // hop)
    return max(0, (measures - window) // hop + 1)


def test_snippets(counts: list[int], test_fraction: float) -> int:
    return sum(min(n - 1, max(1, round(test_fraction * n))) for n in counts if n >= 2)


def search(facts: dict[str, dict], test_fractions=(0.15, 0.17, 0.2)) -> list[dict]:
    rows = []
    for window, analyses, pickup, repeats, keep_tail in itertools.product(
        range(1, 9), (False, True), ("kept", "dropped"), ("written", "expanded"), (False, True)
    ):
        pieces = [fact for fact in facts.values() if analyses or not fact["analysis"]]
        for hop in range(1, window + 1):
            counts = []
            for fact in pieces:
                measures = fact["expanded"] if repeats == "expanded" else fact["measures"]
                measures -= int(pickup == "dropped" and fact["pickup"])
                counts.append(snippets_of(measures, window, hop, keep_tail))
            total = sum(counts)
            row = {
                "window": window,
                "hop": hop,
                "pieces": len(pieces),
                "pickup": pickup,
                "repeats": repeats,
                "tail": "kept" if keep_tail else "dropped",
                "snippets": total,
                "off_by": total - (REPORT_TRAIN + REPORT_TEST),
            }
            for fraction in test_fractions:
                row[f"test@{fraction}"] = test_snippets(counts, fraction)
            rows.append(row)
    return sorted(rows, key=lambda row: (abs(row["off_by"]), row["pieces"] != REPORT_PIECES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--facts", type=Path, default=Path("/tmp/chorale_measures.json"), help="cache of the parsed measure counts"
    )
    parser.add_argument("--top", type=int, default=15)
    arguments = parser.parse_args()
    facts = corpus_facts(arguments.facts)
    analyses = sum(fact["analysis"] for fact in facts.values())
    print(
        f"{len(facts) - analyses} scores, {analyses} analyses; report: {REPORT_TRAIN} + {REPORT_TEST} = "
        f"{REPORT_TRAIN + REPORT_TEST} snippets from {REPORT_PIECES} pieces, "
        f"test share {REPORT_TEST / (REPORT_TRAIN + REPORT_TEST):.3f}"
    )
    import pandas as pd

    print(pd.DataFrame(search(facts)[: arguments.top]).to_string(index=False))


if __name__ == "__main__":
    main()
