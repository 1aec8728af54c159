"""generate/base.py end to end: the greedy samples equal lit_gpt's generate, a missing checkpoint is one line."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT, tiny_config
from lit_gpt.infer.sampling import generate
from lit_gpt.model import GPT

pytestmark = pytest.mark.slow  # generate/base.py in real processes


@pytest.fixture
def tiny_checkpoint(tmp_path, shared_dir) -> Path:
    from lit_gpt.tokenizer import Tokenizer

    checkpoint_dir = tmp_path / "tiny-gpt2"
    checkpoint_dir.mkdir()
    for f in (shared_dir / "tokenizers" / "gpt2").iterdir():
        shutil.copy(f, checkpoint_dir / f.name)
    config = tiny_config(vocab_size=Tokenizer(checkpoint_dir).vocab_size, block_size=64)
    torch.manual_seed(0)
    model = GPT(config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 1.0)  # decisive logits: greedy output does not hinge on rounding
    torch.save(model.state_dict(), checkpoint_dir / "lit_model.pth")
    config.save(checkpoint_dir / "lit_config.json")
    return checkpoint_dir


@pytest.mark.both_default_precisions
def test_base_script_generates_text(tiny_checkpoint, default_precision):
    from lit_gpt.checkpoint import load_model
    from lit_gpt.precision import param_dtype
    from lit_gpt.prompts.styles import load_prompt_style
    from lit_gpt.tokenizer import Tokenizer

    prompt = "Hello, my name is"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "generate" / "base.py"), "--checkpoint_dir", str(tiny_checkpoint),
         "--prompt", prompt, "--max_new_tokens", "8", "--temperature", "0", "--num_samples", "2"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Sample 2: " in proc.stderr and "tokens/s" in proc.stderr

    tokenizer = Tokenizer(tiny_checkpoint)
    prompt_ids = tokenizer.encode(load_prompt_style(tiny_checkpoint).prompt(prompt))
    model = load_model(tiny_checkpoint, dtype=param_dtype(default_precision))  # as the script loads it by default
    expected_ids = generate(model, prompt_ids, 8, temperature=0.0, eos_id=tokenizer.stop_ids)
    expected = tokenizer.decode(expected_ids)
    assert expected.strip()
    assert proc.stdout == f"{expected}\n\n{expected}\n"  # two greedy samples, a blank line between them


def test_base_script_plain_prompt_style_continues_the_raw_text(tiny_checkpoint):
    from lit_gpt.checkpoint import load_model
    from lit_gpt.tokenizer import Tokenizer

    prompt = "Q: What is the capital of France?\nA:"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "generate" / "base.py"), "--checkpoint_dir", str(tiny_checkpoint),
         "--prompt", prompt, "--prompt_style", "plain", "--max_new_tokens", "8", "--temperature", "0",
         "--precision", "32-true"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "prompt style plain" in proc.stderr
    tokenizer = Tokenizer(tiny_checkpoint)
    model = load_model(tiny_checkpoint)
    expected_ids = generate(model, tokenizer.encode(prompt), 8, temperature=0.0, eos_id=tokenizer.stop_ids)
    expected = tokenizer.decode(expected_ids)
    assert proc.stdout == f"{expected}\n"


def test_base_script_missing_checkpoint(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    proc = subprocess.run([sys.executable, str(ROOT / "generate" / "base.py"), "--checkpoint_dir", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "not found" in lines[0]
