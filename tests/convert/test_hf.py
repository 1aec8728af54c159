"""lit_gpt/convert/hf.py: HF checkpoints converted and proven by logits, the state-dict writer, HF configs.

Sharded, tied and .bin checkpoints of tiny random transformers models give the same logits in our GPT; HF config
dicts derive back to the same Config; weights that do not fit the config are refused."""

import json

import pytest
import torch

from helpers import TOKENS, assert_same_logits, hf_logits, random_hf_model, save_hf
from lit_gpt.checkpoint import load_model
from lit_gpt.convert.hf import StateDictWriter, convert_hf_checkpoint, hf_weight_files
from lit_gpt.utils import UserError

transformers = pytest.importorskip("transformers")  # the helpers build random transformers models


@pytest.mark.parametrize("family, fmt", [("gpt-neox", "bin-sharded"), ("qwen2-tied", "safetensors-sharded")])
def test_sharded_checkpoints(family, fmt, tmp_path):
    hf_model = random_hf_model(family, seed=1)
    checkpoint_dir = save_hf(hf_model, tmp_path / family, fmt)
    convert_hf_checkpoint(checkpoint_dir)
    ours = load_model(checkpoint_dir).eval()
    with torch.no_grad():
        assert_same_logits(ours(TOKENS), hf_logits(hf_model))


@pytest.mark.parametrize("content, problem", [
    (b"[" * 100_000 + b"]" * 100_000, "cannot read this shard index: nested more than 64 levels deep; download it"),
    (b'{"weight_map": {"a": ' + b"9" * 10 ** 6 + b"}}", "cannot read this shard index: line 1 holds a number of"),
    (b'{"a": "\xff"}', "cannot read this shard index: not UTF-8 (byte 7 is 0xff)"),
    (b'{"weight_map": ["model.safetensors"]}', "not a valid shard index (no weight_map of tensor name -> file name)"),
])
def test_a_crafted_shard_index_is_one_line(tmp_path, content, problem):
    (tmp_path / "model.safetensors.index.json").write_bytes(content)
    with pytest.raises(UserError) as e:
        hf_weight_files(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'model.safetensors.index.json'}: {problem}")


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


@pytest.mark.parametrize("prefix", ["language_model.model.", "model.language_model."])
def test_text_part_of_a_gemma3_text_and_vision_checkpoint(prefix, tmp_path):
    """Gemma 3 4B+ ship as Gemma3ForConditionalGeneration: the text model under a prefix (as published:
    language_model.model.*; as transformers 5 saves: model.language_model.*) next to a vision tower. The text part
    converts; the vision weights are left out."""
    from safetensors.torch import save_file

    hf_model = random_hf_model("gemma3-window")
    checkpoint_dir = tmp_path / "gemma-3-vision"
    checkpoint_dir.mkdir()
    weights = {prefix + name.removeprefix("model."): t.contiguous() for name, t in hf_model.state_dict().items()
               if name != "lm_head.weight"}
    weights["vision_tower.vision_model.embeddings.patch_embedding.weight"] = torch.zeros(4, 3, 2, 2)
    weights["multi_modal_projector.mm_input_projection_weight"] = torch.zeros(4, 32)
    save_file(weights, str(checkpoint_dir / "model.safetensors"))
    text_config = {k: v for k, v in hf_model.config.to_dict().items() if k != "architectures"}
    (checkpoint_dir / "config.json").write_text(json.dumps(
        {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "text_config": text_config,
         "vision_config": {"model_type": "siglip_vision_model"}}))
    convert_hf_checkpoint(checkpoint_dir)
    ours = load_model(checkpoint_dir).eval()
    assert ours.config.architecture == "Gemma3ForCausalLM" and ours.config.sliding_window_pattern == 3
    with torch.no_grad():
        assert_same_logits(ours(TOKENS), hf_logits(hf_model))
