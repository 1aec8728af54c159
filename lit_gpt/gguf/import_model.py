"""Import a GGUF file (llama.cpp's format) as a checkpoint dir: dequantized weights, Config and tokenizer files.

GGUF keeps everything in one file: metadata (architecture sizes, the tokenizer's vocabulary, the chat template) and
tensors, possibly quantized. This module reads the metadata itself (fast, see `GGUFFile`), has the `gguf` package
from PyPI dequantize the tensors, maps llama.cpp's tensor names onto ours and undoes what llama.cpp's converter did
to them (the rotary row permutation of `llama` Q/K weights, the +1 on Gemma's norms, Phi-3's fused projections), so
the result is an ordinary checkpoint dir. Architectures: see `GGUF_ARCHITECTURES`.

The file is read by `lit_gpt.gguf.reader`, the tokenizer files are rebuilt by `lit_gpt.gguf.tokenizer_from_gguf`, and
`lit_gpt.gguf.packaged` (which imports this module, never the reverse) finds the real models that PyPI wheels ship as
GGUF files.
"""

import re
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

import numpy as np
import torch

from lit_gpt.config import Config
from lit_gpt.config_checks import ConfigError, check_sizes
from lit_gpt.registry import name_to_config
from lit_gpt.convert.hf import DTYPES, StateDictWriter, check_layout
from lit_gpt.file_names import LIT_CONFIG_FILE, LIT_WEIGHTS_FILE, TOKENIZER_FILES
from lit_gpt.gguf.reader import MISSING, GGUFFile, typed_metadata
from lit_gpt.gguf.tokenizer_from_gguf import check_tokenizer_supported, write_tokenizer_files
from lit_gpt.utils import UserError, atomic_path, check_writable_dir

# llama.cpp tensor name -> ours; per-block names are "blk.{i}.{gguf}" -> "blocks.{i}.{ours}". One table for every
# architecture: a name means the same thing in all of them (ffn_norm is the norm before the MLP, Gemma's
# pre_feedforward_layernorm included), and `check_layout` refuses a tensor the model does not have.
TOP_LEVEL_TENSORS = {"token_embd": "wte", "output_norm": "ln_f", "output": "lm_head"}
BLOCK_TENSORS = {
    "attn_norm": "norm_1",
    "attn_q": "attn.q",
    "attn_k": "attn.k",
    "attn_v": "attn.v",
    "attn_output": "attn.proj",
    "attn_q_norm": "attn.norm_q",
    "attn_k_norm": "attn.norm_k",
    "post_attention_norm": "post_attention_norm",
    "ffn_norm": "norm_2",
    "ffn_gate": "mlp.fc_1",
    "ffn_up": "mlp.fc_2",
    "ffn_down": "mlp.proj",
    "post_ffw_norm": "post_mlp_norm",
}


# tensors some architectures store fused: rows of the parts one after another (Phi-3's qkv_proj and gate_up_proj)
FUSED_BLOCK_TENSORS = {"attn_qkv": ("attn.q", "attn.k", "attn.v"), "ffn_up": ("mlp.fc_1", "mlp.fc_2")}
# not weights: Phi-3's longrope factors, read into Config.rope_scaling
ROPE_FACTOR_TENSORS = ("rope_factors_long.weight", "rope_factors_short.weight")


class GGUFArchitecture(NamedTuple):
    """What one llama.cpp architecture needs beyond the common metadata."""
    hf_architecture: str
    mlp_class_name: str = "LLaMAMLP"
    # llama.cpp's converter reorders the Q/K rows of its `llama` architecture only (for its interleaved rotary);
    # Gemma, Qwen and Phi-3 files keep the Hugging Face row order
    rotary_permuted: bool = False
    # Gemma's RMSNorm scales by 1 + weight; llama.cpp's converter stores 1 + weight so that its plain RMSNorm
    # works, and every "*norm.weight" tensor is that much off from the Hugging Face (and our) weights
    norm_offset: float = 0.0
    fields: tuple = ()  # Config switches that are fixed for the architecture, as (field, value)
    fused: tuple = ()  # the FUSED_BLOCK_TENSORS this architecture stores fused


GGUF_ARCHITECTURES = {
    "llama": GGUFArchitecture("LlamaForCausalLM", rotary_permuted=True),
    "qwen2": GGUFArchitecture("Qwen2ForCausalLM"),
    "qwen3": GGUFArchitecture("Qwen3ForCausalLM", fields=(("norm_qk", True),)),
    "phi3": GGUFArchitecture("Phi3ForCausalLM", fused=("attn_qkv", "ffn_up")),
    "gemma3": GGUFArchitecture("Gemma3ForCausalLM", mlp_class_name="GemmaMLP", norm_offset=1.0, fields=(
        ("norm_unit_offset", True), ("post_block_norms", True), ("norm_qk", True), ("scale_embeddings", True))),
}
SUPPORTED_ARCHITECTURES = tuple(GGUF_ARCHITECTURES)

# llama.cpp hardcodes these for gemma3 where no metadata key says otherwise (src/llama-model.cpp): every sixth
# layer global, the windowed layers' rope base 10,000
GEMMA3_SLIDING_WINDOW_PATTERN = 6
GEMMA3_LOCAL_ROPE_BASE = 10000.0

def _float32_value(x: float) -> float:
    """GGUF stores floats as float32: 1e-5 comes back as 9.999999747e-06. The shortest decimal that rounds to the
    same float32 is what the model's authors wrote, and what the registry and HF configs hold."""
    return float(str(np.float32(x)))


def config_from_gguf(gguf_file: GGUFFile, checkpoint_dir: "str | Path") -> Config:
    """The Config of a GGUF file, from its metadata; named after the registry entry it matches, if any."""
    path = gguf_file.path
    arch = gguf_file.get("general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise UserError(f"{path}: GGUF architecture {arch!r} is not supported yet (supported: "
                        f"{', '.join(SUPPORTED_ARCHITECTURES)}); convert the model's Hugging Face checkpoint instead")
    spec = GGUF_ARCHITECTURES[arch]
    if gguf_file.get(f"{arch}.expert_count", 0):
        raise UserError(f"{path}: mixture-of-experts GGUF files are not supported yet")

    def value(key, default=MISSING, kind="int"):
        v = gguf_file.get(f"{arch}.{key}", default)
        if isinstance(v, list):
            raise UserError(f"{path}: per-layer {arch}.{key} (different sizes per layer) is not supported yet")
        return typed_metadata(gguf_file, f"{arch}.{key}", kind, default)

    sizes = _gguf_sizes(gguf_file, arch, value)
    head_size = sizes["head_size"]
    if value("attention.value_length", head_size) != head_size:
        raise UserError(f"{path}: different key and value head sizes are not supported yet")
    tensors = gguf_file.tensors
    fields = dict(
        name=Path(checkpoint_dir).name,
        **sizes,
        rotary_percentage=value("rope.dimension_count", head_size) / head_size,
        rope_base=_float32_value(value("rope.freq_base", 10000.0, "float")),
        rope_scaling=_rope_scaling(gguf_file, arch),
        attn_bias="blk.0.attn_q.bias" in tensors,
        norm_class_name="RMSNorm",
        norm_eps=_float32_value(value("attention.layer_norm_rms_epsilon", 1e-5, "float")),
        mlp_class_name=spec.mlp_class_name,
        tie_embeddings="output.weight" not in tensors,
        architecture=spec.hf_architecture,
        **dict(spec.fields),
    )
    if arch == "gemma3":
        fields.update(_gemma3_fields(gguf_file, fields))
    if arch == "phi3":  # every layer windowed (Phi-3-mini: 2047), where the file says so
        fields["sliding_window"] = typed_metadata(gguf_file, "phi3.attention.sliding_window", "int", 0) or None
        if "rope_factors_long.weight" in tensors:
            fields["rope_scaling"] = _longrope_scaling(gguf_file, arch)
    try:
        config = Config(**fields)
    except UserError as e:
        raise UserError(f"{path}: the GGUF metadata gives an impossible model ({e}); the file is damaged") from None
    general = {key: str(gguf_file.get(f"general.{key}", "")) for key in ("name", "basename", "size_label", "finetune")}
    candidates = [Path(checkpoint_dir).name, general["name"].replace(" ", "-"),
                  "-".join(general[k] for k in ("basename", "size_label", "finetune") if general[k])]
    registered = _matching_registry_entry(config, candidates)
    if registered is not None:
        config.name, config.hf_repo_id = registered["name"], registered["hf_repo_id"]
    return config


# the metadata key (after "{arch}.") of each size, for the errors: the file's own names
GGUF_SIZE_KEYS = {"n_layer": "block_count", "n_embd": "embedding_length", "n_head": "attention.head_count",
                  "n_query_groups": "attention.head_count_kv", "head_size": "attention.key_length",
                  "intermediate_size": "feed_forward_length", "block_size": "context_length"}


def _gguf_sizes(gguf_file: GGUFFile, arch: str, value) -> dict:
    """The model's sizes from the metadata (`value`: config_from_gguf's typed reader), each checked to be within
    Config's bounds before anything divides by them or loops over the layers."""
    n_embd, n_head = value("embedding_length"), value("attention.head_count")
    sizes = dict(n_layer=value("block_count"), n_embd=n_embd, n_head=n_head,
                 n_query_groups=value("attention.head_count_kv", n_head),
                 head_size=value("attention.key_length", n_embd // n_head if n_head > 0 else 0),
                 intermediate_size=value("feed_forward_length"), block_size=value("context_length", 4096))
    tensors = gguf_file.tensors
    embedding_rows = int(tensors["token_embd.weight"].shape[1]) if "token_embd.weight" in tensors else None
    tokens = typed_metadata(gguf_file, "tokenizer.ggml.tokens", "list", None)
    # a padded embedding matrix: the weights decide the model's shape
    sizes["vocab_size"] = embedding_rows if embedding_rows is not None else len(tokens) if tokens is not None else None
    try:
        check_sizes({**sizes, "vocab_size": sizes["vocab_size"] or 0})
    except ConfigError as e:
        key = f"{arch}.{GGUF_SIZE_KEYS[e.field]}" if e.field in GGUF_SIZE_KEYS else "tokenizer.ggml.tokens"
        raise UserError(f"{gguf_file.path}: GGUF metadata {key}: {e}; the file is damaged") from None
    return sizes


def _rope_scaling(gguf_file: GGUFFile, arch: str) -> Optional[dict]:
    """Linear rope scaling (Gemma 3 4B and up) in Hugging Face's key names; others are refused."""
    path = gguf_file.path
    scaling = typed_metadata(gguf_file, f"{arch}.rope.scaling.type", "str", "none")
    factor = float(typed_metadata(gguf_file, f"{arch}.rope.scaling.factor", "float", 1.0))
    if "rope_freqs.weight" in gguf_file.tensors:  # Llama 3.1's per-frequency factors, baked into a tensor
        raise UserError(f"{path}: rotary embedding scaling by a rope_freqs tensor (Llama 3.1+) is not supported yet; "
                        "convert the model's Hugging Face checkpoint instead")
    if scaling == "none" or (scaling == "linear" and factor == 1.0):
        return None
    if scaling == "linear":
        return {"rope_type": "linear", "factor": _float32_value(factor)}
    raise UserError(f"{path}: rotary embedding scaling {scaling!r} is not supported yet (supported: linear)")


def _longrope_scaling(gguf_file: GGUFFile, arch: str) -> dict:
    """Phi-3's longrope: the per-frequency factors are tensors, the original context and the cos/sin factor keys."""
    factors = {}
    for kind in ("long", "short"):
        tensor = gguf_file.tensors.get(f"rope_factors_{kind}.weight")
        if tensor is None:
            raise UserError(f"{gguf_file.path}: rope_factors_long.weight without rope_factors_short.weight; the file "
                            "is incomplete")
        factors[kind] = [_float32_value(f) for f in dequantize_tensor(tensor, gguf_file.path).tolist()]
    scaling = {"rope_type": "longrope", "short_factor": factors["short"], "long_factor": factors["long"],
               "original_max_position_embeddings": typed_metadata(
                   gguf_file, f"{arch}.rope.scaling.original_context_length", "int")}
    attention = typed_metadata(gguf_file, f"{arch}.rope.scaling.attn_factor", "float", None)
    if attention is not None:
        scaling["attention_factor"] = _float32_value(attention)
    return scaling


def _gemma3_fields(gguf_file: GGUFFile, fields: dict) -> dict:
    """Gemma 3's windowed layers and attention scale: the metadata keys newer llama.cpp versions write where they
    exist, llama.cpp's fixed values otherwise."""
    path, n_layer = gguf_file.path, fields["n_layer"]
    pattern = gguf_file.get("gemma3.attention.sliding_window_pattern", None)
    if pattern is None:
        pattern = GEMMA3_SLIDING_WINDOW_PATTERN
    elif not isinstance(pattern, list):
        pattern = typed_metadata(gguf_file, "gemma3.attention.sliding_window_pattern", "int")
    elif len(pattern) != n_layer:
        raise UserError(f"{path}: gemma3.attention.sliding_window_pattern has {len(pattern)} entries for {n_layer} "
                        "layers; the file is damaged")
    else:  # one flag per layer, true = windowed (n_layer is within Config's bounds: the loop ends soon)
        regular = [[(i + 1) % k != 0 for i in range(n_layer)] for k in range(1, n_layer + 2)]
        matches = [k for k, flags in enumerate(regular, start=1) if flags == [bool(p) for p in pattern]]
        if not matches:
            raise UserError(f"{path}: gemma3.attention.sliding_window_pattern {pattern} is not one global layer "
                            "every k layers; not supported yet")
        pattern = matches[0]
    # 1/sqrt(query_pre_attn_scalar): llama.cpp uses the head size, but n_embd / n_head for the 27B model (62 layers)
    scale = typed_metadata(gguf_file, "gemma3.attention.scale", "float", None)
    if scale is not None:
        if not 1e-4 <= scale <= 1:  # 1/sqrt(a head size); 0 would divide by zero
            raise UserError(f"{path}: GGUF metadata gemma3.attention.scale = {scale}: must be from 0.0001 to 1; the "
                            "file is damaged")
        scalar = round(1.0 / float(scale) ** 2)
    else:
        scalar = fields["n_embd"] // fields["n_head"] if n_layer == 62 else fields["head_size"]
    window = typed_metadata(gguf_file, "gemma3.attention.sliding_window", "int", None)
    return dict(sliding_window=window or None, sliding_window_pattern=pattern,
                rope_local_base=_float32_value(typed_metadata(gguf_file, "gemma3.rope.freq_base_swa", "float",
                                                                   GEMMA3_LOCAL_ROPE_BASE)),
                attention_scores_scalar=scalar)


# fields that may differ between a GGUF and the registry entry it is named after: only the context length, which
# some GGUF exports shorten
_UNCOMPARED_FIELDS = ("name", "hf_repo_id", "block_size")


def _matching_registry_entry(config: Config, candidate_names: list) -> Optional[dict]:
    """The registry entry named like the checkpoint (case aside) whose model is exactly the GGUF's: only then may
    the checkpoint claim that model's name and Hub repo."""
    by_name = {name.lower(): entry for name, entry in name_to_config.items()}
    ours = {k: v for k, v in config.to_dict().items() if k not in _UNCOMPARED_FIELDS}
    for name in candidate_names:
        entry = by_name.get(name.lower()) if name else None
        if entry is None:
            continue
        registered = {k: v for k, v in Config(**entry).to_dict().items() if k not in _UNCOMPARED_FIELDS}
        if registered == ours:
            return entry
    return None


def tensor_shape(tensor) -> torch.Size:
    """PyTorch's (rows, cols) shape of a GGUF tensor: GGUF lists dims fastest-first (ggml's `ne`), the reverse."""
    return torch.Size(int(d) for d in reversed(tensor.shape))


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
    """llama.cpp's interleaved pairs -> HF "rotate half" rows, the layout of `lit_gpt.rope.apply_rope`."""
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


_TO_GGUF_TOP = {ours: theirs for theirs, ours in TOP_LEVEL_TENSORS.items()}
_TO_GGUF_BLOCK = {ours: theirs for theirs, ours in BLOCK_TENSORS.items()}


def gguf_tensor_name(ours: str) -> str:
    """The inverse of `our_tensor_name`: our state-dict name -> llama.cpp's (the export, tests' GGUF writers)."""
    stem, _, suffix = ours.rpartition(".")
    if stem in _TO_GGUF_TOP:
        return f"{_TO_GGUF_TOP[stem]}.{suffix}"
    _, layer, rest = stem.split(".", 2)
    return f"blk.{layer}.{_TO_GGUF_BLOCK[rest]}.{suffix}"


def tensor_parts(gguf_name: str, config: Config, spec: GGUFArchitecture) -> list:
    """(our name, rows) of each tensor a GGUF tensor holds: one, or the parts of a fused one (rows None: all)."""
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(\w+)", gguf_name)
    if match is None or match.group(2) not in spec.fused:
        name = our_tensor_name(gguf_name)
        return [] if name is None else [(name, None)]
    layer, stem, suffix = match.groups()
    hs = config.head_size
    rows = ((config.n_head * hs, config.n_query_groups * hs, config.n_query_groups * hs) if stem == "attn_qkv"
            else (config.intermediate_size,) * 2)
    return [(f"blocks.{layer}.{part}.{suffix}", n) for part, n in zip(FUSED_BLOCK_TENSORS[stem], rows)]


def rotary_heads(name: str, config: Config) -> Optional[int]:
    """llama.cpp permutes Q by the query heads and K by the key/value heads (its `n_head_kv`); others not at all."""
    if ".attn.q." in name:
        return config.n_head
    if ".attn.k." in name:
        return config.n_query_groups
    return None


def weight_layout(gguf_file: GGUFFile, config: Config, dtype: torch.dtype) -> dict:
    """Our name -> (shape, dtype) of every GGUF tensor, from the tensor infos (and one row of each, to check that
    its type can be dequantized), checked against the model: a wrong file fails before anything is written."""
    spec = GGUF_ARCHITECTURES[gguf_file.get("general.architecture")]
    found = {}
    for tensor in gguf_file.tensors.values():
        if tensor.name in ROPE_FACTOR_TENSORS:
            continue
        parts = tensor_parts(tensor.name, config, spec)
        if not parts:
            raise UserError(f"{gguf_file.path}: tensor {tensor.name!r} has no counterpart in a {config.architecture} "
                            "model; this GGUF variant is not supported yet")
        # one row: is the type one we can read at all?
        _dequantize(tensor.data.reshape(-1, tensor.data.shape[-1])[:1], tensor, gguf_file.path)
        shape = tensor_shape(tensor)
        if len(parts) > 1 and sum(rows for _, rows in parts) != shape[0]:
            raise UserError(f"{gguf_file.path}: fused tensor {tensor.name!r} has {shape[0]} rows, the metadata's "
                            f"sizes add up to {sum(rows for _, rows in parts)}; the file is inconsistent")
        for name, rows in parts:
            found[name] = (shape if rows is None else torch.Size((rows, *shape[1:])), dtype)
    return check_layout(found, config, gguf_file.path, "the GGUF file")


def gguf_weights(gguf_file: GGUFFile, config: Config) -> Iterator[tuple]:
    """(our name, float32 tensor) for each GGUF tensor, one at a time: dequantized, Q/K rows un-permuted, norm
    weights shifted back (whatever the architecture's converter did undone), fused tensors split."""
    spec = GGUF_ARCHITECTURES[gguf_file.get("general.architecture")]
    for tensor in gguf_file.tensors.values():
        if tensor.name in ROPE_FACTOR_TENSORS:
            continue
        weight = dequantize_tensor(tensor, gguf_file.path)
        if spec.norm_offset and tensor.name.endswith("norm.weight"):  # the converter's own test for a norm
            weight -= spec.norm_offset
        parts = tensor_parts(tensor.name, config, spec)
        pieces = [weight] if len(parts) == 1 else weight.split([rows for _, rows in parts])
        for (name, _), piece in zip(parts, pieces):
            n_heads = rotary_heads(name, config) if spec.rotary_permuted else None
            yield name, piece if n_heads is None else unpermute_rotary_rows(piece, n_heads)


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

