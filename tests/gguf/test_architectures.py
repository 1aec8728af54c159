"""GGUF import of the qwen2, qwen3 and phi3 architectures: tiny models written as llama.cpp's converter writes them
(no Q/K row permutation; Phi-3's fused qkv and gate+up tensors), converted back, and checked against the original
weights and against transformers' own GGUF loading of the same file."""

import gguf
import numpy as np
import pytest
import torch

from helpers import BYTE_ALPHABET, SPECIALS, add_gguf_sizes, memoize_gguf_parsing, tiny_config
from lit_gpt.checkpoint import load_model
from lit_gpt.gguf.import_model import convert_gguf, gguf_tensor_name
from lit_gpt.model import GPT
from lit_gpt.utils import UserError

F32, Q8_0 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.Q8_0
VOCAB = SPECIALS + BYTE_ALPHABET + ["he"]

# each family with what makes it itself; widths multiples of 32 (Q8_0 blocks). Qwen3's head size is 128 whatever
# the width (transformers' GGUF loader takes Qwen3Config's default 128, not the file's key_length).
CONFIGS = {
    "qwen2": dict(architecture="Qwen2ForCausalLM", attn_bias=True, tie_embeddings=True, rope_base=1e6,
                  norm_eps=1e-6),
    "qwen3": dict(architecture="Qwen3ForCausalLM", norm_qk=True, n_head=2, n_query_groups=1, head_size=128,
                  rope_base=1e6, norm_eps=1e-6, tie_embeddings=True),
    "phi3": dict(architecture="Phi3ForCausalLM", n_query_groups=4),
}


def tiny_model(arch: str, seed: int = 0, **overrides) -> GPT:
    """Random weights well away from the defaults, so that a misplaced or mistransformed tensor moves the logits."""
    torch.manual_seed(seed)
    kw = dict(vocab_size=len(VOCAB), n_embd=64, n_head=4, n_query_groups=2, intermediate_size=128)
    model = GPT(tiny_config(**{**kw, **CONFIGS[arch], **overrides})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if p.ndim == 1 and "norm" in name or "ln_f" in name else 0.0, 0.2)
    return model


def write_gguf(path, model: GPT, arch: str, qtype=F32) -> None:
    """What llama.cpp's converter writes for these families: metadata, a byte-level BPE vocabulary (pre-tokenizer
    "qwen2" for Qwen), tensors in Hugging Face row order, Phi-3's q/k/v and gate/up fused, matrices in `qtype`."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"Tiny {arch}")
    add_gguf_sizes(writer, config, head_lengths=True)
    if config.sliding_window:
        writer.add_sliding_window(config.sliding_window)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2" if arch.startswith("qwen") else "gpt-2")
    writer.add_token_list(VOCAB)
    writer.add_token_types([3] * len(SPECIALS) + [1] * (len(VOCAB) - len(SPECIALS)))
    writer.add_token_merges(["h e"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)  # transformers' Phi3Config would take 32000, past this vocabulary
    state = {k: v.float() for k, v in model.state_dict().items()}
    if config.tie_embeddings:
        del state["lm_head.weight"]
    tensors = {}
    for name, tensor in state.items():
        if arch == "phi3" and any(f".{part}." in name for part in ("attn.k", "attn.v", "mlp.fc_2")):
            continue  # written with the part fused before it
        if arch == "phi3" and ".attn.q." in name:
            fused = torch.cat([state[name], state[name.replace(".q.", ".k.")], state[name.replace(".q.", ".v.")]])
            tensors[name.replace("attn.q", "attn_qkv").replace("blocks.", "blk.")] = fused
        elif arch == "phi3" and ".mlp.fc_1." in name:
            fused = torch.cat([state[name], state[name.replace("fc_1", "fc_2")]])  # gate rows, then up rows
            tensors[name.replace("mlp.fc_1", "ffn_up").replace("blocks.", "blk.")] = fused
        else:
            tensors[gguf_tensor_name(name)] = tensor
    for name, tensor in tensors.items():
        array = tensor.numpy()
        if array.ndim == 2 and qtype != F32:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


TOKENS = torch.tensor([[5, 17, 3, 90, 41, 41, 8, 66, 2, 30, 11, 72, 200, 150, 101, 7]])


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_synthetic_gguf_matches_the_original_and_transformers(arch, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    memoize_gguf_parsing(monkeypatch)  # speed only
    original = tiny_model(arch)
    write_gguf(tmp_path / "tiny.gguf", original, arch)
    config = convert_gguf(tmp_path / "tiny.gguf", tmp_path / "tiny")
    assert config == original.config  # every field from the metadata, the architecture's switches from the table
    converted = load_model(tmp_path / "tiny").eval()
    for name, weight in original.state_dict().items():
        assert torch.equal(converted.state_dict()[name], weight), name
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf", dtype=torch.float32).eval()
    with torch.no_grad():
        expected, ours = reference(TOKENS).logits, converted(TOKENS)
    assert expected.std() > 0.5  # large enough that a mapping mistake shows
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours, original(TOKENS), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_quantized_synthetic_gguf(arch, tmp_path):
    """Q8_0 matrices: every weight is what dequantizing its blocks gives (fused ones split after dequantizing)."""
    original = tiny_model(arch)
    write_gguf(tmp_path / "q8.gguf", original, arch, Q8_0)
    convert_gguf(tmp_path / "q8.gguf", tmp_path / "q8")
    converted = load_model(tmp_path / "q8").eval()
    for name, weight in original.state_dict().items():
        expected = weight
        if weight.ndim == 2:
            expected = torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(weight.numpy(), Q8_0), Q8_0))
        assert torch.equal(converted.state_dict()[name], expected.reshape(weight.shape)), name
    with torch.no_grad():
        ours, exact = converted(TOKENS), original(TOKENS)
    assert (ours - exact).norm() / exact.norm() < 0.05  # what 8-bit blocks lose (measured 1-2%)


def test_phi3_partial_rotary_and_window(tmp_path):
    """Phi-4-mini's layout (a phi3 GGUF): 3/4 of each head rotates (rope.dimension_count), every layer windowed."""
    original = tiny_model("phi3", rotary_percentage=0.75, sliding_window=6)
    write_gguf(tmp_path / "phi.gguf", original, "phi3")
    config = convert_gguf(tmp_path / "phi.gguf", tmp_path / "phi")
    assert (config.rotary_percentage, config.sliding_window, config.sliding_window_pattern) == (0.75, 6, 1)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "phi").eval()(TOKENS), original(TOKENS), atol=1e-5,
                                   rtol=1e-5)


def test_qwen2_pre_tokenizer_splits_single_digits(tmp_path):
    from lit_gpt.tokenizer import Tokenizer

    original = tiny_model("qwen2")
    write_gguf(tmp_path / "q.gguf", original, "qwen2")
    convert_gguf(tmp_path / "q.gguf", tmp_path / "q")
    tokenizer = Tokenizer(tmp_path / "q")
    pieces = tokenizer.processor.pre_tokenizer.pre_tokenize_str("abc 2024 it's")
    assert [p for p, _ in pieces] == ["abc", "Ġ", "2", "0", "2", "4", "Ġit", "'s"]


def test_fused_tensor_of_the_wrong_size_is_refused(tmp_path):
    original = tiny_model("phi3")
    path = tmp_path / "bad.gguf"
    write_gguf(path, original, "phi3")
    writer_sizes = tiny_model("phi3", intermediate_size=96)  # the metadata of a narrower MLP
    write_gguf(tmp_path / "narrow.gguf", writer_sizes, "phi3")
    data = bytearray(path.read_bytes())
    narrow = (tmp_path / "narrow.gguf").read_bytes()
    key = b"phi3.feed_forward_length"
    i, j = data.index(key) + len(key), narrow.index(key) + len(key)
    data[i:i + 12] = narrow[j:j + 12]  # u32 type + u32 value 96 instead of 128
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"bad\.gguf: fused tensor 'blk\.0\.ffn_up\.weight' has 256 rows, the "
                                        r"metadata's sizes add up to 192"):
        convert_gguf(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert np.frombuffer(narrow[j + 4:j + 8], np.uint32)[0] == 96
