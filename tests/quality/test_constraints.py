"""lit_gpt/quality/constraints.py: IFEval-kind constraints drawn onto instructions, and answers scored by checks."""

import random

import pytest

from lit_gpt.eval import ifeval
from lit_gpt.quality.constraints import (ConstraintScorer, add_constraints, checked_constraints, constraint_kinds,
                                         draw_constraints)
from lit_gpt.quality.scored_records import ScoringExample, scoring_example
from lit_gpt.utils import UserError

ROWS = [{"instruction": f"Describe animal number {i}.", "input": "", "output": "A cat.", "source": "s"}
        for i in range(40)]
LOWERCASE, NO_COMMA = "change_case:english_lowercase", "punctuation:no_comma"


def test_the_kinds_are_ifevals_25():
    kinds = constraint_kinds()
    assert len(kinds) == 25 and LOWERCASE in kinds and "detectable_format:json_format" in kinds
    prompts = ifeval.load_prompts()
    assert {i for p in prompts for i in p.instruction_id_list} == set(kinds)


def test_each_row_gets_its_draw_from_the_seed_and_its_position():
    rows = add_constraints(ROWS, 2, seed=7)
    assert rows == add_constraints(ROWS, 2, seed=7)
    assert add_constraints(ROWS[:3], 2, seed=7) == rows[:3]  # the rows after it do not change a row's draw
    assert rows != add_constraints(ROWS, 2, seed=8)
    state = random.getstate()
    add_constraints(ROWS[:2], 1, seed=1)
    assert random.getstate() == state  # lm-eval draws from `random`: the caller's state is kept
    _, conflicts = ifeval.instruction_registry()
    for original, row in zip(ROWS, rows):
        ids = [c["id"] for c in row["constraints"]]
        assert len(ids) == 2 and ids[1] not in conflicts.get(ids[0], {ids[0]}) and ids[0] not in conflicts.get(ids[1], ())
        assert row["instruction"].startswith(original["instruction"] + " ") and len(row["instruction"]) > len(
            original["instruction"]) + 20
        assert "output" not in row and row["source"] == "s" and row["input"] == ""
    assert len({c["id"] for row in rows for c in row["constraints"]}) > 10  # the draw spreads over the kinds


def test_a_drawn_description_is_what_the_kind_writes_from_its_arguments():
    """The stored kwargs rebuild the very description that was appended (what IFEval's checker rebuilds)."""
    registry, _ = ifeval.instruction_registry()
    for i in range(30):
        instruction = f"Tell me about city {i}."
        for c in draw_constraints(instruction, 1, random.Random(i), constraint_kinds()):
            checker = registry[c["id"]](c["id"])
            assert checker.build_description(**{k: v for k, v in c["kwargs"].items() if v}) == c["description"]


def test_kinds_can_be_restricted_and_conflicts_end_the_draw_early():
    rows = add_constraints(ROWS[:5], 3, seed=0, kinds=[LOWERCASE, "change_case:english_capital"])
    assert all(len(r["constraints"]) == 1 for r in rows)  # the two conflict: one each, not three
    with pytest.raises(UserError, match="--kinds: unknown constraint kind\\(s\\) lowercase; the kinds are: "):
        add_constraints(ROWS[:1], 1, seed=0, kinds=["lowercase"])
    with pytest.raises(UserError, match="--count must be at least 1"):
        add_constraints(ROWS[:1], 0, seed=0)


@pytest.mark.parametrize(("constraints", "output", "score"), [
    ([{"id": LOWERCASE, "kwargs": {}}], "this answer is written in plain english words, all of them in lowercase.",
     1.0),
    ([{"id": LOWERCASE, "kwargs": {}}], "Not In Lowercase.", 0.0),
    ([{"id": LOWERCASE, "kwargs": {}}, {"id": NO_COMMA, "kwargs": {}}],
     "this answer is written in plain english words, all of them in lowercase.", 0.5),  # lowercase, with a comma
    ([{"id": "length_constraints:number_words", "kwargs": {"num_words": 5, "relation": "at least"}}],
     "one two three four five six", 1.0),
    ([{"id": "length_constraints:number_words", "kwargs": {"num_words": 5, "relation": "at least"}}], "one two",
     0.0),
])
def test_an_answer_scores_the_share_of_its_constraints_it_follows(constraints, output, score):
    record = {"instruction": "Say something.", "input": "", "output": output, "constraints": constraints}
    example = scoring_example(3, record)
    assert example.constraints == constraints
    assert ConstraintScorer().score([example]) == [{"score": score}]


def test_the_constraints_are_part_of_what_a_score_is_cached_for():
    plain = ScoringExample(0, "Say it.", "", "ok")
    constrained = ScoringExample(0, "Say it.", "", "ok", [{"id": LOWERCASE, "kwargs": {}}])
    other = ScoringExample(0, "Say it.", "", "ok", [{"id": NO_COMMA, "kwargs": {}}])
    assert len({plain.content_hash, constrained.content_hash, other.content_hash}) == 3
    assert plain.content_hash == ScoringExample(0, "Say it.", "", "ok", []).content_hash


@pytest.mark.parametrize("bad", [None, [], "lowercase", [{"id": "lowercase", "kwargs": {}}],
                                 [{"id": LOWERCASE, "kwargs": [1]}], [3]])
def test_a_row_without_valid_constraints_is_one_line_naming_it(bad):
    with pytest.raises(UserError, match="^row 4: "):
        checked_constraints(bad, "row 4")
    with pytest.raises(UserError, match="^row 8: "):
        ConstraintScorer().score([ScoringExample(7, "Say it.", "", "ok", bad)])


@pytest.mark.parametrize("kwargs", [{"shout": True}, {"num_words": "many", "relation": "at least"},
                                    {"num_words": 5, "relation": "roughly"}])
def test_arguments_a_kind_cannot_take_are_one_line_naming_the_row(kwargs):
    bad = [{"id": "length_constraints:number_words", "kwargs": kwargs}]
    with pytest.raises(UserError, match="^row 3: its constraints cannot be checked"):
        ConstraintScorer().score([ScoringExample(2, "Say it.", "", "ok", bad)])
