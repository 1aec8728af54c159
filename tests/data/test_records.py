"""lit_gpt/data/records.py: JSON, JSON lines, CSV and gzip files; bad input names its file and row."""

import gzip

import pytest

from lit_gpt.data.records import iter_records, load_records
from lit_gpt.utils import UserError


def test_read_formats(tmp_path):
    (tmp_path / "a.csv").write_text('\ufeffoutput,instruction\n"two\nlines, quoted",q\n\n"x",y\n', encoding="utf-8")
    assert load_records(tmp_path / "a.csv") == [{"output": "two\nlines, quoted", "instruction": "q"},
                                                {"output": "x", "instruction": "y"}]
    wheres = [w for w, _ in iter_records(tmp_path / "a.csv")]
    assert wheres == [f"{tmp_path / 'a.csv'}: row 1 (line 2)", f"{tmp_path / 'a.csv'}: row 2 (line 5)"]
    # JSON lines may hold U+2028, which str.splitlines() would split on
    (tmp_path / "b.json").write_text('{"q": "a\u2028b", "a": "c"}\n\n{"q": "d", "a": "e"}\n', encoding="utf-8")
    assert load_records(tmp_path / "b.json", columns={"instruction": "q", "output": "a"}) == [
        {"instruction": "a\u2028b", "output": "c"}, {"instruction": "d", "output": "e"}]
    (tmp_path / "c.json").write_text('{"data": [{"instruction": "q", "output": "a"}]}')
    assert load_records(tmp_path / "c.json", format="json") == [{"instruction": "q", "output": "a"}]
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(b'{"instruction": "q", "output": "a"}\n'))  # oasst1's files
    assert load_records(tmp_path / "d.jsonl.gz") == [{"instruction": "q", "output": "a"}]


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", "", "the file is empty"),
    ("blank.csv", "\n\n", "the file is empty"),
    ("latin1.jsonl", '{"instruction": "caf\xe9"}\n'.encode("latin-1"), "line 1: not valid UTF-8"),
    ("late.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": "\xff"}\n', "line 3: not valid UTF-8"),
    ("broken.jsonl", '{"instruction": "q", "output": "a"}\n{"instruction": "q", "output"\n', "line 2: not valid JSON"),
    ("list.jsonl", '["q", "a"]\n', "line 1: expected a JSON object"),
    ("broken.json", '[{"instruction": "q",\n "output": }]', "line 2: not valid JSON"),
    ("quote.csv", 'instruction,output\nq,"a"b\n', "row 1 (line 2): malformed CSV"),
    ("open.csv", 'instruction,output\nq,a\nq2,"never closed\n', "row 2 (line 3): malformed CSV"),
    ("fields.csv", 'instruction,output\nq,a,extra\n', "row 1 (line 2): 3 fields, but the header has 2"),
    ("dup.csv", 'instruction,instruction,output\nq,q,a\n', "names column 'instruction' twice"),
    ("nocol.csv", 'question,output\nq,a\n', "no 'instruction' column (found: 'question', 'output')"),
    ("nofield.jsonl", '{"instruction": "q", "answer": "a"}\n', "row 1 has no 'output' field"),
    ("data.txt", "x", "cannot tell the file format"),
])
def test_unreadable_files_name_file_and_row(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError) as e:
        load_records(path, required=("instruction", "output"))
    assert str(path) in str(e.value) and message in str(e.value) and "\n" not in str(e.value)


def test_column_mapping_errors(tmp_path):
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(UserError, match="no 'reply' field to use as 'output'"):
        load_records(tmp_path / "qa.jsonl", columns={"instruction": "question", "output": "reply"},
                     required=("instruction", "output"))


def test_a_columns_mapping_that_no_row_matches_is_an_error(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "q1", "answer": "a1"}\n{"question": "q2", "answer": "a2", "ctx": "c"}\n')
    # "ctx" is in one row only: an optional field, fine
    rows = load_records(path, columns={"instruction": "question", "output": "answer", "input": "ctx"})
    assert rows[1]["input"] == "c" and "input" not in rows[0]
    with pytest.raises(UserError, match=r"no row has the field\(s\) 'contxt' named in --columns"):
        load_records(path, columns={"instruction": "question", "output": "answer", "input": "contxt"})
