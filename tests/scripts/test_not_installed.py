"""Every user-facing script imports the installed package; from a checkout that was not installed it says so in one
line (how to install), instead of a traceback."""

import subprocess
import sys

import pytest

from helpers import ROOT

SCRIPTS = sorted([*(ROOT / "scripts").glob("*.py"), *(ROOT / "scripts" / "dev").glob("*.py"),
                  *(ROOT / "finetune").glob("*.py"), *(ROOT / "generate").glob("*.py")])


def test_no_script_edits_sys_path():
    for script in SCRIPTS:
        assert "sys.path.insert" not in script.read_text(), script


@pytest.mark.parametrize("script", [s for s in SCRIPTS if "dev" not in s.parts], ids=lambda p: p.name)
def test_a_script_without_the_installed_package_says_how_to_install(script, tmp_path):
    # -S -I: no site-packages (so neither lit_gpt's editable install nor torch), no PYTHONPATH, no user site
    result = subprocess.run([sys.executable, "-S", "-I", str(script), "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1 and "pip install -e ." in lines[0], result.stderr
