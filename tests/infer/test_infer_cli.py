"""lit_gpt/infer/cli.py: the command line of generate/base.py, full.py and lora.py. Each command's flags, how the
parsed flags reach `generate_answers`, a greedy run on a tiny checkpoint with the real SmolLM2 tokenizer, and flag
mistakes as one-line errors. The scripts in a subprocess: scripts/test_generate_scripts.py."""

import inspect
from pathlib import Path

import pytest
import torch

from helpers import assert_one_line_error
from lit_gpt.checkpoint import load_model
from lit_gpt.infer import cli
from lit_gpt.infer.cli import MODEL_FLAGS, SAMPLING_FLAGS, generate_command
from lit_gpt.infer.sampling import generate
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import run_cli

SAMPLING = ["prompt", "input", "prompt_style", "max_new_tokens", "temperature", "top_k", "top_p", "num_samples",
            "precision", "seed", "device", "compile", "prompt_lookup"]
SAMPLING_DEFAULTS = dict(max_new_tokens=100, temperature=0.8, top_k=50, top_p=None, num_samples=1, precision=None,
                         seed=1234, device=None, prompt_style=None, compile=False, prompt_lookup=4)


def run(capsys, kind: str, *args) -> tuple:
    """(exit code, stdout, stderr) of generate/<kind>.py with these flags, run in this process."""
    capsys.readouterr()
    try:
        run_cli(generate_command(kind), args=[str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind, model_flags, required", [
    ("base", ["checkpoint_dir"], []),
    ("full", ["checkpoint_dir"], ["checkpoint_dir"]),
    ("lora", ["lora_path", "checkpoint_dir", "force"], ["lora_path"]),
])
def test_each_command_has_its_model_flags_and_the_sampling_flags(kind, model_flags, required):
    command = generate_command(kind)
    parameters = inspect.signature(command).parameters
    assert list(parameters) == model_flags + SAMPLING
    assert [name for name, p in parameters.items() if p.default is inspect.Parameter.empty] == required
    assert {name: parameters[name].default for name in SAMPLING_DEFAULTS} == SAMPLING_DEFAULTS
    doc = command.__doc__
    assert doc.startswith(cli.DESCRIPTIONS[kind])
    for name, _, _, help in MODEL_FLAGS[kind] + SAMPLING_FLAGS:  # jsonargparse's --help text for each flag
        assert f"        {name}: {help}\n" in doc


@pytest.mark.parametrize("kind, args, model", [
    ("base", [], (Path("checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct"), None)),
    ("full", ["--checkpoint_dir", "out/full"], (Path("out/full"), None)),
    ("lora", ["--lora_path", "out/lora/lit_model.pth.lora"], (None, Path("out/lora/lit_model.pth.lora"))),
])
def test_the_parsed_flags_reach_generate_answers(monkeypatch, capsys, kind, args, model):
    calls = []
    monkeypatch.setattr(cli, "generate_answers", lambda *a, **kw: calls.append((a, kw)))
    code, _, err = run(capsys, kind, *args, "--prompt", "Sum these.", "--input", "2, 3", "--temperature", "0",
                       "--top_p", "0.9")
    assert code == 0, err
    extra = {"force": False} if kind == "lora" else {}  # --force: a LoRA on a base with other weights
    assert calls == [((*model, "Sum these.", "2, 3"),
                      {**extra, **SAMPLING_DEFAULTS, "temperature": 0.0, "top_p": 0.9})]


def test_compile_reaches_the_decode_step(monkeypatch, capsys):
    """--compile true goes from the command line through generate_answers to each sample's stream_answer (on to
    generate_batch: tests/scripts/test_end_to_end.py's chat test; its compiled step: tests/infer/test_sampling.py)."""
    import lit_gpt.infer.answer as answer

    calls = []
    monkeypatch.setattr(cli, "generate_answers", lambda *a, **kw: calls.append(kw["compile"]))
    assert run(capsys, "base", "--compile", "true")[0] == 0 and run(capsys, "base")[0] == 0
    assert calls == [True, False]
    seen = []
    monkeypatch.setattr(answer, "stream_answer", lambda *a, **kw: seen.append(kw["compile"]) or (2, "ab"))
    texts = answer.generate_samples(None, None, torch.tensor([1, 2]), num_samples=2, max_new_tokens=2, compile=True)
    assert seen == [True, True] and texts == ["ab", "ab"]
    capsys.readouterr()


def test_prompt_lookup_reaches_the_generation_loop(monkeypatch, capsys):
    """--prompt_lookup goes from the command line through generate_answers and each sample's stream_answer to
    generate_batch (what it does there: tests/infer/test_sampling.py)."""
    import lit_gpt.infer.answer as answer
    import lit_gpt.infer.sampling as sampling

    calls = []
    monkeypatch.setattr(cli, "generate_answers", lambda *a, **kw: calls.append(kw["prompt_lookup"]))
    assert run(capsys, "base", "--prompt_lookup", "7")[0] == 0 and run(capsys, "base")[0] == 0
    assert calls == [7, 4]
    seen = []
    monkeypatch.setattr(sampling, "generate_batch", lambda *a, **kw: seen.append(kw["prompt_lookup"]) or [[]])
    answer.generate_samples(None, _NoTokenizer(), torch.tensor([1, 2]), max_new_tokens=2, prompt_lookup=3)
    assert seen == [3]
    capsys.readouterr()


class _NoTokenizer:
    stop_ids = ()

    def decode(self, ids, **kwargs) -> str:
        return ""


def test_a_greedy_run_prints_the_models_continuation(base, capsys):
    prompt = "Q: What is the capital of France?\nA:"
    code, out, err = run(capsys, "base", "--checkpoint_dir", base, "--prompt", prompt, "--prompt_style", "plain",
                         "--max_new_tokens", 6, "--temperature", 0, "--precision", "32-true", "--device", "cpu")
    assert code == 0, err
    tokenizer = Tokenizer(base)
    expected = generate(load_model(base), tokenizer.encode(prompt), 6, temperature=0.0, eos_id=tokenizer.stop_ids)
    assert out == tokenizer.decode(expected) + "\n"
    assert "prompt style plain" in err and "Sample 1: " in err  # timings on stderr, stdout is the answer alone


@pytest.mark.parametrize("flags, fragments", [
    (["--max_new_tokens", "0"], ["--max_new_tokens 0: must be at least 1"]),
    (["--num_samples", "0"], ["--num_samples 0: must be at least 1"]),
    (["--prompt_lookup", "-1"], ["--prompt_lookup -1: must be 0"]),
    (["--prompt_style", "nope"], ["unknown prompt style 'nope'", "chatml"]),
])
def test_flag_mistakes_are_one_line_errors_before_any_loading(capsys, tmp_path, flags, fragments):
    missing = tmp_path / "not-a-checkpoint"  # never reached: the flags are checked first
    code, _, err = run(capsys, "full", "--checkpoint_dir", missing, *flags)
    assert str(missing) not in assert_one_line_error(code, err, *fragments)


def test_a_required_flag_left_out(capsys):
    code, _, err = run(capsys, "lora", "--prompt", "Hi")
    assert code != 0 and "lora_path" in err
