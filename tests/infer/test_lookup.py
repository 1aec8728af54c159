"""lit_gpt/infer/lookup.py: draft tokens copied from earlier in a sequence."""

import pytest

from lit_gpt.infer.lookup import PromptLookup


def test_the_draft_follows_the_latest_earlier_occurrence_of_the_longest_suffix():
    lookup = PromptLookup(tokens=3)
    lookup.start(0, [1, 2, 3, 9, 9, 2, 3, 7, 8, 5, 2, 3])
    # "2 3" occurred twice before; the latest (followed by 7 8 5) wins
    assert lookup.draft(0, limit=10) == [7, 8, 5]
    lookup.extend(0, [9])  # "2 3 9" occurred at the start, followed by 9 2 3 (the shorter "9" later: 2 3 7)
    assert lookup.draft(0, limit=10) == [9, 2, 3]
    assert lookup.draft(0, limit=2) == [9, 2]
    assert lookup.draft(0, limit=0) == []


def test_a_sequence_without_an_earlier_occurrence_gets_no_draft():
    lookup = PromptLookup(tokens=4)
    lookup.start(7, [1, 2, 3, 4])
    assert lookup.draft(7, limit=10) == []
    lookup.extend(7, [5, 1])  # "1" occurred at the start
    assert lookup.draft(7, limit=10) == [2, 3, 4, 5]


def test_a_loop_shorter_than_the_draft_is_copied_on():
    lookup = PromptLookup(tokens=7)
    lookup.start(0, [4, 5, 6, 5, 6])  # "5 6" last occurred two back: what followed it repeats with period 2
    assert lookup.draft(0, limit=10) == [5, 6, 5, 6, 5, 6, 5]
    lookup.start(1, [8, 8])
    assert lookup.draft(1, limit=10) == [8] * 7


def test_sequences_are_kept_apart_and_dropped():
    lookup = PromptLookup(tokens=2)
    lookup.start(0, [1, 2, 1])
    lookup.start(1, [1, 3, 1])
    assert lookup.draft(0, limit=5) == [2, 1] and lookup.draft(1, limit=5) == [3, 1]
    lookup.drop(0)
    assert list(lookup.sequences) == [1]
    with pytest.raises(ValueError):
        PromptLookup(tokens=0)
