"""HF <-> ours conversion, proven by logits: a tiny random transformers model of each family, converted, must give
the same logits in our GPT (to 1e-4, fp32), and again in transformers after converting back."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_gpt.checkpoint import load_model
from lit_gpt.config import Config, configs
from lit_gpt.convert import StateDictWriter, convert_hf_checkpoint, hf_config_dict
from lit_gpt.utils import UserError

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parent.parent

# each family with the options that make it itself, sizes tiny; non-default rope bases so a dropped field shows
SMALL = dict(vocab_size=96, num_hidden_layers=2, max_position_embeddings=64)
HF_CONFIGS = {
    "llama-gqa": lambda: transformers.LlamaConfig(**SMALL, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                                                  num_key_value_heads=2, rope_theta=5000.0, rms_norm_eps=1e-5),
    "mistral-window": lambda: transformers.MistralConfig(**SMALL, hidden_size=32, intermediate_size=48,
                                                         num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
                                                         rope_theta=20000.0),
    "qwen2-tied": lambda: transformers.Qwen2Config(**SMALL, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                                                   num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1e6),
    "gpt-neox": lambda: transformers.GPTNeoXConfig(**SMALL, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                                   rotary_pct=0.25, rotary_emb_base=5000, use_parallel_residual=True),
    "phi": lambda: transformers.PhiConfig(**SMALL, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                          partial_rotary_factor=0.5, rope_theta=5000.0),
    "falcon-mqa": lambda: transformers.FalconConfig(**SMALL, hidden_size=32, num_attention_heads=4, multi_query=True,
                                                    bias=False),
    "falcon-mha-bias": lambda: transformers.FalconConfig(**SMALL, hidden_size=32, num_attention_heads=4,
                                                         multi_query=False, bias=True),
}
TOKENS = torch.tensor([[5, 17, 3, 90, 41, 41, 8, 66, 2, 30, 11, 72], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


convert_hf_script = load_script("convert_hf_checkpoint")
convert_lit_script = load_script("convert_lit_checkpoint")


def random_hf_model(family: str, seed: int = 0):
    """Random weights well away from the defaults: norm weights ~1+N(0, .2), biases ~N(0, .2), matrices ~N(0, .2)."""
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(HF_CONFIGS[family](), attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if p.ndim == 1 and name.endswith("weight") else 0.0, 0.2)
    return model.eval()


def save_hf(model, directory: Path, fmt: str) -> Path:
    """safetensors: save_pretrained. bin: torch.save of the state dict, as transformers 4 wrote it (transformers 5
    writes safetensors only). *-sharded: two shards + index."""
    if fmt == "safetensors":
        model.save_pretrained(directory)
    elif fmt == "safetensors-sharded":
        model.save_pretrained(directory, max_shard_size="40KB")
        assert (directory / "model.safetensors.index.json").is_file()
    else:
        model.config.save_pretrained(directory)
        state_dict = model.state_dict()
        if fmt == "bin":
            torch.save(state_dict, directory / "pytorch_model.bin")
        else:
            names = list(state_dict)
            shards = {f"pytorch_model-0000{i + 1}-of-00002.bin": names[i::2] for i in range(2)}
            for file, shard_names in shards.items():
                torch.save({n: state_dict[n] for n in shard_names}, directory / file)
            weight_map = {n: file for file, shard_names in shards.items() for n in shard_names}
            (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


def hf_logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS).logits


def assert_same_logits(ours: torch.Tensor, expected: torch.Tensor) -> None:
    assert expected.std() > 0.5  # random weights large enough that a mapping mistake moves the logits
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


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


@pytest.mark.parametrize("family, fmt", [("gpt-neox", "bin-sharded"), ("qwen2-tied", "safetensors-sharded")])
def test_sharded_checkpoints(family, fmt, tmp_path):
    hf_model = random_hf_model(family, seed=1)
    checkpoint_dir = save_hf(hf_model, tmp_path / family, fmt)
    convert_hf_checkpoint(checkpoint_dir)
    ours = load_model(checkpoint_dir).eval()
    with torch.no_grad():
        assert_same_logits(ours(TOKENS), hf_logits(hf_model))


def test_tied_head_is_dropped_and_file_loads_without_mmap(tmp_path):
    hf_model = random_hf_model("qwen2-tied")
    checkpoint_dir = save_hf(hf_model, tmp_path / "qwen", "bin")  # .bin state dicts do contain the tied lm_head
    convert_hf_checkpoint(checkpoint_dir)
    state_dict = torch.load(checkpoint_dir / "lit_model.pth", weights_only=True, mmap=False)
    assert "lm_head.weight" not in state_dict
    hf_state_dict = hf_model.state_dict()
    torch.testing.assert_close(state_dict["wte.weight"], hf_state_dict["model.embed_tokens.weight"], rtol=0, atol=0)
    torch.testing.assert_close(state_dict["blocks.1.attn.k.bias"],
                               hf_state_dict["model.layers.1.self_attn.k_proj.bias"], rtol=0, atol=0)
    assert list(state_dict) == [n for n in load_model(checkpoint_dir).state_dict() if n != "lm_head.weight"]


def test_state_dict_writer_matches_torch_save(tmp_path):
    tensors = {"a": torch.randn(3, 5), "b": torch.arange(7, dtype=torch.int64), "c": torch.randn(4).bfloat16(),
               "scalar": torch.tensor(2.5)}
    with StateDictWriter(tmp_path / "out.pth", {n: (t.shape, t.dtype) for n, t in tensors.items()}) as writer:
        for name in ["c", "scalar", "a", "b"]:  # any order
            writer.write(name, tensors[name])
    for mmap in (True, False):
        loaded = torch.load(tmp_path / "out.pth", weights_only=True, mmap=mmap)
        assert list(loaded) == list(tensors)
        for name, tensor in tensors.items():
            assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)


def test_writer_refuses_to_leave_unwritten_tensors(tmp_path):
    with pytest.raises(RuntimeError, match="never written"):
        with StateDictWriter(tmp_path / "out.pth", {"a": (torch.Size([2]), torch.float32)}):
            pass


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


@pytest.mark.parametrize("entry", configs, ids=[c["name"] for c in configs])
def test_hf_config_dict_derives_back_to_the_same_config(entry):
    config = Config(**entry)
    derived = Config.from_hf_config(hf_config_dict(config), name=config.name)
    assert {**derived.to_dict(), "hf_repo_id": config.hf_repo_id} == config.to_dict()


def test_hf_config_dict_refuses_what_the_family_cannot_express():
    with pytest.raises(UserError, match="bias=True cannot be expressed as a LlamaForCausalLM"):
        hf_config_dict(Config(name="x", n_layer=1, n_head=2, n_embd=8, bias=True))
    with pytest.raises(UserError, match="n_query_groups=2"):
        hf_config_dict(Config.from_name("falcon-7b", n_head=4, n_embd=8, n_query_groups=2))


def test_checkpoint_with_extra_layers_is_refused(tmp_path):
    checkpoint_dir = save_hf(random_hf_model("llama-gqa"), tmp_path / "llama", "safetensors")
    hf_config = json.loads((checkpoint_dir / "config.json").read_text())
    (checkpoint_dir / "config.json").write_text(json.dumps({**hf_config, "num_hidden_layers": 1}))
    with pytest.raises(UserError, match="weights the config does not know"):
        convert_hf_checkpoint(checkpoint_dir)
    assert not (checkpoint_dir / "lit_model.pth").exists()


def test_config_that_does_not_fit_the_weights_is_refused(tmp_path):
    checkpoint_dir = save_hf(random_hf_model("phi"), tmp_path / "phi", "safetensors")
    with pytest.raises(UserError, match="lacks .* weights the config needs"):  # --model_name of a bigger model
        convert_hf_checkpoint(checkpoint_dir, model_name="phi-2")
    hf_config = json.loads((checkpoint_dir / "config.json").read_text())
    (checkpoint_dir / "config.json").write_text(json.dumps({**hf_config, "intermediate_size": 80}))
    with pytest.raises(UserError, match=r"mlp.fc.weight has shape \(96, 64\), the config expects \(80, 64\)"):
        convert_hf_checkpoint(checkpoint_dir)
    assert not (checkpoint_dir / "lit_model.pth").exists() and not (checkpoint_dir / "lit_config.json").exists()


def test_convert_lit_refuses_weights_without_hf_counterpart(tmp_path):
    checkpoint_dir = save_hf(random_hf_model("llama-gqa"), tmp_path / "llama", "safetensors")
    convert_hf_checkpoint(checkpoint_dir)
    state_dict = torch.load(checkpoint_dir / "lit_model.pth", weights_only=True)
    torch.save({**state_dict, "blocks.0.attn.q.lora_A": torch.zeros(2, 32)}, checkpoint_dir / "lit_model.pth")
    with pytest.raises(UserError, match="lit_model.pth: the file has weights the config does not know"):
        convert_lit_script.main(checkpoint_dir=checkpoint_dir, output_dir=tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


# ---- bad input: one line, exit 1, no traceback, the file named ------------------------------------------------------
def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


def assert_user_error(run: subprocess.CompletedProcess, *fragments: str) -> None:
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    for fragment in fragments:
        assert fragment in run.stderr


def test_bad_inputs_are_one_line_errors(tmp_path):
    """All bad-input cases in one test: each is a subprocess, and a torch import costs seconds."""
    convert_hf = "scripts/convert_hf_checkpoint.py"
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

    assert_user_error(run_script("scripts/convert_lit_checkpoint.py", "--checkpoint_dir", str(unknown),
                                 "--output_dir", str(tmp_path / "out")), "unknown-arch", "no lit_model.pth")
    assert not (tmp_path / "out").exists()
