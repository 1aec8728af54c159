"""The vocabulary stored in a GGUF file -> tokenizer files our `lit_gpt.tokenizer.Tokenizer` loads.

llama.cpp keeps the tokenizer as metadata: the tokens, their scores and types, BPE merges, the special token ids.
Byte-level BPE vocabularies (`tokenizer.ggml.model` "gpt2") become a `tokenizer.json`; Llama-style SentencePiece
ones ("llama") a `tokenizer.model`; Gemma's SentencePiece vocabulary a `tokenizer.json` too (see
`build_gemma_tokenizer` for why). The functions take any object with `.path` and `.get(key, default)`, such as
`lit_gpt.gguf.import_model.GGUFFile`.
"""

import json
from pathlib import Path
from typing import Any, Optional

from lit_gpt.utils import UserError, atomic_path, atomic_write_text

# llama.cpp's token types (the same numbers as SentencePiece's piece types)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# tokenizer.ggml.pre values of byte-level BPE vocabularies whose pre-tokenization we rebuild exactly (checked against
# llama.cpp's tokenizer test vectors): "gpt-2" splits with GPT-2's regex; the StarCoder family, SmolLM included,
# first isolates every digit (llama.cpp: "\p{N}", then the GPT-2 regex), which is HF's Digits(individual_digits=True)
# + ByteLevel; Llama 3 splits with its own regex (numbers in groups of up to three) before the byte mapping, Qwen2
# (and Qwen3, DeepSeek-R1's Qwen distills) with the same regex but single digits.
GPT2_PRE_TOKENIZERS = ("gpt-2", "gpt2")
DIGIT_SPLIT_PRE_TOKENIZERS = ("smollm", "starcoder", "refact", "codeshell")
LLAMA3_PRE_TOKENIZERS = ("llama-bpe", "llama3", "llama-v3")
LLAMA3_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                      r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PRE_TOKENIZERS = ("qwen2", "deepseek-r1-qwen")
SPLIT_REGEXES = {**dict.fromkeys(LLAMA3_PRE_TOKENIZERS, LLAMA3_SPLIT_REGEX),
                 **dict.fromkeys(QWEN2_PRE_TOKENIZERS, LLAMA3_SPLIT_REGEX.replace(r"\p{N}{1,3}", r"\p{N}"))}
SUPPORTED_PRE_TOKENIZERS = GPT2_PRE_TOKENIZERS + DIGIT_SPLIT_PRE_TOKENIZERS + tuple(SPLIT_REGEXES)


# SentencePiece vocabularies of these architectures are Gemma's: no dummy space prefix, user-defined pieces for
# whitespace runs, newlines and tabs, and a merge order that is the order of the pieces in the file
GEMMA_ARCHITECTURES = ("gemma", "gemma2", "gemma3")

# control tokens that end a turn without being the EOS: generation stops at them too (llama.cpp does the same)
END_OF_TURN_TOKENS = ("<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>")


def check_tokenizer_supported(gguf_file: Any) -> str:
    """Which builder the vocabulary needs ("bpe", "sentencepiece" or "gemma"); fails early, before any weights are
    converted, on a tokenizer we cannot rebuild exactly or a vocabulary that is damaged (`check_vocabulary`)."""
    path = gguf_file.path
    model = gguf_file.get("tokenizer.ggml.model", None)
    if model is None:
        raise UserError(f"{path}: the GGUF has no tokenizer (tokenizer.ggml.model); it cannot become a checkpoint")
    check_vocabulary(gguf_file)
    if model == "gpt2":
        pre = gguf_file.get("tokenizer.ggml.pre", "gpt-2")
        if pre not in SUPPORTED_PRE_TOKENIZERS:
            raise UserError(f"{path}: byte-level BPE pre-tokenizer {pre!r} is not supported yet (supported: "
                            f"{', '.join(SUPPORTED_PRE_TOKENIZERS)})")
        return "bpe"
    if model != "llama":
        raise UserError(f"{path}: tokenizer type {model!r} is not supported yet (supported: gpt2 = byte-level BPE, "
                        "llama = SentencePiece)")
    if gguf_file.get("general.architecture", None) in GEMMA_ARCHITECTURES:
        if gguf_file.get("tokenizer.ggml.add_space_prefix", False):
            raise UserError(f"{path}: a Gemma vocabulary with tokenizer.ggml.add_space_prefix = true is not "
                            "supported yet")
        return "gemma"
    return "sentencepiece"


# metadata key -> (what its items must be, the check); the per-token lists must be as long as the token list
VOCABULARY_LISTS = {"tokenizer.ggml.tokens": ("strings", lambda x: type(x) is str),
                    "tokenizer.ggml.scores": ("numbers", lambda x: type(x) in (int, float)),
                    "tokenizer.ggml.token_type": ("token types 1 to 6", lambda x: type(x) is int and 1 <= x <= 6),
                    "tokenizer.ggml.merges": ("two pieces joined by a space", lambda x: type(x) is str and " " in x)}
PER_TOKEN_LISTS = ("tokenizer.ggml.scores", "tokenizer.ggml.token_type")
TOKENIZER_FLAGS = ("tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix")
TOKENIZER_TEXTS = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template")


def check_vocabulary(gguf_file: Any) -> None:
    """The tokenizer metadata checked before anything is built from it: lists of the right item types, scores and
    token types one per token, special token ids within the vocabulary, flags true or false. One line naming the
    key; a damaged or crafted file would otherwise give a wrong tokenizer, or an error deep inside `tokenizers`."""
    path = gguf_file.path

    def refuse(key: str, problem: str) -> UserError:
        return UserError(f"{path}: GGUF metadata {key} {problem}; the file is damaged")

    for key, (items, fits) in VOCABULARY_LISTS.items():
        values = gguf_file.get(key, None)
        if values is not None and not (isinstance(values, list) and all(fits(v) for v in values)):
            raise refuse(key, f"must be a list of {items}")
    tokens = gguf_file.get("tokenizer.ggml.tokens", None)
    if not tokens:
        raise refuse("tokenizer.ggml.tokens", "is missing or empty")
    for key in PER_TOKEN_LISTS:
        values = gguf_file.get(key, None)
        if values is not None and len(values) != len(tokens):
            raise refuse(key, f"has {len(values)} entries for {len(tokens)} tokens")
    for key in SPECIAL_TOKEN_KEYS.values():
        i = gguf_file.get(key, None)
        if i is not None and not (type(i) is int and 0 <= i < len(tokens)):
            raise refuse(key, f"= {i!r} is not a token id (0 to {len(tokens) - 1})")
    for keys, kind, fits in ((TOKENIZER_FLAGS, "true or false", bool), (TOKENIZER_TEXTS, "a string", str)):
        for key in keys:
            value = gguf_file.get(key, None)
            if value is not None and type(value) is not fits:
                raise refuse(key, f"= {str(value)[:40]!r} must be {kind}")


SPECIAL_TOKEN_KEYS = {"bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id",
                      "unk": "tokenizer.ggml.unknown_token_id", "pad": "tokenizer.ggml.padding_token_id"}


def _special_token_id(tokens: list, gguf_file: Any, key: str) -> Optional[int]:
    i = gguf_file.get(SPECIAL_TOKEN_KEYS[key], None)
    return int(i) if i is not None and 0 <= int(i) < len(tokens) else None


def _special_token(tokens: list, gguf_file: Any, key: str) -> Optional[str]:
    i = _special_token_id(tokens, gguf_file, key)
    return tokens[i] if i is not None else None


def build_bpe_tokenizer(gguf_file: Any):
    """A `tokenizers.Tokenizer` equal to the byte-level BPE vocabulary stored in the GGUF."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    tokens = gguf_file.get("tokenizer.ggml.tokens")
    types = gguf_file.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in gguf_file.get("tokenizer.ggml.merges")]
    vocab = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)  # duplicated entries (padding placeholders) keep their first id
    pre = gguf_file.get("tokenizer.ggml.pre", "gpt-2")
    # Llama 3 looks a whole pre-token up in the vocabulary before merging (llama.cpp does the same for it)
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False,
                              ignore_merges=pre in LLAMA3_PRE_TOKENIZERS))

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre not in SPLIT_REGEXES)
    if pre in DIGIT_SPLIT_PRE_TOKENIZERS:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in SPLIT_REGEXES:
        split = pre_tokenizers.Split(Regex(SPLIT_REGEXES[pre]), behavior="isolated")
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()

    # CONTROL/UNKNOWN tokens are special (never split, skipped when decoding); USER_DEFINED ones are never split but
    # are text. llama.cpp's converter stores user-defined tokens decoded, so their text matches the input as is.
    tokenizer.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                                  for i, t in enumerate(types) if t in (TOKEN_CONTROL, TOKEN_UNKNOWN)])
    tokenizer.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                          for i, t in enumerate(types) if t == TOKEN_USER_DEFINED])

    bos, eos = _special_token(tokens, gguf_file, "bos"), _special_token(tokens, gguf_file, "eos")
    add_bos = bool(gguf_file.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    add_eos = bool(gguf_file.get("tokenizer.ggml.add_eos_token", False)) and eos is not None
    single = ([bos] if add_bos else []) + ["$A"] + ([eos] if add_eos else [])
    pair = single + ([f"{bos}:1"] if add_bos else []) + ["$B:1"] + ([f"{eos}:1"] if add_eos else [])
    specials = [(t, tokens.index(t)) for t in dict.fromkeys([bos if add_bos else None, eos if add_eos else None]) if t]
    tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
    return tokenizer


def build_sentencepiece_model(gguf_file: Any) -> bytes:
    """A SentencePiece `tokenizer.model` equal to the GGUF's "llama" vocabulary: pieces, scores and piece types are
    stored as they are; the normalizer is the one of Llama-style BPE models (no text normalization, spaces as ▁)."""
    from sentencepiece import sentencepiece_model_pb2 as sp_model

    tokens = gguf_file.get("tokenizer.ggml.tokens")
    scores = gguf_file.get("tokenizer.ggml.scores", [0.0] * len(tokens))
    types = gguf_file.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * len(tokens))
    if types.count(TOKEN_UNKNOWN) != 1:
        raise UserError(f"{gguf_file.path}: a SentencePiece vocabulary needs exactly one unknown token, "
                        f"this one has {types.count(TOKEN_UNKNOWN)}")
    model = sp_model.ModelProto()
    for token, score, token_type in zip(tokens, scores, types):
        piece = model.pieces.add()
        piece.piece, piece.score, piece.type = token, float(score), int(token_type)
    trainer = model.trainer_spec
    trainer.model_type = sp_model.TrainerSpec.BPE
    trainer.vocab_size = len(tokens)
    trainer.byte_fallback = TOKEN_BYTE in types
    trainer.unk_id = types.index(TOKEN_UNKNOWN)
    trainer.unk_piece = tokens[trainer.unk_id]
    for key in ("bos", "eos", "pad"):
        i = _special_token_id(tokens, gguf_file, key)
        setattr(trainer, f"{key}_id", i if i is not None else -1)
        if i is not None:
            setattr(trainer, f"{key}_piece", tokens[i])
    normalizer = model.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = bool(gguf_file.get("tokenizer.ggml.add_space_prefix", True))
    normalizer.remove_extra_whitespaces = False
    normalizer.escape_whitespaces = True
    return model.SerializeToString()


def _merges_from_pieces(pieces: list, mergeable: list) -> list:
    """SentencePiece's BPE keeps no merge list: two adjacent pieces merge when the piece they form is in the
    vocabulary, the best-ranked one first. As an HF BPE merge list: every split of every mergeable piece into two
    mergeable pieces, ranked by the position of the piece they form (the order among one piece's splits changes
    no result: two splits of one piece never compete for the same symbols)."""
    ids = {}
    for i, (piece, ok) in enumerate(zip(pieces, mergeable)):
        if ok:
            ids.setdefault(piece, i)
    merges = []
    for i, piece in enumerate(pieces):
        if not mergeable[i] or ids.get(piece) != i:
            continue
        for cut in range(len(piece) - 1, 0, -1):
            if piece[:cut] in ids and piece[cut:] in ids:
                merges.append((piece[:cut], piece[cut:]))
    return merges


def build_gemma_tokenizer(gguf_file: Any):
    """A `tokenizers.Tokenizer` equal to transformers' reading of a Gemma GGUF vocabulary (and so to Gemma's own
    tokenizer.json): BPE with byte fallback over text whose spaces are "▁", no dummy prefix.

    Not a tokenizer.model, for three reasons. llama.cpp's converter marks `<unk>` and the turn markers CONTROL, and
    SentencePiece never matches control pieces in text, while Gemma's prompts must encode `<start_of_turn>` as one
    id. It stores the user-defined whitespace-run pieces with real spaces ("  ", in the model "▁▁"); spelled back
    with "▁" they are ordinary pieces that BPE merges. And the merge order is the order of the pieces in the file,
    not their scores (user-defined and control pieces all score -1000)."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    tokens = gguf_file.get("tokenizer.ggml.tokens")
    types = gguf_file.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * len(tokens))
    # the model's spelling: text is matched after its spaces became "▁"
    pieces = [t.replace(" ", "\u2581") if k == TOKEN_USER_DEFINED else t for t, k in zip(tokens, types)]
    vocab = {}
    for i, piece in enumerate(pieces):
        vocab.setdefault(piece, i)
    mergeable = [k in (TOKEN_NORMAL, TOKEN_USER_DEFINED) for k in types]
    unk = _special_token(tokens, gguf_file, "unk")
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=_merges_from_pieces(pieces, mergeable), unk_token=unk,
                              fuse_unk=True, byte_fallback=TOKEN_BYTE in types))
    tokenizer.normalizer = normalizers.Replace(" ", "\u2581")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    # control pieces are special (matched whole in the text, skipped when decoding); user-defined ones spelled
    # without spaces (newline and tab runs, HTML tags, <start_of_image>) are matched whole too, but are text
    tokenizer.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                                  for i, k in enumerate(types) if k in (TOKEN_CONTROL, TOKEN_UNKNOWN)])
    tokenizer.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                          for i, k in enumerate(types) if k == TOKEN_USER_DEFINED and tokens[i] == pieces[i]])
    bos = _special_token(tokens, gguf_file, "bos")
    if bos is not None and gguf_file.get("tokenizer.ggml.add_bos_token", True):
        tokenizer.post_processor = processors.TemplateProcessing(
            single=[bos, "$A"], pair=[bos, "$A", f"{bos}:1", "$B:1"], special_tokens=[(bos, tokens.index(bos))])
    return tokenizer


def write_tokenizer_files(gguf_file: Any, out_dir: "str | Path") -> list:
    """Writes tokenizer.json (byte-level BPE) or tokenizer.model (SentencePiece), tokenizer_config.json and
    generation_config.json. Returns the names written."""
    out_dir = Path(out_dir)
    kind = check_tokenizer_supported(gguf_file)
    tokens = gguf_file.get("tokenizer.ggml.tokens")
    if kind == "sentencepiece":
        with atomic_path(out_dir / "tokenizer.model") as tmp:
            tmp.write_bytes(build_sentencepiece_model(gguf_file))
        written = ["tokenizer.model"]
    else:
        tokenizer = build_bpe_tokenizer(gguf_file) if kind == "bpe" else build_gemma_tokenizer(gguf_file)
        with atomic_path(out_dir / "tokenizer.json") as tmp:
            tokenizer.save(str(tmp))
        written = ["tokenizer.json"]
    default_add_bos = kind != "bpe"  # llama.cpp's default for SentencePiece vocabularies

    tokenizer_config = {
        "tokenizer_class": {"bpe": "PreTrainedTokenizerFast", "sentencepiece": "LlamaTokenizer",
                            "gemma": "GemmaTokenizer"}[kind],
        "add_bos_token": bool(gguf_file.get("tokenizer.ggml.add_bos_token", default_add_bos)),
        "add_eos_token": bool(gguf_file.get("tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(gguf_file.get(f"{gguf_file.get('general.architecture')}.context_length", 4096)),
    }
    generation_config = {}
    for key in ("bos", "eos", "unk", "pad"):
        token = _special_token(tokens, gguf_file, key)
        if token is not None:
            tokenizer_config[f"{key}_token"] = token
            if key != "unk":
                generation_config[f"{key}_token_id"] = _special_token_id(tokens, gguf_file, key)
    eos_id = generation_config.get("eos_token_id")
    types = gguf_file.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * len(tokens))
    end_of_turn = [i for i, (t, k) in enumerate(zip(tokens, types))
                   if t in END_OF_TURN_TOKENS and k == TOKEN_CONTROL and i != eos_id]
    if eos_id is not None and end_of_turn:
        generation_config["eos_token_id"] = [eos_id, *end_of_turn]
    chat_template = gguf_file.get("tokenizer.chat_template", None)
    if chat_template:
        tokenizer_config["chat_template"] = chat_template
    atomic_write_text(out_dir / "tokenizer_config.json", json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
    atomic_write_text(out_dir / "generation_config.json", json.dumps(generation_config, indent=2))
    return written + ["tokenizer_config.json", "generation_config.json"]
