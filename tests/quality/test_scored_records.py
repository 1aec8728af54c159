"""lit_gpt/quality/scored_records.py: every record becomes a scoring example, also those the data pipeline rejects."""

from lit_gpt.quality.scored_records import ScoringExample, scoring_example


def test_scoring_example_keeps_records_the_pipeline_rejects():
    assert scoring_example(0, {"instruction": "Do it.", "output": ""}) == ScoringExample(0, "Do it.", "", "")
    lima = scoring_example(1, {"conversations": ["Hi?", "Hello!", "Bye?", "Bye!"]})
    assert (lima.instruction, lima.output) == ("Hi?", "Hello!")
