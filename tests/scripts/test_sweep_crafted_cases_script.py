"""scripts/dev/sweep_crafted_cases.py: its crafted GGUF files are refused for the reason each case names (and the
untouched one converts), checked in-process, so that the sweep's expectations hold without running it."""

import importlib.util

import pytest

import helpers
from helpers import ROOT
from lit_gpt.gguf.import_model import convert_gguf
from lit_gpt.utils import UserError


def load_cases():
    path = ROOT / "scripts" / "dev" / "sweep_crafted_cases.py"
    spec = importlib.util.spec_from_file_location("sweep_crafted_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_crafted_gguf_is_refused_for_its_reason(tmp_path):
    cases = load_cases().gguf_cases(tmp_path, helpers)
    assert len(cases) == 15 and all(argv[0] == "scripts/convert_gguf_checkpoint.py" for _, _, argv, _, _ in cases)
    for name, expected, argv, inputs, _ in cases:
        gguf_path, checkpoint_dir = argv[2], argv[4]
        before = gguf_path.read_bytes()
        if expected == "ok":
            assert convert_gguf(gguf_path, checkpoint_dir).n_layer == 2
            continue
        with pytest.raises(UserError) as e:
            convert_gguf(gguf_path, checkpoint_dir)
        message = str(e.value)
        assert message.startswith(f"{gguf_path}: ") and expected.split(":", 1)[1] in message, (name, message)
        assert gguf_path.read_bytes() == before and inputs == [gguf_path] and not checkpoint_dir.exists()


def test_recipe_cases_write_their_recipes(tmp_path):
    cases = load_cases().recipe_cases(tmp_path, tmp_path / "ckpt", "hf_" + "Token" * 7)
    for name, expected, argv, _, _ in cases:
        recipe = argv[argv.index("--recipe") + 1]
        assert recipe.is_file() and expected.startswith("error:"), name
    token_case = next(argv for name, _, argv, _, _ in cases if name == "recipe step --access_token then a failing step")
    assert token_case[-2:] == ["--settings", '{"token": "hf_' + "Token" * 7 + '"}']
