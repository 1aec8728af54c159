"""lit_gpt/data/normalize.py: the record layouts (Alpaca, LIMA, ShareGPT, messages) and the reasons a row is bad."""

import json

import pytest

from lit_gpt.data.normalize import BadRecord, normalize


def test_normalize_layouts():
    assert normalize({"instruction": "Q", "input": None, "output": 42}, source="d") == \
        {"instruction": "Q", "input": "", "output": "42", "source": "d"}
    lima = normalize({"conversations": ["q1", "a1", "q2", "a2"], "source": "stackexchange"})
    assert lima["instruction"] == "q1" and lima["output"] == "a1" and lima["source"] == "stackexchange"
    assert [m["role"] for m in lima["messages"]] == ["user", "assistant"] * 2
    sharegpt = normalize({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
                                            {"from": "human", "value": "unanswered"}], "id": 7, "score": "4.5"})
    assert "messages" not in sharegpt and sharegpt["output"] == "a"
    assert sharegpt["id"] == "7" and sharegpt["score"] == 4.5
    system = normalize({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "a"}]})
    assert system["messages"][0] == {"role": "system", "content": "S"} and system["instruction"] == "q"
    extra = normalize({"instruction": "q", "output": "a", "category": "qa", "tags": ["x"], "metadata": {"k": 1}})
    assert extra["metadata"] == {"k": 1, "category": "qa", "tags": '["x"]'}


@pytest.mark.parametrize("record, reason", [
    ({"instruction": "q", "output": "  \n"}, "empty output"),
    ({"instruction": "q"}, "missing output"),
    ({"output": "a"}, "missing instruction"),
    ({"instruction": "", "output": "a"}, "empty instruction"),
    ({"instruction": ["q"], "output": "a"}, "instruction is not text"),
    ({"conversations": ["q"]}, "conversation has no assistant answer"),
    ({"conversations": ["q", ""]}, "empty output"),
    ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"},
                   {"role": "assistant", "content": "a"}]}, "roles do not alternate"),
    ({"messages": [{"role": "wizard", "content": "a"}]}, "unknown role"),
    ({"instruction": "q", "output": "a", "score": "high"}, "score is not a number"),
])
def test_bad_records(record, reason):
    with pytest.raises(BadRecord, match=reason):
        normalize(record)


def test_read_instructions_takes_the_prompts_of_any_layout_and_the_fields_asked_for(tmp_path):
    from lit_gpt.data.normalize import read_instructions
    from lit_gpt.utils import UserError

    path = tmp_path / "rows.jsonl"
    rows = [{"instruction": "Add.", "input": "1 2", "constraints": [1]},
            {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]},
            {"instruction": "No answer yet."}, {"instruction": "Fourth."}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert read_instructions(path, limit=3, keep=("constraints",)) == [
        {"instruction": "Add.", "input": "1 2", "constraints": [1]}, {"instruction": "Hi?", "input": ""},
        {"instruction": "No answer yet.", "input": ""}]
    path.write_text(json.dumps({"instruction": "Fine."}) + "\n" + json.dumps({"output": "no instruction"}))
    with pytest.raises(UserError, match=f"^{path}:2: missing instruction; each row needs an instruction"):
        read_instructions(path)
