"""Which score files make up the corpus, and the piece id of each.

Listing the corpus must be cheap because the Snakefile does it on every start-up:
this module finds music21's corpus folder without importing music21 and never
parses a score.

A collection file (an ABC tune book: O'Neill's 1850, Essen, Ryan's Mammoth) holds many
tunes; each tune is a piece of its own, found by a text scan of the file's ``X:`` lines
(music21 is never asked). Its id is the file stem and the tune's own number,
``0001-0050_tune17``, so ids stay put when tunes are added to other files.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow_scripts.music.tune_books import abc_tune_numbers

# Formats music21 parses as scores, most preferred first: where one piece id exists
# in several formats (music21's Bach corpus has bwv277 as .krn and .mxl), the
# earliest format in this list is kept.
SCORE_FORMATS = (".mxl", ".musicxml", ".xml", ".krn", ".mei", ".abc", ".mid", ".midi")
# Roman-numeral analyses (.rntxt) describe chorales that are already in the corpus; they
# count as pieces only with corpus.analyses_as_pieces (music21 realises each numeral as a
# chord), which is how the published report arrived at 430 pieces from 410 chorales.
ANALYSIS_FORMATS = (".rntxt",)
PIECE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


class CorpusError(ValueError):
    """The corpus configuration or its files cannot give a usable list of pieces."""


@dataclass(frozen=True)
class ScoreSource:
    piece_id: str
    path: Path
    # In a collection file: which tune (0-based, in file order) and its own number (ABC X:).
    tune_index: int | None = None
    tune_number: int | None = None

    @property
    def format(self) -> str:
        return self.path.suffix.lower().lstrip(".")


def expand_collection(path: Path, piece_id: str) -> list[ScoreSource]:
    """One source per tune of an ABC file holding several tunes; the file itself otherwise."""
    numbers = abc_tune_numbers(path) if path.suffix.lower() == ".abc" else []
    if len(numbers) < 2:
        return [ScoreSource(piece_id, path)]
    seen: dict[int, int] = {}
    sources = []
    for index, number in enumerate(numbers):
        seen[number] = seen.get(number, 0) + 1
        # A number used twice in one file (it happens in hand-made books) gets its occurrence.
        suffix = f"tune{number}" if seen[number] == 1 else f"tune{number}.{seen[number]}"
        sources.append(ScoreSource(f"{piece_id}_{suffix}", path, tune_index=index, tune_number=number))
    return sources


def piece_id_from_path(path: Path) -> str:
    """A stable, filesystem-safe id from the file name: the stem with unsafe characters as '_'."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)
    safe = safe.lstrip("._-")
    if not safe:
        raise CorpusError(f"{path}: the file name gives an empty piece id; rename the file.")
    return safe


def music21_corpus_folder(composer: str) -> Path:
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            "corpus.source is 'music21' but music21 is not installed; "
            "run the README's set-up command or `pip install music21`."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "corpus" / composer
    if not folder.is_dir():
        raise CorpusError(f"corpus.composer '{composer}': music21 has no corpus folder {folder}.")
    return folder


def list_score_files(folder: Path, include_analyses: bool = False) -> list[Path]:
    """Score files under ``folder`` (recursively); analyses too with ``include_analyses``."""
    suffixes = SCORE_FORMATS + (ANALYSIS_FORMATS if include_analyses else ())
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in suffixes)


def assign_piece_ids(paths: list[Path], allow_format_duplicates: bool) -> list[ScoreSource]:
    """One source per piece id (per tune for collection files).

    Two files with one id in different formats are the same piece written twice; with
    ``allow_format_duplicates`` the preferred format is kept. Anything else sharing an
    id is an error naming both files, because silently dropping a score changes the
    class set.
    """
    by_id: dict[str, Path] = {}
    for path in paths:
        piece_id = piece_id_from_path(path)
        kept = by_id.get(piece_id)
        if kept is None:
            by_id[piece_id] = path
            continue
        if not allow_format_duplicates or kept.suffix.lower() == path.suffix.lower():
            raise CorpusError(
                f"duplicate piece id '{piece_id}': {kept} and {path}. "
                "Rename one of the files so every piece id is unique."
            )
        rank = (SCORE_FORMATS + ANALYSIS_FORMATS).index
        if rank(path.suffix.lower()) < rank(kept.suffix.lower()):
            by_id[piece_id] = path
    sources = [
        source for piece_id in sorted(by_id, key=natural_key) for source in expand_collection(by_id[piece_id], piece_id)
    ]
    refuse_ids_equal_but_for_case(sources)
    return sources


def refuse_ids_equal_but_for_case(sources: list[ScoreSource]) -> None:
    """A piece id names output files, and a laptop's file system (macOS, Windows) often
    ignores case: there ``Case.flac`` and ``case.flac`` are one file, so one piece would
    overwrite the other."""
    by_folded: dict[str, ScoreSource] = {}
    for source in sources:
        other = by_folded.setdefault(source.piece_id.casefold(), source)
        if other.piece_id != source.piece_id:
            raise CorpusError(
                f"piece ids '{other.piece_id}' ({other.path}) and '{source.piece_id}' ({source.path}) "
                "differ only in case, and on a file system that ignores case their outputs would be one file. "
                "Rename one of the files."
            )


def natural_key(text: str) -> list[Any]:
    """Sort 'bwv2.6' before 'bwv10.7', as a reader expects."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def select_pieces(sources: list[ScoreSource], pieces: list[str], max_pieces: int | None) -> list[ScoreSource]:
    if pieces:
        known = {source.piece_id: source for source in sources}
        unknown = [piece for piece in pieces if piece not in known]
        if unknown:
            raise CorpusError(
                f"corpus.pieces names unknown piece ids {unknown}; "
                f"known ids look like {sorted(known, key=natural_key)[:5]} "
                "(see results/corpus/sources.tsv after a dry run)."
            )
        sources = [known[piece] for piece in dict.fromkeys(pieces)]
    if max_pieces is not None:
        sources = sources[:max_pieces]
    if not sources:
        raise CorpusError("the corpus selection is empty; check corpus.folder, corpus.pieces and corpus.max_pieces.")
    return sources


def discover_sources(corpus_config: dict[str, Any]) -> list[ScoreSource]:
    """The pieces the workflow runs on, from the validated ``corpus`` config section."""
    source = corpus_config["source"]
    analyses = bool(corpus_config.get("analyses_as_pieces", False))
    if source == "music21":
        files = list_score_files(music21_corpus_folder(corpus_config["composer"]), analyses)
        sources = assign_piece_ids(files, allow_format_duplicates=True)
    elif source == "folder":
        folder_setting = corpus_config.get("folder")
        if not folder_setting:
            raise CorpusError("corpus.source is 'folder' but corpus.folder is not set.")
        folder = Path(folder_setting)
        if not folder.is_dir():
            raise CorpusError(f"corpus.folder '{folder}' is not a folder.")
        files = list_score_files(folder, analyses)
        if not files:
            raise CorpusError(f"corpus.folder '{folder}' holds no score files ({', '.join(SCORE_FORMATS)}).")
        sources = assign_piece_ids(files, allow_format_duplicates=False)
    else:  # the schema admits no other value
        raise CorpusError(f"corpus.source '{source}' is not 'music21' or 'folder'.")
    return select_pieces(sources, corpus_config.get("pieces") or [], corpus_config.get("max_pieces"))


def sources_table(sources: list[ScoreSource]):
    import pandas as pd  # not at module level: the Snakefile imports this module on every start

    return pd.DataFrame(
        {
            "piece_id": [source.piece_id for source in sources],
            "format": [source.format for source in sources],
            "source": [str(source.path) for source in sources],
            # Blank for a file that is one piece; the ABC X: number for a tune of a collection.
            "tune": ["" if source.tune_number is None else str(source.tune_number) for source in sources],
        }
    )


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    from workflow_scripts.plumbing.io_utils import write_tsv_atomic

    sources = discover_sources(snakemake.params.corpus)
    write_tsv_atomic(sources_table(sources), snakemake.output.sources)
