"""scripts/convert_hf_checkpoint.py and convert_lit_checkpoint.py: round trips, command lines, errors.

A tiny random transformers model of each family, converted, must give the same logits in our GPT (to 1e-4, fp32), and
again in transformers after converting back."""

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
import torch

from helpers import (HF_CONFIGS, ROOT, TOKENS, assert_one_line_error, assert_same_logits, hf_logits, random_hf_model,
                     run_as_main, save_hf)
from lit_gpt.checkpoint import load_model
from lit_gpt.config import Config
from lit_gpt.convert.hf import convert_hf_checkpoint
from lit_gpt.utils import UserError

transformers = pytest.importorskip("transformers")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


convert_hf_script = load_script("convert_hf_checkpoint")
convert_lit_script = load_script("convert_lit_checkpoint")


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("family", list(HF_CONFIGS))
def test_round_trip_logits_equal_transformers(family, fmt, tmp_path):
    hf_model = random_hf_model(family)
    expected = hf_logits(hf_model)
    checkpoint_dir = save_hf(hf_model, tmp_path / family, fmt)

    convert_hf_script.main(checkpoint_dir=checkpoint_dir)
    ours = load_model(checkpoint_dir).eval()
    with torch.no_grad():
        assert_same_logits(ours(TOKENS), expected)

    convert_lit_script.main(checkpoint_dir=checkpoint_dir, output_dir=tmp_path / "hf")
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["architectures"] == [type(hf_model).__name__]
    assert hf_config["model_type"] == hf_model.config.model_type
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
    assert_same_logits(hf_logits(reloaded), expected)


@pytest.mark.slow
def test_subprocess_dtype_bfloat16_and_back(tmp_path, shared_dir):
    """The scripts as a user runs them; the tokenizer files travel to the HF folder."""
    hf_model = random_hf_model("llama-gqa")
    checkpoint_dir = save_hf(hf_model, tmp_path / "org" / "tiny-llama", "safetensors")
    shutil.copy(shared_dir / "tokenizers" / "llama-2" / "tokenizer.model", checkpoint_dir)
    shutil.copy(shared_dir / "tokenizers" / "llama-2" / "tokenizer_config.json", checkpoint_dir)
    run = subprocess.run([sys.executable, "scripts/convert_hf_checkpoint.py", "--checkpoint_dir", str(checkpoint_dir),
                          "--dtype", "bfloat16"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    state_dict = torch.load(checkpoint_dir / "lit_model.pth", weights_only=True)
    assert {t.dtype for t in state_dict.values()} == {torch.bfloat16}
    assert torch.equal(state_dict["blocks.0.mlp.fc_1.weight"],
                       hf_model.state_dict()["model.layers.0.mlp.gate_proj.weight"].bfloat16())
    assert Config.from_file(checkpoint_dir / "lit_config.json").rope_base == 5000.0

    out = tmp_path / "hf-out"
    run = subprocess.run([sys.executable, "scripts/convert_lit_checkpoint.py", "--checkpoint_dir", str(checkpoint_dir),
                          "--output_dir", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json", "model.safetensors",
                                                      "tokenizer.model", "tokenizer_config.json"]
    assert (out / "tokenizer.model").read_bytes() == (checkpoint_dir / "tokenizer.model").read_bytes()
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    torch.testing.assert_close(hf_logits(reloaded), hf_logits(hf_model), atol=0.15, rtol=0.05)  # bf16 rounding only


def test_convert_lit_refuses_weights_without_hf_counterpart(tmp_path):
    checkpoint_dir = save_hf(random_hf_model("llama-gqa"), tmp_path / "llama", "safetensors")
    convert_hf_checkpoint(checkpoint_dir)
    state_dict = torch.load(checkpoint_dir / "lit_model.pth", weights_only=True)
    torch.save({**state_dict, "blocks.0.attn.q.lora_A": torch.zeros(2, 32)}, checkpoint_dir / "lit_model.pth")
    with pytest.raises(UserError, match="lit_model.pth: the file has weights the config does not know"):
        convert_lit_script.main(checkpoint_dir=checkpoint_dir, output_dir=tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


# ---- bad input: one line, exit 1, no traceback, the file named -------------------------------------------------------
def assert_user_error(run: tuple, *fragments: str) -> None:
    assert_one_line_error(*run[::2], *fragments)  # (exit code, stderr) of run_as_main's (code, stdout, stderr)


@pytest.mark.slow
def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    """Each script run as `python scripts/<name>.py` would run it (in this process: run_as_main)."""
    convert_hf, convert_lit = ROOT / "scripts" / "convert_hf_checkpoint.py", ROOT / "scripts" / "convert_lit_checkpoint.py"

    def run_script(script, *args):
        return run_as_main(capsys, script, *args)

    assert_user_error(run_script(convert_hf, "--checkpoint_dir", str(tmp_path / "nope")), "nope", "not found")

    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    HF_CONFIGS["llama-gqa"]().save_pretrained(no_weights)
    assert_user_error(run_script(convert_hf, "--checkpoint_dir", str(no_weights)), "no-weights", "no weights found")

    hf_model = random_hf_model("gpt-neox")
    unknown = save_hf(hf_model, tmp_path / "unknown-arch", "safetensors")
    hf_config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**hf_config, "architectures": ["MambaForCausalLM"]}))
    assert_user_error(run_script(convert_hf, "--checkpoint_dir", str(unknown)), "MambaForCausalLM", "not supported")

    truncated = save_hf(hf_model, tmp_path / "truncated", "safetensors")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert_user_error(run_script(convert_hf, "--checkpoint_dir", str(truncated)), "model.safetensors", "corrupt")
    assert sorted(p.name for p in truncated.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]

    corrupt_bin = save_hf(hf_model, tmp_path / "corrupt-bin", "bin")
    data = (corrupt_bin / "pytorch_model.bin").read_bytes()
    (corrupt_bin / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    assert_user_error(run_script(convert_hf, "--checkpoint_dir", str(corrupt_bin)), "pytorch_model.bin", "corrupt")

    assert_user_error(run_script(convert_lit, "--checkpoint_dir", str(unknown),
                                 "--output_dir", str(tmp_path / "out")), "unknown-arch", "no lit_model.pth")
    assert not (tmp_path / "out").exists()
    lora_run = tmp_path / "lora-run"  # a finetune/lora.py output: the fix is to merge first, not to convert
    lora_run.mkdir()
    (lora_run / "lit_model.pth.lora").write_bytes(b"")
    assert_user_error(run_script(convert_lit, "--checkpoint_dir", str(lora_run),
                                 "--output_dir", str(tmp_path / "out")), "holds LoRA weights only",
                      "scripts/merge_lora.py")
