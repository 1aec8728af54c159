"""lit_gpt/data/records.py: JSON, JSON lines, CSV, gzip, Parquet and Arrow files; bad input names its file and row."""

import gzip
import json
import re

import pytest

from lit_gpt.data.records import iter_jsonl, iter_records, load_records
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


def test_iter_jsonl_splits_on_newlines_only(tmp_path):
    """U+2028 (and other characters str.splitlines() splits on) may stand raw inside a JSON string; CRLF is fine."""
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": "x\u2028y\u0085z"}\r\n\n  \n{"a": 2}\n', encoding="utf-8", newline="")
    assert list(iter_jsonl(path)) == [(f"{path}:1", {"a": "x\u2028y\u0085z"}), (f"{path}:4", {"a": 2})]
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(f"{path}:2: not valid JSON")):
        list(iter_jsonl(path))


ROW = '{"instruction": "q", "output": "a"}'


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", "", "the file is empty"),
    ("blank.csv", "\n\n", "the file is empty"),
    ("latin1.jsonl", '{"instruction": "caf\xe9"}\n'.encode("latin-1"), "latin1.jsonl:1: not valid UTF-8"),
    ("late.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": "\xff"}\n', "late.jsonl:3: not valid UTF-8"),
    ("utf16.json", '[{"instruction": "q", "output": "a"}]'.encode("utf-16"),
     "utf16.json: UTF-16 text, not UTF-8 (it starts with a UTF-16 byte-order mark); save the file as UTF-8"),
    ("broken.jsonl", '{"instruction": "q", "output": "a"}\n{"instruction": "q", "output"\n',
     "broken.jsonl:2: not valid JSON"),
    ("list.jsonl", '["q", "a"]\n', "list.jsonl:1: expected a JSON object"),
    ("broken.json", '[{"instruction": "q",\n "output": }]', "broken.json:2: not valid JSON"),
    ("quote.csv", 'instruction,output\nq,"a"b\n', "row 1 (line 2): malformed CSV"),
    ("open.csv", 'instruction,output\nq,a\nq2,"never closed\n', "row 2 (line 3): malformed CSV"),
    ("fields.csv", 'instruction,output\nq,a,extra\n', "row 1 (line 2): 3 fields, but the header has 2"),
    ("dup.csv", 'instruction,instruction,output\nq,q,a\n', "names column 'instruction' twice"),
    ("nocol.csv", 'question,output\nq,a\n', "no 'instruction' column (found: 'question', 'output')"),
    ("nofield.jsonl", '{"instruction": "q", "answer": "a"}\n', "row 1 has no 'output' field"),
    ("data.txt", "x", "cannot tell the file format"),
    # crafted: json's parser would overflow the stack, Python would refuse the number in a ValueError traceback
    ("deep.json", "[" * 100_000 + "]" * 100_000, "deep.json: nested more than 64 levels deep; fix the file"),
    ("deep.jsonl", ROW + "\n" + '{"a": ' * 100_000 + "1" + "}" * 100_000,
     "deep.jsonl:2: nested more than 64 levels deep; fix or delete the line"),
    ("long.json", '[{"instruction": "q",\n "output": ' + "9" * 10 ** 6 + "}]",
     "long.json: line 2 holds a number of 1000000 digits (at most 100); fix the file"),
    ("long.jsonl", f"{ROW}\n{ROW}\n" + '{"a": ' + "9" * 10 ** 6 + "}\n",
     "long.jsonl: line 3 holds a number of 1000000 digits (at most 100); fix or delete the line"),
])
def test_unreadable_files_name_file_and_row(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError) as e:
        load_records(path, required=("instruction", "output"))
    assert str(path) in str(e.value) and message in str(e.value) and "\n" not in str(e.value)


def test_a_nan_in_a_row_is_still_read(tmp_path):
    """Rows exported by pandas may hold NaN: only a config (lit_gpt.json_files.read_json) refuses it."""
    (tmp_path / "nan.json").write_text('[{"instruction": "q", "output": "a", "score": NaN}]')
    assert str(load_records(tmp_path / "nan.json")[0]["score"]) == "nan"


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


# ---- Parquet and Arrow files (read with datasets) -------------------------------------------------------------------
@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """datasets' cache in tmp_path, not the user's ~/.cache/huggingface/datasets."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")


QA_ROWS = [{"question": "Largest planet?", "answer": "Jupiter.", "tags": ["space"], "meta": {"level": 1}},
           {"question": "Boiling point of water?", "answer": "100 C.", "tags": [], "meta": {"level": 2}}]


def write_dataset_files(rows: list, tmp_path) -> list:
    """rows as a .parquet file and an .arrow file, both written by datasets itself."""
    import datasets

    dataset = datasets.Dataset.from_list(rows)
    dataset.to_parquet(str(tmp_path / "qa.parquet"))
    dataset.save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "saved" / "data-00000-of-00001.arrow").rename(tmp_path / "qa.arrow")
    return [tmp_path / "qa.parquet", tmp_path / "qa.arrow"]


def test_parquet_and_arrow_rows_are_the_json_rows_with_the_same_mapping(tmp_path, datasets_cache):
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(row) + "\n" for row in QA_ROWS))
    columns = {"instruction": "question", "output": "answer"}
    expected = load_records(tmp_path / "qa.jsonl", columns=columns, required=("instruction", "output"))
    for path in write_dataset_files(QA_ROWS, tmp_path):
        # the script's --format of text files does not apply to them
        assert load_records(path, format="jsonl", columns=columns, required=("instruction", "output")) == expected
        assert [w for w, _ in iter_records(path)] == [f"{path}: row 1", f"{path}: row 2"]


def test_parquet_column_errors_name_the_columns(tmp_path, datasets_cache):
    parquet, _ = write_dataset_files(QA_ROWS, tmp_path)
    with pytest.raises(UserError) as e:
        load_records(parquet, columns={"instruction": "question", "output": "answr"})
    assert str(e.value) == (f"{parquet}: no column(s) 'answr' named in --columns (its columns: question, answer, "
                            "tags, meta); fix the --columns mapping")
    with pytest.raises(UserError) as e:
        load_records(parquet, columns={"instruction": "question"}, required=("instruction", "output"))
    assert str(e.value).startswith(f"{parquet}: no 'output' column (found: 'answer', 'tags', 'meta', 'instruction')")
