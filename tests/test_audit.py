from workflow_scripts.stages.audit import all_voices_similarity, audit_pieces, contour, group_counts

TUNE = [67, 69, 71, 72, 74, 72, 71, 69, 67, 67, 69, 71, 69, 67]


def harmonised(bass_shift: int, alto: list[int]) -> list[list[int]]:
    return [TUNE, alto, [p - 12 for p in TUNE[::-1]], [48 + ((i * bass_shift) % 7) for i in range(14)]]


def test_contour_ignores_key_and_repeated_notes():
    assert contour([60, 62, 62, 64]) == contour([65, 67, 67, 67, 69]) == (2, 2)


def test_voice_matching_does_not_depend_on_order_or_count():
    first = [contour(TUNE), contour([60, 64, 67, 60])]
    second = [
        contour([50, 54, 57, 50]),
        contour([62, 64, 66, 67, 69, 67, 66, 64, 62, 62, 64, 66, 64, 62]),
        contour([40, 41]),
    ]
    assert all_voices_similarity(first, second) == 1.0


def test_copies_and_reharmonisations_are_grouped_apart():
    alto = [64, 65, 67, 69, 67, 65, 64, 62, 64, 65, 64, 62, 60, 62]
    other_alto = [60, 60, 62, 64, 66, 60, 59, 57, 55, 60, 62, 64, 65, 55]
    voices = {
        "chorale": harmonised(3, alto),
        "chorale-copy": [[p + 2 for p in part] for part in harmonised(3, alto)],  # same music, other key
        "reharmonised": harmonised(5, other_alto),  # same tune, other lower voices
        "unrelated": [[60, 64, 62, 65, 59, 60, 67, 55], [55, 57, 59, 60], [48, 43], [36, 38]],
    }
    table, pairs = audit_pieces(voices, same_music_threshold=0.9, same_tune_threshold=0.75)
    groups = table.set_index("piece_id")
    assert groups.loc["chorale", "music_group"] == groups.loc["chorale-copy", "music_group"] == "chorale"
    assert groups.loc["reharmonised", "music_group"] == ""
    assert groups.loc["reharmonised", "tune_group"] == groups.loc["chorale", "tune_group"] == "chorale"
    assert groups.loc["unrelated", "tune_group"] == ""
    assert group_counts(table) == {
        "same_music_groups": 1,
        "pieces_in_same_music_groups": 2,
        "same_tune_groups": 1,
        "pieces_in_same_tune_groups": 3,
    }
    assert set(pairs.relation) == {"same_music", "same_tune"}
