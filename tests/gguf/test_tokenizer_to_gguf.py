"""lit_gpt/gguf/tokenizer_to_gguf.py: the GGUF metadata planned for the real SmolLM2, GPT-2 and Llama 2 tokenizers and a
small Gemma-style one, value by value; the check that rebuilds the tokenizer from the plan, and what it catches;
tokenizers that cannot be written yet. Whole exports read back: gguf/test_export_model.py."""

import json

import pytest
from sentencepiece import sentencepiece_model_pb2 as sp_model
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import pre_tokenizers
from tokenizers.models import BPE, WordPiece

from helpers import BYTE_ALPHABET, SHARED, SPECIALS
from lit_gpt.gguf.tokenizer_from_gguf import (TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_UNUSED,
                                              build_bpe_tokenizer, build_gemma_tokenizer)
from lit_gpt.gguf.tokenizer_to_gguf import GEMMA_CONTROL_SCORE, PRE_TOKENIZER_CANDIDATES, _Metadata, plan_tokenizer
from lit_gpt.utils import UserError

TOKENIZERS = SHARED / "tokenizers"
SMOLLM2 = TOKENIZERS / "smollm2"


@pytest.fixture(scope="module")
def smollm2_plan():
    return plan_tokenizer(SMOLLM2, "llama", 49152)


def planned(metadata: dict, **changes) -> _Metadata:
    """A planned GGUF file as the check reads it, with some tokenizer.ggml.* values changed."""
    return _Metadata("planned.gguf", {**metadata, **{f"tokenizer.ggml.{k}": v for k, v in changes.items()}})


def save(directory, tokenizer: HFTokenizer, config: dict = None):
    directory.mkdir()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(config or {}))
    return directory


# ---- byte-level BPE ----------------------------------------------------------------------------------------------
def test_smollm2_plan(smollm2_plan):
    data = json.loads((SMOLLM2 / "tokenizer.json").read_text())
    metadata = smollm2_plan.metadata
    assert smollm2_plan.description == "bpe (smollm)"  # the pre-tokenizer of the StarCoder family: digits alone
    assert (metadata["tokenizer.ggml.model"], metadata["tokenizer.ggml.pre"]) == ("gpt2", "smollm")
    tokens, types = metadata["tokenizer.ggml.tokens"], metadata["tokenizer.ggml.token_type"]
    assert len(tokens) == 49152 and all(tokens[i] == token for token, i in data["model"]["vocab"].items())
    special = sorted(t["id"] for t in data["added_tokens"] if t["special"])
    assert [i for i, t in enumerate(types) if t != TOKEN_NORMAL] == special and set(types) == {TOKEN_NORMAL,
                                                                                               TOKEN_CONTROL}
    assert metadata["tokenizer.ggml.merges"] == [m if isinstance(m, str) else " ".join(m)
                                                 for m in data["model"]["merges"]]
    assert {k: metadata[f"tokenizer.ggml.{k}"] for k in ("bos_token_id", "eos_token_id", "padding_token_id",
                                                         "add_bos_token", "add_eos_token")} == \
        {"bos_token_id": 1, "eos_token_id": 2, "padding_token_id": 2, "add_bos_token": False, "add_eos_token": False}
    assert metadata["tokenizer.chat_template"] == (SMOLLM2 / "chat_template.jinja").read_text()
    assert "tokenizer.ggml.scores" not in metadata  # BPE merges by rank, not by score


def test_gpt2_plan_and_padding_rows():
    plan = plan_tokenizer(TOKENIZERS / "gpt2", "gpt2", 50260)
    assert plan.description == "bpe (gpt-2)"
    tokens, types = plan.metadata["tokenizer.ggml.tokens"], plan.metadata["tokenizer.ggml.token_type"]
    # embedding rows past the vocabulary get llama.cpp's placeholder tokens: it sizes the vocabulary by the list
    assert (len(tokens), tokens[50256], tokens[50257:]) == (50260, "<|endoftext|>", ["[PAD50257]", "[PAD50258]",
                                                                                    "[PAD50259]"])
    assert types[50256:] == [TOKEN_CONTROL] + [TOKEN_UNUSED] * 3
    assert plan.metadata["tokenizer.ggml.bos_token_id"] == plan.metadata["tokenizer.ggml.eos_token_id"] == 50256
    plan.check(planned(plan.metadata), TOKENIZERS / "gpt2")  # the placeholders change no tokenization
    with pytest.raises(UserError, match="the tokenizer has 50257 tokens, the model only 50000 embedding rows; the "
                                        "checkpoint and its tokenizer do not belong together"):
        plan_tokenizer(TOKENIZERS / "gpt2", "gpt2", 50000)


def test_check_accepts_the_plan_and_names_what_would_change(smollm2_plan):
    assert smollm2_plan.check(planned(smollm2_plan.metadata), SMOLLM2) is None
    prefix = f"{SMOLLM2}: the tokenizer cannot be written to GGUF exactly yet ("
    with pytest.raises(UserError) as e:
        smollm2_plan.check(planned(smollm2_plan.metadata, bos_token_id=0, add_bos_token=True), SMOLLM2)
    assert str(e.value) == prefix + "BOS id 1 would be read as 0; add_bos False would be read as True)"
    with pytest.raises(UserError) as e:  # GPT-2's pre-tokenizer on SmolLM2's vocabulary
        smollm2_plan.check(planned(smollm2_plan.metadata, pre="gpt-2"), SMOLLM2)
    assert str(e.value).startswith(prefix) and str(e.value).endswith("would be tokenized differently)")


def test_a_pre_tokenizer_llama_cpp_lacks_is_refused(tmp_path):
    """A byte-level BPE that does not split text before merging (it merges "o" and the space after it)."""
    tokenizer = build_bpe_tokenizer(_Metadata("tiny", {
        "tokenizer.ggml.tokens": SPECIALS + BYTE_ALPHABET + ["oĠ"], "tokenizer.ggml.merges": ["o Ġ"],
        "tokenizer.ggml.token_type": [TOKEN_CONTROL] * 3 + [TOKEN_NORMAL] * 257}))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    directory = save(tmp_path / "unsplit", tokenizer)
    with pytest.raises(UserError, match="its pre-tokenizer splits text like none of those llama.cpp implements and "
                                        f"this export knows \\({', '.join(PRE_TOKENIZER_CANDIDATES)}\\)"):
        plan_tokenizer(directory, "llama", 260)


def test_tokenizers_that_cannot_be_written_yet(tmp_path):
    wordpiece = save(tmp_path / "wordpiece", HFTokenizer(WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")))
    with pytest.raises(UserError, match=r"tokenizer\.json: a WordPiece tokenizer cannot be written to GGUF yet"):
        plan_tokenizer(wordpiece, "llama", 2)
    metaspace = HFTokenizer(BPE({"<unk>": 0, "▁": 1, "a": 2}, [], unk_token="<unk>"))
    metaspace.pre_tokenizer = pre_tokenizers.Metaspace()
    with pytest.raises(UserError, match="a BPE tokenizer without byte-level pre-tokenization .* for architecture "
                                        "llama"):
        plan_tokenizer(save(tmp_path / "metaspace", metaspace), "llama", 3)
    holes = HFTokenizer(BPE({"a": 0, "b": 2}, []))
    holes.pre_tokenizer = pre_tokenizers.ByteLevel()
    with pytest.raises(UserError, match=r"tokenizer\.json: no token has id 1; such a vocabulary cannot be written"):
        plan_tokenizer(save(tmp_path / "holes", holes), "llama", 3)


# ---- SentencePiece -----------------------------------------------------------------------------------------------
def test_llama2_plan_is_its_sentencepiece_model():
    proto = sp_model.ModelProto()
    proto.ParseFromString((TOKENIZERS / "llama-2" / "tokenizer.model").read_bytes())
    plan = plan_tokenizer(TOKENIZERS / "llama-2", "llama", 32000)
    metadata = plan.metadata
    assert (plan.description, metadata["tokenizer.ggml.model"]) == ("sentencepiece", "llama")
    assert metadata["tokenizer.ggml.tokens"] == [p.piece for p in proto.pieces]
    assert metadata["tokenizer.ggml.scores"] == [p.score for p in proto.pieces]
    assert metadata["tokenizer.ggml.token_type"][:4] == [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL, TOKEN_BYTE]
    assert {k: metadata[f"tokenizer.ggml.{k}"] for k in ("unknown_token_id", "bos_token_id", "eos_token_id",
                                                         "add_bos_token", "add_space_prefix")} == \
        {"unknown_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "add_bos_token": True, "add_space_prefix": True}
    plan.check(planned(metadata), TOKENIZERS / "llama-2")


# ---- Gemma -------------------------------------------------------------------------------------------------------
GEMMA_TOKENS = (["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
                + [f"<0x{b:02X}>" for b in range(256)]
                + ["▁", "h", "e", "l", "o", "he", "ll", "hell", "hello", "▁hello"])
GEMMA_TYPES = [TOKEN_CONTROL] * 3 + [TOKEN_UNKNOWN] + [TOKEN_CONTROL] * 2 + [TOKEN_BYTE] * 256 + [TOKEN_NORMAL] * 10


def test_gemma_plan_scores_pieces_in_their_merge_order(tmp_path):
    stored = {"tokenizer.ggml.tokens": GEMMA_TOKENS, "tokenizer.ggml.token_type": GEMMA_TYPES,
              "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.unknown_token_id": 3}
    directory = save(tmp_path / "gemma", build_gemma_tokenizer(_Metadata("gemma", stored)),
                     {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "add_bos_token": True})
    plan = plan_tokenizer(directory, "gemma3", len(GEMMA_TOKENS) + 1)
    metadata = plan.metadata
    assert (plan.description, metadata["tokenizer.ggml.model"]) == ("gemma", "llama")
    assert metadata["tokenizer.ggml.tokens"] == GEMMA_TOKENS + ["[PAD272]"]
    assert metadata["tokenizer.ggml.token_type"] == GEMMA_TYPES + [TOKEN_UNUSED]
    # llama.cpp merges the best-scored pair first: earlier pieces score higher, bytes 0, the rest -1000
    scores = metadata["tokenizer.ggml.scores"]
    assert scores[262:] == [-float(i) for i in range(262, 272)] + [GEMMA_CONTROL_SCORE]
    assert set(scores[6:262]) == {0.0} and set(scores[:6]) == {GEMMA_CONTROL_SCORE}
    assert {k: metadata[f"tokenizer.ggml.{k}"] for k in ("unknown_token_id", "bos_token_id", "eos_token_id",
                                                         "padding_token_id", "add_bos_token", "add_space_prefix")} == \
        {"unknown_token_id": 3, "bos_token_id": 2, "eos_token_id": 1, "padding_token_id": 0, "add_bos_token": True,
         "add_space_prefix": False}
    plan.check(_Metadata("planned.gguf", {**metadata, "general.architecture": "gemma3"}), directory)
