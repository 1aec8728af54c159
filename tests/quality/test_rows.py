"""lit_gpt/quality/rows.py: every row becomes a scoring row, also those the data pipeline rejects."""

from lit_gpt.quality.rows import ScoringRow, to_scoring_row


def test_to_example_keeps_rows_the_pipeline_rejects():
    assert to_scoring_row(0, {"instruction": "Do it.", "output": ""}) == ScoringRow(0, "Do it.", "", "")
    lima = to_scoring_row(1, {"conversations": ["Hi?", "Hello!", "Bye?", "Bye!"]})
    assert (lima.instruction, lima.output) == ("Hi?", "Hello!")
