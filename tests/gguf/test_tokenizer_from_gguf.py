"""lit_gpt/gguf/tokenizer_from_gguf.py: GGUF vocabularies (as llama.cpp stores them) rebuilt as tokenizers. The real
SmolLM2 and Llama 2 vocabularies give the real tokenizers' ids; small vocabularies show the pre-tokenizers, special
and user-defined tokens, Gemma's merges and the files written. A whole GGUF import: gguf/test_import_model.py."""

import json

import pytest
from sentencepiece import SentencePieceProcessor
from sentencepiece import sentencepiece_model_pb2 as sp_model

from helpers import BYTE_ALPHABET, SHARED, SPECIALS
from lit_gpt.gguf.tokenizer_from_gguf import (SUPPORTED_PRE_TOKENIZERS, TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL,
                                              TOKEN_UNKNOWN, TOKEN_USER_DEFINED, build_bpe_tokenizer,
                                              build_gemma_tokenizer, build_sentencepiece_model,
                                              check_tokenizer_supported, write_tokenizer_files)
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError

TEXTS = ["Hello world! It's 2024-05-01: 3.14159 and 12345678.", "def f(x):\n    return x**2  # 100%\n",
         "Ünïcödé café 日本語 🦙 ½", "<|im_start|>user\nHi<|im_end|>", "   spaces   ", "it?  2 spaces  3"]


class Vocabulary:
    """What the builders read of a GGUF file: `.path` and `.get(key, default)` over its metadata."""

    def __init__(self, metadata: dict, path: str = "vocab.gguf") -> None:
        self.metadata, self.path = metadata, path

    def get(self, key, default=None):
        return self.metadata.get(key, default)


def tiny_bpe(pre="gpt-2", extra_tokens=(), extra_types=(), **metadata) -> Vocabulary:
    """<|endoftext|>, <|im_start|>, <|im_end|> (control), the 256 byte characters (3-258), "he" (259), "hel" (260)."""
    tokens = SPECIALS + BYTE_ALPHABET + ["he", "hel", *extra_tokens]
    types = [TOKEN_CONTROL] * 3 + [TOKEN_NORMAL] * (len(tokens) - 3 - len(extra_types)) + list(extra_types)
    return Vocabulary({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
                       "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": ["h e", "he l"],
                       **{f"tokenizer.ggml.{k}": v for k, v in metadata.items()}})


# ---- which builder -----------------------------------------------------------------------------------------------
def test_check_tokenizer_supported():
    tokens = {"tokenizer.ggml.tokens": ["a", "b"]}  # a vocabulary is checked first: it must hold tokens
    assert check_tokenizer_supported(Vocabulary({**tokens, "tokenizer.ggml.model": "gpt2"})) == "bpe"  # pre "gpt-2"
    for pre in SUPPORTED_PRE_TOKENIZERS:
        assert check_tokenizer_supported(tiny_bpe(pre)) == "bpe"
    assert check_tokenizer_supported(Vocabulary({**tokens, "tokenizer.ggml.model": "llama"})) == "sentencepiece"
    gemma = {**tokens, "tokenizer.ggml.model": "llama", "general.architecture": "gemma3"}
    assert check_tokenizer_supported(Vocabulary(gemma)) == "gemma"
    for metadata, error in [
        ({}, "vocab.gguf: the GGUF has no tokenizer (tokenizer.ggml.model); it cannot become a checkpoint"),
        ({"tokenizer.ggml.model": "gpt2"}, "vocab.gguf: GGUF metadata tokenizer.ggml.tokens is missing or empty"),
        (tiny_bpe("deepseek-llm").metadata, "vocab.gguf: byte-level BPE pre-tokenizer 'deepseek-llm' is not "
                                            "supported yet (supported: gpt-2, gpt2, smollm,"),
        ({**tokens, "tokenizer.ggml.model": "bert"}, "vocab.gguf: tokenizer type 'bert' is not supported yet"),
        ({**gemma, "tokenizer.ggml.add_space_prefix": True}, "add_space_prefix = true is not supported yet"),
    ]:
        with pytest.raises(UserError) as e:
            check_tokenizer_supported(Vocabulary(metadata))
        assert error in str(e.value)


# ---- byte-level BPE ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pre, pieces", [
    ("gpt-2", ["abc", "Ġ12345"]),  # GPT-2's regex: a space joins the word or number after it
    ("smollm", ["abc", "Ġ", "1", "2", "3", "4", "5"]),  # every digit alone (StarCoder family)
    ("llama-bpe", ["abc", "Ġ", "123", "45"]),  # numbers in groups of up to three
    ("qwen2", ["abc", "Ġ", "1", "2", "3", "4", "5"]),  # Llama 3's regex with single digits
])
def test_pre_tokenizers_split_as_their_families(pre, pieces):
    tokenizer = build_bpe_tokenizer(tiny_bpe(pre))
    assert [piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str("abc 12345")] == pieces


def test_smollm2_vocabulary_gives_the_real_tokenizers_ids():
    directory = SHARED / "tokenizers" / "smollm2"
    data = json.loads((directory / "tokenizer.json").read_text())
    vocab = {**data["model"]["vocab"], **{t["content"]: t["id"] for t in data["added_tokens"]}}
    tokens = [None] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    types = [TOKEN_NORMAL] * len(tokens)
    for added in data["added_tokens"]:
        types[added["id"]] = TOKEN_CONTROL if added["special"] else TOKEN_USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    stored = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
              "tokenizer.ggml.merges": merges, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}
    rebuilt = build_bpe_tokenizer(Vocabulary({**stored, "tokenizer.ggml.pre": "smollm"}))
    original = Tokenizer(directory)
    for text in TEXTS:
        assert rebuilt.encode(text).ids == original.encode_ids(text), text
    assert rebuilt.encode("<|im_start|>").ids == [1]  # control tokens are matched whole
    gpt2_split = build_bpe_tokenizer(Vocabulary({**stored, "tokenizer.ggml.pre": "gpt-2"}))
    # the pre-tokenizer matters: GPT-2's regex gives the space before a number to the number, then merges no "Ġ2"
    assert [gpt2_split.id_to_token(i) for i in gpt2_split.encode("it?  2").ids] == ["it", "?", "Ġ", "Ġ", "2"]
    assert [original.id_to_token(i) for i in original.encode_ids("it?  2")] == ["it", "?", "ĠĠ", "2"]


def test_special_and_user_defined_tokens():
    tokenizer = build_bpe_tokenizer(tiny_bpe(extra_tokens=["<tool>"], extra_types=[TOKEN_USER_DEFINED]))
    ids = tokenizer.encode("<|im_start|>hello<tool>").ids
    assert ids == [1, 260, 3 + BYTE_ALPHABET.index("l"), 3 + BYTE_ALPHABET.index("o"), 261]  # "hel" "l" "o"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hello<tool>"  # control skipped, user-defined is text
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<|im_start|>hello<tool>"


def test_bos_and_eos_are_added_as_the_file_says():
    assert build_bpe_tokenizer(tiny_bpe(bos_token_id=1, eos_token_id=2)).encode("he").ids == [259]
    with_bos = build_bpe_tokenizer(tiny_bpe(bos_token_id=1, eos_token_id=2, add_bos_token=True))
    assert with_bos.encode("he").ids == [1, 259]
    both = build_bpe_tokenizer(tiny_bpe(bos_token_id=1, eos_token_id=2, add_bos_token=True, add_eos_token=True))
    assert both.encode("he").ids == [1, 259, 2]
    # an id past the vocabulary is no token: nothing is added
    assert build_bpe_tokenizer(tiny_bpe(bos_token_id=9999, add_bos_token=True)).encode("he").ids == [259]


# ---- SentencePiece -----------------------------------------------------------------------------------------------
def llama2_vocabulary(**overrides) -> Vocabulary:
    """The Llama 2 tokenizer.model as llama.cpp's converter stores it: pieces, scores, piece types, special ids."""
    proto = sp_model.ModelProto()
    proto.ParseFromString((SHARED / "tokenizers/llama-2/tokenizer.model").read_bytes())
    return Vocabulary({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": [p.piece for p in proto.pieces],
                       "tokenizer.ggml.scores": [p.score for p in proto.pieces],
                       "tokenizer.ggml.token_type": [p.type for p in proto.pieces],
                       "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
                       "tokenizer.ggml.unknown_token_id": 0, **overrides})


def test_sentencepiece_model_gives_the_real_tokenizers_ids():
    rebuilt = SentencePieceProcessor(model_proto=build_sentencepiece_model(llama2_vocabulary()))
    original = SentencePieceProcessor(model_file=str(SHARED / "tokenizers/llama-2/tokenizer.model"))
    for text in TEXTS:
        assert rebuilt.encode(text) == original.encode(text), text
    assert (rebuilt.bos_id(), rebuilt.eos_id(), rebuilt.unk_id(), rebuilt.pad_id()) == (1, 2, 0, -1)
    assert rebuilt.id_to_piece(13) == "<0x0A>" and rebuilt.decode(rebuilt.encode("a\nb")) == "a\nb"  # byte fallback
    without_prefix = SentencePieceProcessor(model_proto=build_sentencepiece_model(
        llama2_vocabulary(**{"tokenizer.ggml.add_space_prefix": False})))
    assert original.id_to_piece(original.encode("Hello")) == ["▁Hello"]
    assert without_prefix.id_to_piece(without_prefix.encode("Hello")) == ["Hello"]


def test_a_sentencepiece_vocabulary_needs_one_unknown_token():
    vocabulary = llama2_vocabulary()
    vocabulary.metadata["tokenizer.ggml.token_type"] = [TOKEN_NORMAL] + vocabulary.get("tokenizer.ggml.token_type")[1:]
    with pytest.raises(UserError, match="vocab.gguf: a SentencePiece vocabulary needs exactly one unknown token, "
                                        "this one has 0"):
        build_sentencepiece_model(vocabulary)


# ---- Gemma -------------------------------------------------------------------------------------------------------
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
GEMMA_PIECES = ["▁", "h", "e", "l", "o", "he", "ll", "hell", "hello", "  ", "▁hello", "\n\n"]


def gemma_vocabulary() -> Vocabulary:
    """Gemma's layout as llama.cpp stores it: control pieces, <unk>, 256 byte pieces, then pieces merged in their
    order; user-defined pieces ("  ", "\\n\\n") spelled with real spaces."""
    tokens = GEMMA_SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + GEMMA_PIECES
    types = [TOKEN_CONTROL] * 3 + [TOKEN_UNKNOWN] + [TOKEN_CONTROL] * 2 + [TOKEN_BYTE] * 256 + [
        TOKEN_USER_DEFINED if piece in ("  ", "\n\n") else TOKEN_NORMAL for piece in GEMMA_PIECES]
    return Vocabulary({"tokenizer.ggml.model": "llama", "general.architecture": "gemma3",
                       "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
                       "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.eos_token_id": 1,
                       "tokenizer.ggml.unknown_token_id": 3, "tokenizer.ggml.add_bos_token": True})


def gemma_id(piece: str) -> int:
    return len(GEMMA_SPECIALS) + 256 + GEMMA_PIECES.index(piece)


def test_gemma_vocabulary_merges_in_the_order_of_its_pieces():
    tokenizer = build_gemma_tokenizer(gemma_vocabulary())
    # "hello▁▁hello": the whitespace piece "▁▁" comes before "▁hello" in the file, so it merges first
    assert tokenizer.encode("hello  hello").ids == [2, gemma_id("hello"), gemma_id("  "), gemma_id("hello")]
    assert tokenizer.encode("hello hello").ids == [2, gemma_id("hello"), gemma_id("▁hello")]
    assert tokenizer.encode("hex").ids == [2, gemma_id("he"), 6 + ord("x")]  # "x" is no piece: its byte
    assert tokenizer.encode("<start_of_turn>hello\n\n").ids == [2, 4, gemma_id("hello"), gemma_id("\n\n")]
    assert tokenizer.decode(tokenizer.encode("hello  hex").ids) == "hello  hex"


# ---- the files written -------------------------------------------------------------------------------------------
def test_bpe_files(tmp_path):
    vocabulary = tiny_bpe(bos_token_id=1, eos_token_id=0, padding_token_id=0)
    vocabulary.metadata.update({"general.architecture": "llama", "llama.context_length": 2048,
                                "tokenizer.chat_template": "{{ messages }}"})
    assert write_tokenizer_files(vocabulary, tmp_path) == ["tokenizer.json", "tokenizer_config.json",
                                                           "generation_config.json"]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {
        "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False, "add_eos_token": False,
        "clean_up_tokenization_spaces": False, "model_max_length": 2048, "bos_token": "<|im_start|>",
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "chat_template": "{{ messages }}"}
    # <|im_end|> is a control token that ends a turn: generation stops at it as at the EOS
    assert json.loads((tmp_path / "generation_config.json").read_text()) == {
        "bos_token_id": 1, "eos_token_id": [0, 2], "pad_token_id": 0}
    tokenizer = Tokenizer(tmp_path)
    assert tokenizer.encode_ids("hello") == [260, 3 + BYTE_ALPHABET.index("l"), 3 + BYTE_ALPHABET.index("o")]
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.stop_ids, tokenizer.use_bos) == (1, 0, [0, 2], False)
    assert tokenizer.chat_template == "{{ messages }}"


def test_sentencepiece_files(tmp_path):
    assert write_tokenizer_files(llama2_vocabulary(), tmp_path)[0] == "tokenizer.model"
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert (config["tokenizer_class"], config["add_bos_token"], config["model_max_length"]) == \
        ("LlamaTokenizer", True, 4096)  # llama.cpp's default for SentencePiece; no context length in the file
    rebuilt, original = Tokenizer(tmp_path), Tokenizer(SHARED / "tokenizers" / "llama-2")
    for text in TEXTS:
        assert rebuilt.encode(text).tolist() == original.encode(text).tolist(), text


def test_gemma_files(tmp_path):
    assert write_tokenizer_files(gemma_vocabulary(), tmp_path)[0] == "tokenizer.json"
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert (config["tokenizer_class"], config["bos_token"], config["eos_token"], config["unk_token"]) == \
        ("GemmaTokenizer", "<bos>", "<eos>", "<unk>")
    tokenizer = Tokenizer(tmp_path)
    assert tokenizer.encode("hello hello").tolist() == [2, gemma_id("hello"), gemma_id("▁hello")]
