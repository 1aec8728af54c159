"""scripts/mix_datasets.py: shell-style lists in-process, a one-line error from a real process.

The inputs are the `data` fixture in conftest.py."""

import importlib.util
import json
import subprocess
import sys

import pytest

from helpers import ROOT
from lit_gpt.utils import run_cli, space_separated_lists

pytestmark = pytest.mark.slow  # a real process


def load_script():
    spec = importlib.util.spec_from_file_location("mix_datasets_script", ROOT / "scripts" / "mix_datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(data, tmp_path, capsys):
    # shell-style lists (--inputs a b --weights 1 0.5), parsed in-process: a subprocess costs seconds of imports
    script = load_script()
    destination = tmp_path / "lima_dolly"
    argv = ["--inputs", str(data["lima"]), str(data["dolly"]), "--weights", "1", "0.5",
            "--destination_path", str(destination)]
    run_cli(script.main, args=space_separated_lists(argv, ("inputs", "weights", "counts")))
    out = capsys.readouterr().out
    assert "requested" in out and str(data["dolly"]) in out
    manifest = json.loads((destination / "manifest.json").read_text())
    assert manifest["weights"] == [1, 0.5] and [r["path"] for r in manifest["per_input"]] == argv[1:3]
    assert manifest["counts"]["train"] == sum(r["train"]["taken"] for r in manifest["per_input"])
    failed = subprocess.run([sys.executable, ROOT / "scripts" / "mix_datasets.py", "--inputs", data["lima"],
                             "--counts", "100000", "--destination_path", tmp_path / "big"],
                            capture_output=True, text=True, cwd=ROOT)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert str(data["lima"]) in failed.stderr and "--allow_oversample" in failed.stderr
