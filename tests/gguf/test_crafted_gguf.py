"""Crafted GGUF files (lit_gpt/gguf/reader.py, import_model.py, tokenizer_from_gguf.py): what the file says about
its tensors (offsets, alignment, shapes against the file's bytes, overlaps) and its metadata (types, sizes, token ids,
per-token lists) is checked before anything is built or allocated; every refusal is one line naming the file and
the key, quickly, and nothing is written."""

import struct
import time

import gguf
import numpy as np
import pytest

from helpers import BYTE_ALPHABET, SPECIALS, tiny_config
from lit_gpt.gguf.import_model import convert_gguf, gguf_tensor_name
from lit_gpt.gguf.reader import GGUFFile
from lit_gpt.model import GPT
from lit_gpt.utils import UserError

TOKENS = SPECIALS + BYTE_ALPHABET + ["he", "hel"]
CONFIG = dict(vocab_size=len(TOKENS), block_size=128, n_layer=2, n_head=4, n_embd=32, n_query_groups=2,
              intermediate_size=64)
METADATA = {
    "llama.block_count": 2, "llama.context_length": 128, "llama.embedding_length": 32,
    "llama.feed_forward_length": 64, "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
    "llama.rope.freq_base": 10000.0, "llama.rope.dimension_count": 8, "llama.attention.layer_norm_rms_epsilon": 1e-5,
    "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.tokens": TOKENS,
    "tokenizer.ggml.token_type": [3] * len(SPECIALS) + [1] * (len(TOKENS) - len(SPECIALS)),
    "tokenizer.ggml.merges": ["h e", "he l"], "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
}


def write_gguf(path, **overrides) -> None:
    """A tiny Llama GGUF (F32 tensors) whose metadata is METADATA with `overrides` (key with dots as __)."""
    metadata = {**METADATA, **{k.replace("__", "."): v for k, v in overrides.items()}}
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in metadata.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint64(key, value) if value >= 1 << 31 else writer.add_int32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, value)
    for name, tensor in GPT(tiny_config(**CONFIG)).state_dict().items():
        writer.add_tensor(gguf_tensor_name(name), tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def refused(tmp_path, path) -> str:
    """The one-line error of converting `path`, which must come fast and leave nothing behind."""
    started = time.perf_counter()
    with pytest.raises(UserError) as e:
        convert_gguf(path, tmp_path / "checkpoint")
    assert time.perf_counter() - started < 5
    assert not (tmp_path / "checkpoint").exists()
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_the_untouched_file_converts(tmp_path):
    write_gguf(tmp_path / "good.gguf")
    config = convert_gguf(tmp_path / "good.gguf", tmp_path / "checkpoint")
    assert (config.n_layer, config.vocab_size) == (2, len(TOKENS))


@pytest.mark.parametrize("key, value, problem", [
    ("llama.block_count", 100_000_000, "GGUF metadata llama.block_count: n_layer = 100000000: must be from 1 to 1,024"),
    ("llama.embedding_length", 1 << 40, "GGUF metadata llama.embedding_length: n_embd = 1099511627776: must be from"),
    ("llama.attention.head_count", 0, "GGUF metadata llama.attention.head_count: n_head = 0: must be from 1"),
    ("llama.context_length", 1 << 50, "GGUF metadata llama.context_length: block_size = 1125899906842624: must be"),
    ("llama.embedding_length", "32", "GGUF metadata llama.embedding_length = '32': must be a whole number"),
    ("llama.feed_forward_length", 64.0, "GGUF metadata llama.feed_forward_length = 64.0: must be a whole number"),
    ("llama.rope.freq_base", "1e4", "GGUF metadata llama.rope.freq_base = '1e4': must be a finite number"),
])
def test_sizes_and_metadata_types(tmp_path, key, value, problem):
    path = tmp_path / "crafted.gguf"
    write_gguf(path, **{key.replace(".", "__"): value})
    assert problem in refused(tmp_path, path)


@pytest.mark.parametrize("key, value, problem", [
    ("tokenizer.ggml.bos_token_id", 261, "tokenizer.ggml.bos_token_id = 261 is not a token id (0 to 260)"),
    ("tokenizer.ggml.eos_token_id", -1, "tokenizer.ggml.eos_token_id = -1 is not a token id (0 to 260)"),
    ("tokenizer.ggml.padding_token_id", 1 << 33, "tokenizer.ggml.padding_token_id = 8589934592 is not a token id"),
    ("tokenizer.ggml.token_type", [1, 1, 1], "tokenizer.ggml.token_type has 3 entries for 261 tokens"),
    ("tokenizer.ggml.scores", [0.0] * 100, "tokenizer.ggml.scores has 100 entries for 261 tokens"),
    ("tokenizer.ggml.token_type", ["normal"] * 261, "tokenizer.ggml.token_type must be a list of token types"),
    ("tokenizer.ggml.tokens", [1, 2, 3], "tokenizer.ggml.tokens must be a list of strings"),
    ("tokenizer.ggml.merges", ["he"], "tokenizer.ggml.merges must be a list of two pieces joined by a space"),
    ("tokenizer.ggml.add_bos_token", 1, "tokenizer.ggml.add_bos_token = '1' must be true or false"),
])
def test_tokenizer_metadata(tmp_path, key, value, problem):
    path = tmp_path / "crafted.gguf"
    write_gguf(path, **{key.replace(".", "__"): value})
    message = refused(tmp_path, path)
    assert f"GGUF metadata {problem}" in message and message.endswith("; the file is damaged")


# ---- the file's layout, byte by byte -------------------------------------------------------------------------------
def _string(text: str) -> bytes:
    return struct.pack("<Q", len(text.encode())) + text.encode()


def raw_gguf(tensors: list, metadata: bytes = b"", n_metadata: int = 0, data: bytes = b"\0" * 256,
             alignment: int = 32) -> bytes:
    """A GGUF file from its parts: tensors as (name, dims, ggml type id, offset), metadata entries already encoded."""
    infos = b"".join(_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", type_id, offset) for name, dims, type_id, offset in tensors)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), n_metadata) + metadata + infos
    return head + b"\0" * (-len(head) % alignment) + data


F32 = 0
U32, STRING, ARRAY = 4, 8, 9


@pytest.mark.parametrize("tensors, metadata, n_metadata, problem", [
    ([("a", (4,), F32, 4)], b"", 0, "ValueError: tensor 'a': offset 4 is not a multiple of the alignment 32"),
    ([("a", (16,), F32, 0), ("b", (4, 2), F32, 32)], b"", 0, "ValueError: tensors 'a' and 'b' share bytes of the file"),
    ([("a", (8,), F32, 0), ("b", (8,), F32, 0)], b"", 0, "ValueError: tensors 'a' and 'b' share bytes of the file"),
    ([("a", (1,) * 9, F32, 0)], b"", 0, "ValueError: tensor 'a' has 9 dimensions (GGUF allows 1 to 4)"),
    ([("a", (1 << 40, 1 << 40), F32, 0)], b"", 0,  # a shape the file's bytes cannot hold
     "it ends too early: tensor 'a' needs bytes 96 to 4,835,703,278,458,516,698,824,800, the file has 352"),
    ([("a", (4,), F32, 1 << 40)], b"", 0,  # an offset beyond the file's end
     "it ends too early: tensor 'a' needs bytes 1,099,511,627,840 to 1,099,511,627,856, the file has 320"),
    ([("a", (4,), 99, 0)], b"", 0, "ValueError: tensor 'a' has unknown type 99"),
    ([], _string("x") + struct.pack("<IIQ", ARRAY, U32, 1 << 62), 1, "it ends too early"),  # 2^62 items announced
    ([], _string("x") + struct.pack("<IIQ", ARRAY, STRING, 1 << 62), 1, "it ends too early"),
    ([], _string("general.alignment") + struct.pack("<I", STRING) + _string("32"), 1,
     "ValueError: general.alignment '32' is not a power of two"),
])
def test_tensor_layout_is_checked_against_the_file(tmp_path, tensors, metadata, n_metadata, problem):
    path = tmp_path / "crafted.gguf"
    path.write_bytes(raw_gguf(tensors, metadata, n_metadata))
    started = time.perf_counter()
    with pytest.raises(UserError) as e:
        GGUFFile(path)
    assert time.perf_counter() - started < 1
    assert str(e.value) == f"{path}: cannot read the GGUF file ({problem}); it is truncated or corrupt, download it again"


def test_well_formed_layout_reads(tmp_path):
    path = tmp_path / "ok.gguf"
    path.write_bytes(raw_gguf([("a", (8,), F32, 0), ("b", (4, 2), F32, 32)],
                              data=np.arange(16, dtype=np.float32).tobytes() + b"\0" * 192))
    tensors = GGUFFile(path).tensors
    assert tensors["a"].data.shape == (32,) and tensors["b"].data.shape == (2, 16)
