"""scripts/dev/sweep_user_errors.py: --only picks the cases to run by name (the whole sweep takes minutes)."""

import importlib.util

import pytest

from helpers import ROOT


@pytest.fixture
def sweep(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts" / "dev"))  # its cases beside it, as when run as a script
    path = ROOT / "scripts" / "dev" / "sweep_user_errors.py"
    spec = importlib.util.spec_from_file_location("sweep_user_errors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = [(name, "error", [], [], None) for name in ("convert_gguf with head_count 0", "recipe step running download.py",
                                                    "finetune --grad_clip -1", "Recipe placeholder {data!r}")]


def test_only_picks_cases_by_a_regular_expression_on_their_names(sweep):
    assert sweep.selected(CASES, None) == CASES
    assert [c[0] for c in sweep.selected(CASES, "^recipe|gguf")] == ["convert_gguf with head_count 0",
                                                                    "recipe step running download.py",
                                                                    "Recipe placeholder {data!r}"]
    assert sweep.selected(CASES, r"--grad_clip -1$") == [CASES[2]]
    with pytest.raises(SystemExit, match=r"^error: --only 'nothing' matches no case; the cases: convert_gguf with "):
        sweep.selected(CASES, "nothing")


def test_only_must_be_a_regular_expression(sweep, capsys):
    assert sweep.parse_options(["--only", "^recipe"]).only == "^recipe"
    assert sweep.parse_options([]).only is None
    with pytest.raises(SystemExit):
        sweep.parse_options(["--only", "recipe ("])
    assert "--only 'recipe (' is not a regular expression" in capsys.readouterr().err
