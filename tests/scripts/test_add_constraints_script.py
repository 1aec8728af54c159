"""scripts/add_constraints.py: constraints appended to a file's instructions, kept beside them; user errors in one
line with the input untouched."""

import json

from helpers import assert_one_line_error, run_script


def test_rows_get_their_constraints_and_keep_their_fields(capsys, tmp_path, alpaca_rows):
    data = tmp_path / "data.json"
    data.write_text(json.dumps(alpaca_rows[:4]))
    out = tmp_path / "constrained.jsonl"
    code, _, err = run_script(capsys, "add_constraints", "--data_path", data, "--output", out, "--limit", "3",
                              "--kinds", "[punctuation:no_comma, detectable_format:title]", "--count", "2")
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3
    for original, row in zip(alpaca_rows, rows):
        assert row["instruction"].startswith(original["instruction"].rstrip() + " ")
        assert row["input"] == original.get("input", "") and "output" not in row
        assert sorted(c["id"] for c in row["constraints"]) == ["detectable_format:title", "punctuation:no_comma"]


def test_user_mistakes_are_one_line_and_leave_the_input(capsys, tmp_path, alpaca_rows):
    data = tmp_path / "data.json"
    text = json.dumps(alpaca_rows[:2] + [{"instruction": "", "output": "x"}])
    data.write_text(text)
    code, _, err = run_script(capsys, "add_constraints", "--data_path", data, "--output", data)
    assert_one_line_error(code, err, "--output")
    code, _, err = run_script(capsys, "add_constraints", "--data_path", data, "--output", tmp_path / "o.json",
                              "--kinds", "[shouting]")
    assert_one_line_error(code, err, "--kinds: unknown constraint kind(s) shouting")
    code, _, err = run_script(capsys, "add_constraints", "--data_path", data, "--output", tmp_path / "o.json")
    assert_one_line_error(code, err, f"{data}: row 3: ")
    assert data.read_text() == text and not (tmp_path / "o.json").exists()
