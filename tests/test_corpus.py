from pathlib import Path

import pytest

from workflow_scripts.stages.corpus import (
    CorpusError,
    assign_piece_ids,
    discover_sources,
    natural_key,
    piece_id_from_path,
    select_pieces,
)

MUSIC21_BACH = {"source": "music21", "composer": "bach", "pieces": [], "max_pieces": None}


def test_bach_corpus_has_one_score_per_piece_and_no_analyses():
    from music21 import corpus

    sources = discover_sources(MUSIC21_BACH)
    ids = [source.piece_id for source in sources]
    assert len(ids) == len(set(ids))
    assert not any(source.path.suffix == ".rntxt" for source in sources)
    # Every score music21 lists for Bach is present under its id, analyses excepted.
    music21_ids = {Path(str(path)).stem for path in corpus.getComposer("bach") if not str(path).endswith(".rntxt")}
    assert set(ids) == music21_ids
    assert 400 <= len(ids) <= 420


def test_a_piece_in_two_formats_keeps_the_musicxml_file():
    by_id = {source.piece_id: source for source in discover_sources(MUSIC21_BACH)}
    assert by_id["bwv277"].path.suffix == ".mxl"


def test_listing_the_corpus_does_not_import_music21(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from workflow_scripts.stages.corpus import discover_sources;"
        "discover_sources({'source': 'music21', 'composer': 'bach', 'pieces': [], 'max_pieces': None});"
        "assert 'music21' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_piece_ids_are_file_safe():
    assert piece_id_from_path(Path("a/My Chorale (v2).xml")) == "My_Chorale__v2_"
    assert piece_id_from_path(Path("bwv1.6.mxl")) == "bwv1.6"


def test_duplicate_ids_in_a_folder_name_both_files(tmp_path):
    first, second = tmp_path / "a" / "x.mxl", tmp_path / "b" / "x.mid"
    with pytest.raises(CorpusError, match=r"duplicate piece id 'x'.*a/x\.mxl.*b/x\.mid"):
        assign_piece_ids([first, second], allow_format_duplicates=False)


def test_folder_corpus_and_selection(chorale_folder):
    config = {"source": "folder", "folder": str(chorale_folder), "pieces": [], "max_pieces": 2}
    assert [source.piece_id for source in discover_sources(config)] == ["bwv2.6", "bwv3.6"]
    config.update(max_pieces=None, pieces=["bwv6.6", "bwv2.6"])
    assert [source.piece_id for source in discover_sources(config)] == ["bwv6.6", "bwv2.6"]


def test_unknown_piece_ids_are_named():
    sources = discover_sources(MUSIC21_BACH)
    with pytest.raises(CorpusError, match="bwv9999"):
        select_pieces(sources, ["bwv1.6", "bwv9999"], None)


def test_empty_or_missing_folder_is_explained(tmp_path):
    with pytest.raises(CorpusError, match="holds no score files"):
        discover_sources({"source": "folder", "folder": str(tmp_path), "pieces": [], "max_pieces": None})
    with pytest.raises(CorpusError, match="is not a folder"):
        discover_sources({"source": "folder", "folder": str(tmp_path / "nope"), "pieces": [], "max_pieces": None})


def test_natural_order():
    assert sorted(["bwv10.7", "bwv2.6", "bwv1.6"], key=natural_key) == ["bwv1.6", "bwv2.6", "bwv10.7"]


def test_analyses_as_pieces_adds_the_twenty_riemenschneider_analyses():
    sources = discover_sources({**MUSIC21_BACH, "analyses_as_pieces": True})
    analyses = [source for source in sources if source.path.suffix == ".rntxt"]
    assert len(sources) == 430 and len(analyses) == 20  # the published report's 430 pieces
    assert analyses[0].piece_id == "riemenschneider001"


def test_an_analysis_is_rendered_as_the_chords_it_spells():
    from workflow_scripts.music.segment import parse_score, snippet_windows
    from workflow_scripts.stages.corpus import music21_corpus_folder

    # riemenschneider001 analyses BWV 269 (3/4, a one-beat pickup, 22 measures m0-m21): "m0 b3 G: I".
    score = parse_score(music21_corpus_folder("bach") / "choraleAnalyses" / "riemenschneider001.rntxt", 60.0)
    assert score.measures == 22 and score.measure_numbers[:2] == [0, 1] and score.key == "G major"
    first_chord = sorted(event.key for event in score.events if event.onset_s == 0.0)
    assert first_chord == [67, 71, 74]  # G4 B4 D5: the tonic triad of G major
    assert len(snippet_windows(score, 4, 2)) == 10


TUNE_BOOK = """%abc-2.1
% A tune book: a file header, then tunes that each start at their X: line.
M:4/4
L:1/8

X: 7
T:First Tune
K:D
defg a2f2 | g2e2 d4 | defg a2f2 | g2e2 d4 |]

X: 12
T:Second Tune
K:G
GABc d2B2 | c2A2 G4 | GABc d2B2 | c2A2 G4 |]
"""


def test_a_tune_book_is_one_piece_per_tune_by_its_x_number(tmp_path):
    (tmp_path / "book.abc").write_text(TUNE_BOOK, encoding="utf-8")
    (tmp_path / "single.abc").write_text(TUNE_BOOK.split("\nX: 12")[0], encoding="utf-8")
    sources = discover_sources({"source": "folder", "folder": str(tmp_path), "pieces": [], "max_pieces": None})
    assert [(source.piece_id, source.tune_index, source.tune_number) for source in sources] == [
        ("book_tune7", 0, 7),
        ("book_tune12", 1, 12),
        ("single", None, None),  # a file of one tune keeps its plain id
    ]


def test_each_tune_is_parsed_alone_with_the_books_header(tmp_path):
    from workflow_scripts.music.segment import parse_score
    from workflow_scripts.music.tune_books import abc_tune_sha256, abc_tune_text

    book = tmp_path / "book.abc"
    book.write_text(TUNE_BOOK, encoding="utf-8")
    assert "L:1/8" in abc_tune_text(book, 1) and "First Tune" not in abc_tune_text(book, 1)
    first, second = parse_score(book, 120, tune_index=0), parse_score(book, 120, tune_index=1)
    assert (first.title, second.title) == ("First Tune", "Second Tune")
    assert first.events[0].key == 74 and second.events[0].key == 67  # D5 and G4
    assert first.measures == second.measures == 4
    # Editing one tune changes that tune's digest only.
    before = [abc_tune_sha256(book, index) for index in (0, 1)]
    book.write_text(TUNE_BOOK.replace("GABc d2B2 | c2A2 G4 |]", "GABc d2B2 | c2A2 G2z2 |]"), encoding="utf-8")
    after = [abc_tune_sha256(book, index) for index in (0, 1)]
    assert before[0] == after[0] and before[1] != after[1]


def test_a_number_used_twice_in_one_book_keeps_both_tunes(tmp_path):
    (tmp_path / "book.abc").write_text(TUNE_BOOK.replace("X: 12", "X: 7"), encoding="utf-8")
    sources = discover_sources({"source": "folder", "folder": str(tmp_path), "pieces": [], "max_pieces": None})
    assert [source.piece_id for source in sources] == ["book_tune7", "book_tune7.2"]


def test_oneills_collection_lists_every_tune_without_parsing():
    sources = discover_sources({"source": "music21", "composer": "oneills1850", "pieces": [], "max_pieces": None})
    ids = [source.piece_id for source in sources]
    # 39 books; two of them overlap (1556-1624 and 1577-1624), hence more than 1,850 tunes.
    assert len(ids) == len(set(ids)) > 1850 and len({source.path for source in sources}) == 39
    assert ids[0] == "0001-0050_tune1" and "1801-1850_tune1850" in ids
    # One book holds a single tune and keeps its file's id.
    assert [source.piece_id for source in sources if source.tune_number is None] == ["0731-0731"]


def test_ids_that_differ_only_in_case_are_refused_naming_both_files(tmp_path):
    for name in ("Case.musicxml", "case.musicxml"):
        (tmp_path / name).write_text("<score-partwise/>", encoding="utf-8")
    with pytest.raises(
        CorpusError, match=r"'Case' \(.*Case\.musicxml\) and 'case' \(.*case\.musicxml\) differ only in case"
    ):
        discover_sources({"source": "folder", "folder": str(tmp_path), "pieces": [], "max_pieces": None})
