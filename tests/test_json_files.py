"""lit_gpt/json_files.py: read_json reads what it should and refuses crafted files in one line."""

import json

import pytest

from lit_gpt.json_files import JSONBoundsError, parse_json, read_json
from lit_gpt.utils import UserError


def test_read_json_reads_objects_also_after_a_bom(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"\xef\xbb\xbf" + '{"n_layer": 2, "eps": 1e-05, "name": "Gr\u00fc\u00df", "a": [[1]]}'.encode())
    assert read_json(path, "model config") == {"n_layer": 2, "eps": 1e-05, "name": "Gr\u00fc\u00df", "a": [[1]]}
    path.write_text("[1, 2]")
    assert read_json(path, want_object=False) == [1, 2]


@pytest.mark.parametrize("content, problem", [
    (b'{"a": 1,}', "not valid JSON (Expecting property name enclosed in double quotes at line 1, column 9)"),
    (b'{"a": "\xff"}', "not UTF-8 (byte 7 is 0xff)"),
    (b'\xef\xbb\xbf{"a": "\xfe"}', "not UTF-8 (byte 10 is 0xfe)"),  # the offset counts the BOM
    (b'{"a": [' * 65 + b"]}" * 65, "nested more than 64 levels deep"),
    (b"[" * 100000 + b"]" * 100000, "nested more than 64 levels deep"),  # beyond Python's recursion limit
    ('{"a": 1}'.encode("utf-16"), "UTF-16 text, not UTF-8 (it starts with a UTF-16 byte-order mark)"),
    (b"\xfe\xff" + '{"a": 1}'.encode("utf-16-be"), "UTF-16 text, not UTF-8 (it starts with a UTF-16 byte-order mark)"),
    (b'{"a": 1,\n "n_layer": ' + b"9" * 101 + b"}", "line 2 holds a number of 101 digits (at most 100)"),
    (b'{"r": 1e999}', "line 1 holds a number too large for a float"),
    (b'{"eps": NaN}', "line 1 holds NaN, which JSON does not allow"),
    (b"[1, 2]", "it holds an array, not a JSON object"),
    (b"null", "it holds null, not a JSON object"),
])
def test_read_json_refuses_crafted_files_in_one_line(tmp_path, content, problem):
    path = tmp_path / "lit_config.json"
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        read_json(path, "model config", fix="convert the checkpoint again")
    assert str(e.value) == f"{path}: cannot read this model config: {problem}; convert the checkpoint again"
    with pytest.raises(UserError, match="model config not found"):
        read_json(tmp_path / "missing.json", "model config")


def test_parse_json_bounds_a_text_and_names_its_line_in_the_file():
    assert parse_json('{"a": [1, 2.5, NaN]}', allow_nan=True)["a"][:2] == [1, 2.5]
    for text, first_line, problem in (('{"a":\n' + "9" * 10 ** 6 + "}", 40, "line 41 holds a number of 1000000 digits"),
                                      ("[" * 100_000 + "]" * 100_000, 1, "nested more than 64 levels deep"),
                                      ('{"a": NaN}', 7, "line 7 holds NaN, which JSON does not allow")):
        with pytest.raises(JSONBoundsError, match=problem):
            parse_json(text, first_line=first_line)
    with pytest.raises(json.JSONDecodeError):
        parse_json('{"a": }')
