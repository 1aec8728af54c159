"""A checkpoint's tokenizer as GGUF metadata: the reverse of `lit_gpt.gguf.tokenizer_from_gguf`.

Byte-level BPE tokenizer.json files become llama.cpp's "gpt2" vocabulary (tokens, types, merges and the name of the
pre-tokenizer llama.cpp should split with), SentencePiece tokenizer.model files its "llama" vocabulary (pieces, scores,
types), and Gemma's tokenizer.json (BPE with byte fallback over "▁"-spaced text) the "llama" vocabulary llama.cpp's
gemma architectures expect. Special token ids, add_bos and the chat template come from the files our `Tokenizer` reads.

The pre-tokenizer name is not in tokenizer.json: it is the one, among those llama.cpp and our import implement, under
which the rebuilt tokenizer splits sample texts as the checkpoint's own does. `TokenizerPlan.check` then rebuilds the
whole tokenizer from the planned metadata with our import and compares it with the checkpoint's.
"""

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lit_gpt.gguf.tokenizer_from_gguf import (END_OF_TURN_TOKENS, GEMMA_ARCHITECTURES, TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL,
                                    TOKEN_UNKNOWN, TOKEN_UNUSED, TOKEN_USER_DEFINED, build_bpe_tokenizer,
                                    write_tokenizer_files)
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError
from lit_gpt.json_files import read_json

# one name per pre-tokenization llama.cpp and our import both implement (the others are aliases of these)
PRE_TOKENIZER_CANDIDATES = ("gpt-2", "smollm", "llama-bpe", "qwen2")
# texts on which those pre-tokenizers differ (digits in runs, contractions, whitespace before digits and newlines)
PROBE_TEXTS = (
    "Hello world! It's 2024-05-01: 3.14159, 1,000,000 and 12345678.",
    "def f(x):\n    return x**2  # 100%\n\n\tdone\r\n",
    "I'M sure they'll've LEFT, isn't it?  2 spaces  3",
    "Ünïcödé café naïve 日本語 中文 한국어 🦙🤗 ½ ① x²",
    "   leading and trailing   ", "\n\n\nStep:\n\n1. Go", "a" + " " * 17 + "b",
)
GEMMA_CONTROL_SCORE = -1000.0  # what llama.cpp's converter gives Gemma's control and user-defined pieces
PAD_TOKEN = "[PAD{}]"  # llama.cpp's name for the rows of a padded embedding matrix that no token uses


@dataclass
class TokenizerPlan:
    metadata: dict
    description: str
    source: Tokenizer = field(repr=False)

    def check(self, planned_file, checkpoint_dir: Path) -> None:
        """Our import's tokenizer, rebuilt from the planned metadata, must be the checkpoint's: the same ids for
        the sample texts and for the special tokens spelled in text, the same BOS/EOS, add_bos and chat template."""
        with tempfile.TemporaryDirectory() as tmp:
            write_tokenizer_files(planned_file, tmp)
            rebuilt = Tokenizer(tmp)
            ours = self.source
            specials = [ours.id_to_token(i) for i in (ours.bos_id, ours.eos_id) if i is not None]
            specials += [t for t in END_OF_TURN_TOKENS if ours.token_to_id(t) is not None]
            texts = list(PROBE_TEXTS) + [f"x{t}\ny" for t in specials]
            problems = [f"{name} {a!r} would be read as {b!r}" for name, a, b in (
                ("BOS id", ours.bos_id, rebuilt.bos_id), ("EOS id", ours.eos_id, rebuilt.eos_id),
                ("add_bos", ours.use_bos, rebuilt.use_bos), ("chat template", ours.chat_template,
                                                            rebuilt.chat_template)) if a != b]
            for text in texts:
                if ours.encode_ids(text) != rebuilt.encode_ids(text):
                    problems.append(f"{text[:30]!r} would be tokenized differently")
                    break
        if problems:
            raise UserError(f"{checkpoint_dir}: the tokenizer cannot be written to GGUF exactly yet "
                            f"({'; '.join(problems)})")


def _special_ids(tokenizer: Tokenizer, checkpoint_dir: Path) -> dict:
    config = _read_json(checkpoint_dir / "tokenizer_config.json")
    generation = _read_json(checkpoint_dir / "generation_config.json")
    pad = tokenizer._special_id(config.get("pad_token"), generation.get("pad_token_id"))
    ids = {"tokenizer.ggml.bos_token_id": tokenizer.bos_id, "tokenizer.ggml.eos_token_id": tokenizer.eos_id,
           "tokenizer.ggml.padding_token_id": pad}
    metadata = {key: int(i) for key, i in ids.items() if i is not None}
    metadata["tokenizer.ggml.add_bos_token"] = bool(tokenizer.use_bos)
    metadata["tokenizer.ggml.add_eos_token"] = bool(config.get("add_eos_token", False))
    if tokenizer.chat_template:
        metadata["tokenizer.chat_template"] = tokenizer.chat_template
    return metadata


def _read_json(path: Path) -> dict:
    return read_json(path, "tokenizer config", fix="download the tokenizer again") if path.is_file() else {}


def _padded(tokens: list, types: list, scores: list, vocab_size: int, checkpoint_dir: Path) -> None:
    """Rows of the embedding matrix past the vocabulary (Qwen's padding) need tokens too: llama.cpp takes the
    vocabulary size from the token list and checks it against the matrix."""
    if len(tokens) > vocab_size:
        raise UserError(f"{checkpoint_dir}: the tokenizer has {len(tokens)} tokens, the model only {vocab_size} "
                        "embedding rows; the checkpoint and its tokenizer do not belong together")
    for i in range(len(tokens), vocab_size):
        tokens.append(PAD_TOKEN.format(i))
        types.append(TOKEN_UNUSED)
        scores.append(GEMMA_CONTROL_SCORE)


class _Metadata:
    """A planned metadata dict as our import's tokenizer builders read a GGUF file."""

    def __init__(self, path, metadata: dict) -> None:
        self.path, self.metadata = path, metadata

    def get(self, key, default=None):
        return self.metadata.get(key, default)


def _hf_tokens(tokenizer: Tokenizer, data: dict) -> tuple:
    """Tokens by id, and their llama.cpp types from tokenizer.json's added tokens (special: control)."""
    vocab = tokenizer.processor.get_vocab(with_added_tokens=True)
    tokens = [None] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        tokens[i] = token
    holes = [i for i, t in enumerate(tokens) if t is None]
    if holes:
        raise UserError(f"{tokenizer.model_file}: no token has id {holes[0]}; such a vocabulary cannot be written "
                        "to GGUF")
    types = [TOKEN_NORMAL] * len(tokens)
    for added in data.get("added_tokens", []):
        types[added["id"]] = TOKEN_CONTROL if added.get("special") else TOKEN_USER_DEFINED
    return tokens, types


def _bpe_metadata(tokenizer: Tokenizer, data: dict, vocab_size: int, checkpoint_dir: Path) -> tuple:
    tokens, types = _hf_tokens(tokenizer, data)
    scores = [0.0] * len(tokens)
    _padded(tokens, types, scores, vocab_size, checkpoint_dir)
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    metadata = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
                "tokenizer.ggml.merges": merges}
    for pre in PRE_TOKENIZER_CANDIDATES:  # the first under which our import splits the samples as the original
        rebuilt = build_bpe_tokenizer(_Metadata(checkpoint_dir, {**metadata, "tokenizer.ggml.pre": pre}))
        if all(rebuilt.encode(t, add_special_tokens=False).ids == tokenizer.encode_ids(t) for t in PROBE_TEXTS):
            return {**metadata, "tokenizer.ggml.pre": pre}, f"bpe ({pre})"
    raise UserError(f"{tokenizer.model_file}: its pre-tokenizer splits text like none of those llama.cpp implements "
                    f"and this export knows ({', '.join(PRE_TOKENIZER_CANDIDATES)}); not supported yet")


def _gemma_metadata(tokenizer: Tokenizer, data: dict, vocab_size: int, checkpoint_dir: Path) -> tuple:
    """Gemma's vocabulary as llama.cpp's "llama" tokenizer reads it: byte pieces typed BYTE, the unknown piece
    UNKNOWN, and scores that make its score-ordered merging pick what the BPE merge order picks (earlier piece
    first: the order our import, and Gemma's own tokenizer, merge in)."""
    tokens, types = _hf_tokens(tokenizer, data)
    unk = data["model"].get("unk_token")
    scores = []
    for i, token in enumerate(tokens):
        if token == unk:
            types[i] = TOKEN_UNKNOWN
        elif types[i] == TOKEN_NORMAL and re.fullmatch(r"<0x[0-9A-F]{2}>", token):
            types[i] = TOKEN_BYTE
        scores.append(-float(i) if types[i] == TOKEN_NORMAL else 0.0 if types[i] == TOKEN_BYTE
                      else GEMMA_CONTROL_SCORE)
    _padded(tokens, types, scores, vocab_size, checkpoint_dir)
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.add_space_prefix": False,
            **({"tokenizer.ggml.unknown_token_id": tokens.index(unk)} if unk in tokens else {})}, "gemma"


def _sentencepiece_metadata(tokenizer: Tokenizer, vocab_size: int, checkpoint_dir: Path) -> tuple:
    from sentencepiece import sentencepiece_model_pb2 as sp_model

    proto = sp_model.ModelProto()
    proto.ParseFromString(tokenizer.model_file.read_bytes())
    tokens = [p.piece for p in proto.pieces]
    scores = [float(p.score) for p in proto.pieces]
    types = [int(p.type) for p in proto.pieces]  # SentencePiece's piece types are llama.cpp's token types
    _padded(tokens, types, scores, vocab_size, checkpoint_dir)
    metadata = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
                "tokenizer.ggml.token_type": types,
                "tokenizer.ggml.add_space_prefix": bool(proto.normalizer_spec.add_dummy_prefix)}
    if proto.trainer_spec.unk_id >= 0:
        metadata["tokenizer.ggml.unknown_token_id"] = int(proto.trainer_spec.unk_id)
    return metadata, "sentencepiece"


def plan_tokenizer(checkpoint_dir: Path, arch: str, vocab_size: int) -> TokenizerPlan:
    """The tokenizer metadata of the checkpoint's tokenizer (the one our `Tokenizer` loads from it)."""
    tokenizer = Tokenizer(checkpoint_dir)
    if tokenizer.backend == "sentencepiece":
        metadata, description = _sentencepiece_metadata(tokenizer, vocab_size, checkpoint_dir)
    else:
        data = read_json(tokenizer.model_file, "tokenizer file", fix="download the tokenizer again")
        model_type = data.get("model", {}).get("type")
        if model_type != "BPE":
            raise UserError(f"{tokenizer.model_file}: a {model_type} tokenizer cannot be written to GGUF yet "
                            "(supported: BPE tokenizer.json, SentencePiece tokenizer.model)")
        if arch in GEMMA_ARCHITECTURES:
            metadata, description = _gemma_metadata(tokenizer, data, vocab_size, checkpoint_dir)
        elif "ByteLevel" in json.dumps(data.get("pre_tokenizer")):
            metadata, description = _bpe_metadata(tokenizer, data, vocab_size, checkpoint_dir)
        else:
            raise UserError(f"{tokenizer.model_file}: a BPE tokenizer without byte-level pre-tokenization (a "
                            "SentencePiece-style tokenizer.json) cannot be written to GGUF yet for "
                            f"architecture {arch}")
    metadata.update(_special_ids(tokenizer, checkpoint_dir))
    return TokenizerPlan(metadata, description, tokenizer)
