"""Reading the JSON files a user hands us (configs, manifests, tokenizer configs, LoRA configs, reports) defensively:
any of them may be crafted, so size, nesting depth, number length and encoding are bounded, and every problem is one
line naming the file."""

import codecs
import json
from pathlib import Path
from typing import Any

from lit_gpt.utils import UserError

JSON_MAX_DEPTH = 64  # of nested objects/lists; our JSON files (configs, manifests, tokenizers) need fewer than 10
JSON_MAX_DIGITS = 100  # of a number: more is a crafted file (Python would parse a 4,300-digit int, slowly)
JSON_MAX_BYTES = 1 << 30  # a tokenizer.json of a 256k vocabulary is about 35 MB
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # what an editor's "Unicode" save starts with
UTF16_PROBLEM = "UTF-16 text, not UTF-8 (it starts with a UTF-16 byte-order mark)"


class _JSONValueProblem(ValueError):
    pass


class JSONBoundsError(ValueError):
    """JSON that parses but is crafted (`parse_json`): its one phrase, e.g. "nested more than 64 levels deep"."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_MAX_DIGITS:
        raise _JSONValueProblem(text, f"a number of {len(text.lstrip('-'))} digits (at most {JSON_MAX_DIGITS})")
    return int(text)


def _bounded_float(text: str) -> float:
    value = float(text)
    if len(text) > JSON_MAX_DIGITS + 10 or value in (float("inf"), float("-inf")):
        raise _JSONValueProblem(text, "a number too large for a float")
    return value


def _no_constant(text: str) -> None:
    raise _JSONValueProblem(text, f"{text}, which JSON does not allow")


def _json_depth(value: Any) -> int:
    """How deeply objects and lists nest in `value` (1 for a flat object), without recursion."""
    deepest, stack = 0, [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def read_json(path: "str | Path", what: str = "JSON file", fix: str = "", want_object: bool = True) -> Any:
    """The JSON value in `path`, read defensively: a file that is not UTF-8 (the byte offset named, also after a
    BOM; UTF-16 named as such), not JSON, nested deeper than JSON_MAX_DEPTH, with a number of more than
    JSON_MAX_DIGITS digits, NaN or Infinity, or (want_object) not an object becomes one line:
    `{path}: cannot read this {what}: {problem}; {fix}`."""
    path = Path(path)
    end = f"; {fix}" if fix else ""
    if not path.is_file():
        raise UserError(f"{path}: {what} not found{end}")

    def refuse(problem: str) -> UserError:
        return UserError(f"{path}: cannot read this {what}: {problem}{end}")

    if path.stat().st_size > JSON_MAX_BYTES:
        raise refuse(f"{path.stat().st_size:,} bytes, more than {JSON_MAX_BYTES:,}")
    raw = path.read_bytes()
    if raw.startswith(UTF16_BOMS):
        raise refuse(UTF16_PROBLEM)
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise refuse(f"not UTF-8 (byte {bom + e.start} is 0x{raw[bom + e.start]:02x})") from None
    try:
        value = parse_json(text)
    except json.JSONDecodeError as e:
        raise refuse(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except JSONBoundsError as e:
        raise refuse(str(e)) from None
    if want_object and not isinstance(value, dict):
        kinds = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}
        raise refuse(f"it holds {kinds.get(type(value), 'a number')}, not a JSON object")
    return value


def parse_json(text: str, first_line: int = 1, allow_nan: bool = False) -> Any:
    """json.loads within bounds: a number of more than JSON_MAX_DIGITS digits (Python would refuse one of 4,300 in a
    traceback), nesting deeper than JSON_MAX_DEPTH (json's parser would overflow the stack) and, unless allow_nan,
    NaN and Infinity raise JSONBoundsError naming the line (`first_line`: the text's first line in its file); text
    that is not JSON raises json.JSONDecodeError."""
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_float=_bounded_float,
                           parse_constant=None if allow_nan else _no_constant)
    except _JSONValueProblem as e:
        line = text.count("\n", 0, max(text.find(e.args[0]), 0)) + first_line
        raise JSONBoundsError(f"line {line} holds {e.args[1]}") from None
    except RecursionError:  # json's parser recurses: far deeper than JSON_MAX_DEPTH
        raise JSONBoundsError(f"nested more than {JSON_MAX_DEPTH} levels deep") from None
    if _json_depth(value) > JSON_MAX_DEPTH:
        raise JSONBoundsError(f"nested more than {JSON_MAX_DEPTH} levels deep")
    return value
