"""The code's shape outside tests: no module over 450 lines and no function or method over 80, so that a reader can
hold a module in mind and a function does one job."""

import ast

from helpers import ROOT

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
CHECKED_DIRS = ("lit_gpt", "scripts", "finetune", "generate")
ALLOWED: set = set()  # files excused while they are rewritten (none now)


def checked_files() -> list:
    files = sorted(path for folder in CHECKED_DIRS for path in (ROOT / folder).rglob("*.py"))
    return [path for path in files if path.relative_to(ROOT).as_posix() not in ALLOWED]


def shape_problems(source: str, name: str) -> list[str]:
    """'name: N lines' for the module (when too long) and for each function or method that is (decorators and
    docstring included)."""
    problems = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        problems.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - first + 1
            if length > MAX_FUNCTION_LINES:
                problems.append(f"{name}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    return problems


def test_the_checker_finds_long_functions_and_modules():
    long_function = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    assert shape_problems(long_function, "m.py") == [f"m.py:1 f: {MAX_FUNCTION_LINES + 1} lines (at most 80)"]
    method = "class C:\n    @staticmethod\n    def g():\n" + "        x = 1\n" * (MAX_FUNCTION_LINES - 1)
    assert [p.split(":")[1] for p in shape_problems(method, "m.py")] == ["3 g"]  # the decorator counts
    assert shape_problems("x = 1\n" * (MAX_MODULE_LINES + 1), "m.py") == ["m.py: 451 lines (at most 450)"]
    assert shape_problems("def f():\n" + "    x = 1\n" * (MAX_FUNCTION_LINES - 1), "m.py") == []


def test_modules_and_functions_are_short():
    problems = [p for path in checked_files() for p in shape_problems(path.read_text(), path.relative_to(ROOT).as_posix())]
    assert problems == []


def test_the_allowed_files_exist():
    """A file renamed or removed must leave the allow-list too (else the list would excuse nothing, silently)."""
    assert all((ROOT / name).is_file() for name in ALLOWED)
