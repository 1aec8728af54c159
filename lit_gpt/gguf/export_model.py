"""Export a checkpoint dir (base, merged LoRA or full fine-tune) as a GGUF file that llama.cpp, Ollama and LM Studio run.

The mirror of `lit_gpt.gguf.import_model`, built on its tables: the same tensor names (TOP_LEVEL_TENSORS, BLOCK_TENSORS,
Phi-3's FUSED_BLOCK_TENSORS) and the same per-architecture differences (GGUF_ARCHITECTURES: the rotary row
permutation of `llama` Q/K weights, the +1 on Gemma's norms), applied in the other direction. The metadata holds only
keys llama.cpp reads; what it does not say, llama.cpp (and our import, which mirrors it) takes a fixed value for.
So before anything is written, the planned metadata is read back by our own import (`config_from_gguf`,
`write_tokenizer_files`): a model the file cannot describe (Llama 3.1's rope scaling, a Gemma 3 with another window
pattern, a tokenizer whose pre-tokenizer llama.cpp would not reproduce) is refused with one line instead of becoming
a file that runs wrong. The tokenizer part is `lit_gpt.gguf.tokenizer_to_gguf`; the `gguf` package writes the file and quantizes.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from lit_gpt.checkpoint import check_checkpoint_dir
from lit_gpt.config import Config
from lit_gpt.file_names import LIT_CONFIG_FILE, LIT_WEIGHTS_FILE
from lit_gpt.gguf.import_model import (FUSED_BLOCK_TENSORS, GGUF_ARCHITECTURES, config_from_gguf, gguf_tensor_name,
                                 permute_rotary_rows, rotary_heads)
from lit_gpt.gguf.reader import MISSING, GGUFTensor
from lit_gpt.gguf.tokenizer_to_gguf import TokenizerPlan, plan_tokenizer
from lit_gpt.utils import UserError, atomic_path, load_state_dict

# --type -> (the tensors' GGML type, the file type llama.cpp reports). The types gguf.quants can quantize in Python;
# K-quants need llama.cpp's own `llama-quantize` (run it on the F16 file).
EXPORT_TYPES = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "bf16": ("BF16", "MOSTLY_BF16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q5_1": ("Q5_1", "MOSTLY_Q5_1"),
    "q5_0": ("Q5_0", "MOSTLY_Q5_0"),
    "q4_1": ("Q4_1", "MOSTLY_Q4_1"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}
# a matrix whose rows do not fill whole blocks of the requested quantization is stored in this type (as llama.cpp's
# converter does)
FALLBACK_TYPE = "F16"

# HF architecture -> GGUF architecture; Mistral's layout is Llama's, and llama.cpp runs it as `llama`
EXPORT_ARCHITECTURES = {spec.hf_architecture: arch for arch, spec in GGUF_ARCHITECTURES.items()}
EXPORT_ARCHITECTURES["MistralForCausalLM"] = "llama"

# Config fields our import cannot take from a GGUF file (they are not the model's maths)
_NOT_IN_THE_FILE = ("name", "hf_repo_id")



class PlannedTensor(NamedTuple):
    gguf_name: str
    parts: tuple  # our state-dict names whose rows it holds, in order (one, or the parts of a fused tensor)
    shape: tuple  # PyTorch's (rows, cols) order
    type_name: str  # GGML type


@dataclass
class ExportSummary:
    output_path: Path
    architecture: str
    type_name: str
    n_tensors: int
    n_bytes: int
    tokenizer: str  # "bpe (smollm)", "sentencepiece", "gemma"
    notes: tuple = ()  # what llama.cpp will do differently, for the user to know


class _PlannedFile:
    """What the file will hold, in the shape `GGUFFile` has (`.path`, `.get`, `.tensors`), so that our import reads
    the plan back before the file exists. Weight tensors carry no data: `config_from_gguf` looks at their names and
    shapes only (the rope factors, which it reads, are given as real F32 data)."""

    def __init__(self, path: Path, metadata: dict, tensors: dict) -> None:
        self.path, self.metadata, self.tensors = path, metadata, tensors

    def get(self, key, default=MISSING):
        if key not in self.metadata:
            if default is MISSING:
                raise UserError(f"the planned GGUF has no {key!r}")
            return default
        return self.metadata[key]


def export_architecture(config: Config, checkpoint_dir: Path) -> str:
    arch = EXPORT_ARCHITECTURES.get(config.architecture)
    if arch is None:
        raise UserError(f"{checkpoint_dir}: GGUF export of {config.architecture} models is not supported yet "
                        f"(supported: {', '.join(EXPORT_ARCHITECTURES)})")
    return arch


def model_metadata(config: Config, arch: str) -> dict:
    """The architecture keys llama.cpp reads for `arch` (the ones `config_from_gguf` reads back)."""
    m = {
        "general.architecture": arch,
        "general.name": config.name,
        f"{arch}.context_length": config.block_size,
        f"{arch}.embedding_length": config.n_embd,
        f"{arch}.block_count": config.n_layer,
        f"{arch}.feed_forward_length": config.intermediate_size,
        f"{arch}.attention.head_count": config.n_head,
        f"{arch}.attention.head_count_kv": config.n_query_groups,
        f"{arch}.attention.key_length": config.head_size,
        f"{arch}.attention.value_length": config.head_size,
        f"{arch}.attention.layer_norm_rms_epsilon": float(config.norm_eps),
        f"{arch}.rope.dimension_count": config.rope_n_elem,
        f"{arch}.rope.freq_base": float(config.rope_base),
    }
    scaling = config.rope_scaling or {}
    if scaling.get("rope_type") == "linear":
        m[f"{arch}.rope.scaling.type"] = "linear"
        m[f"{arch}.rope.scaling.factor"] = float(scaling["factor"])
    elif scaling.get("rope_type") == "longrope":  # the factors are tensors (see `rope_factor_tensors`)
        m[f"{arch}.rope.scaling.original_context_length"] = int(scaling["original_max_position_embeddings"])
        if scaling.get("attention_factor") is not None:
            m[f"{arch}.rope.scaling.attn_factor"] = float(scaling["attention_factor"])
    if config.sliding_window and arch in ("gemma3", "phi3"):  # llama.cpp's llama/qwen models have no window
        m[f"{arch}.attention.sliding_window"] = config.sliding_window
    return m


def rope_factor_tensors(config: Config) -> dict:
    """Phi-3's longrope factors as the F32 tensors llama.cpp reads (name -> float32 array)."""
    scaling = config.rope_scaling or {}
    if scaling.get("rope_type") != "longrope":
        return {}
    return {f"rope_factors_{kind}.weight": np.asarray(scaling[f"{kind}_factor"], dtype=np.float32)
            for kind in ("long", "short")}


def _tensor_type(shape: tuple, requested: str) -> str:
    """1-D tensors (norms, biases) stay F32, as llama.cpp keeps them; matrices take the requested type."""
    import gguf

    if len(shape) == 1:
        return "F32"
    block_size, _ = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[requested]]
    return requested if shape[-1] % block_size == 0 else FALLBACK_TYPE


def plan_tensors(state_dict: dict, config: Config, arch: str, type_name: str) -> list:
    """The GGUF tensors, in state-dict order; Phi-3's q/k/v and gate/up become one fused tensor each."""
    spec = GGUF_ARCHITECTURES[arch]
    fused_at = {}  # the first part's name -> (fused GGUF stem, every part's block-relative name)
    for stem in spec.fused:
        parts = FUSED_BLOCK_TENSORS[stem]
        fused_at[parts[0]] = (stem, parts)
    skip = {rest for _, parts in fused_at.values() for rest in parts[1:]}
    planned = []
    for name, tensor in state_dict.items():
        if name == "lm_head.weight" and config.tie_embeddings:
            continue  # llama.cpp uses token_embd for the head when there is no output tensor
        if name.startswith("blocks."):
            _, layer, rest = name.split(".", 2)
            part, suffix = rest.rsplit(".", 1)
            if part in skip:
                continue
            if part in fused_at:
                stem, parts = fused_at[part]
                names = tuple(f"blocks.{layer}.{p}.{suffix}" for p in parts)
                rows = sum(state_dict[n].shape[0] for n in names)
                shape = (rows, *tensor.shape[1:])
                planned.append(PlannedTensor(f"blk.{layer}.{stem}.{suffix}", names, shape,
                                             _tensor_type(shape, type_name)))
                continue
        planned.append(PlannedTensor(gguf_tensor_name(name), (name,), tuple(tensor.shape),
                                     _tensor_type(tuple(tensor.shape), type_name)))
    return planned


def gguf_array(planned: PlannedTensor, state_dict: dict, config: Config, arch: str) -> np.ndarray:
    """One tensor as llama.cpp's converter stores it: float32, Q/K rows permuted (`llama`), Gemma's norms + 1,
    fused parts concatenated; then converted or quantized to its type (bytes for BF16 and the quantized types)."""
    import gguf

    spec = GGUF_ARCHITECTURES[arch]
    pieces = []
    for name in planned.parts:
        weight = state_dict[name].to(torch.float32)
        n_heads = rotary_heads(name, config) if spec.rotary_permuted else None
        pieces.append(weight if n_heads is None else permute_rotary_rows(weight, n_heads))
    weight = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
    if spec.norm_offset and planned.gguf_name.endswith("norm.weight"):  # the import's own test for a norm
        weight = weight + spec.norm_offset
    array = np.ascontiguousarray(weight.numpy())
    if planned.type_name == "F32":
        return array
    if planned.type_name == "F16":
        return array.astype(np.float16)
    return gguf.quants.quantize(array, gguf.GGMLQuantizationType[planned.type_name])


def _check_readable(plan: _PlannedFile, config: Config, tokenizer: TokenizerPlan, checkpoint_dir: Path) -> tuple:
    """Our import of the planned file must give back this model: the same Config (every field it can carry) and a
    tokenizer that encodes the same ids. A difference is something GGUF (as llama.cpp reads it) cannot say. Returns
    the notes on the one difference tolerated."""
    notes = ()
    expected = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_THE_FILE}
    read = {k: v for k, v in config_from_gguf(plan, config.name).to_dict().items() if k not in _NOT_IN_THE_FILE}
    if expected.get("architecture") == "MistralForCausalLM":  # read back as the Llama layout it is
        expected["architecture"] = read["architecture"]
    if plan.get("general.architecture") == "llama" and config.sliding_window:
        # Mistral v0.1: llama.cpp's llama architecture has no window, and its own converter exports the model so
        expected["sliding_window"] = read["sliding_window"]
        notes = (f"llama.cpp attends to the whole context, not a {config.sliding_window}-token sliding window: the "
                 f"same results up to {config.sliding_window} tokens",)
    differences = [f"{k} {expected[k]!r} would be read as {read.get(k)!r}" for k in expected if expected[k] != read.get(k)]
    if differences:
        raise UserError(f"{checkpoint_dir}: a GGUF file cannot describe this model yet ({'; '.join(differences)})")
    tokenizer.check(plan, checkpoint_dir)
    return notes


def export_gguf(checkpoint_dir: "str | Path", output_path: "str | Path", type: str = "f16") -> ExportSummary:
    """checkpoint dir -> one GGUF file (metadata, tokenizer, tensors), written to a temporary name and renamed when
    complete. Tensors are converted one at a time from the memory-mapped lit_model.pth."""
    import gguf

    if type not in EXPORT_TYPES:
        raise UserError(f"--type {type!r} is not one of {', '.join(EXPORT_TYPES)}")
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    output_path = Path(output_path)
    config = Config.from_file(checkpoint_dir / LIT_CONFIG_FILE)
    arch = export_architecture(config, checkpoint_dir)
    type_name, file_type = EXPORT_TYPES[type]
    state_dict = load_state_dict(checkpoint_dir / LIT_WEIGHTS_FILE)
    missing = [k for k in ("wte.weight", "ln_f.weight") if k not in state_dict]
    if missing:
        raise UserError(f"{checkpoint_dir / LIT_WEIGHTS_FILE}: has no {missing[0]}; not a complete checkpoint")
    if not config.tie_embeddings and "lm_head.weight" not in state_dict:
        raise UserError(f"{checkpoint_dir / LIT_WEIGHTS_FILE}: has no lm_head.weight; not a complete checkpoint")

    tokenizer = plan_tokenizer(checkpoint_dir, arch, config.vocab_size)
    metadata = {**model_metadata(config, arch), **tokenizer.metadata}
    planned = plan_tensors(state_dict, config, arch, type_name)
    factors = rope_factor_tensors(config)
    shim_tensors = {t.gguf_name: GGUFTensor(t.gguf_name, tuple(reversed(t.shape)),
                                            gguf.GGMLQuantizationType[t.type_name], np.zeros(0, np.uint8))
                    for t in planned}
    for name, values in factors.items():
        shim_tensors[name] = GGUFTensor(name, values.shape, gguf.GGMLQuantizationType.F32,
                                        values.view(np.uint8))
    notes = _check_readable(_PlannedFile(output_path, metadata, shim_tensors), config, tokenizer, checkpoint_dir)

    writer = gguf.GGUFWriter(None, arch)
    for key, value in metadata.items():
        if key != "general.architecture":  # GGUFWriter writes it itself
            _add(writer, key, value)
    writer.add_file_type(int(gguf.LlamaFileType[file_type]))
    if type_name not in ("F32", "F16", "BF16"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    n_bytes = 0
    for t in planned:
        qtype = gguf.GGMLQuantizationType[t.type_name]
        nbytes = int(np.prod(gguf.quant_shape_to_byte_shape(t.shape, qtype)))
        writer.add_tensor_info(t.gguf_name, t.shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
        n_bytes += nbytes
    for name, values in factors.items():
        writer.add_tensor_info(name, values.shape, values.dtype, values.nbytes)
    with atomic_path(output_path, "--output_path") as tmp:
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in planned:
            writer.write_tensor_data(gguf_array(t, state_dict, config, arch))
        for values in factors.values():
            writer.write_tensor_data(values)
        writer.close()
    return ExportSummary(output_path, arch, type_name, len(planned) + len(factors), n_bytes, tokenizer.description,
                         notes)


def _add(writer, key: str, value) -> None:
    """One metadata entry in the value type llama.cpp expects: ids and sizes u32, floats f32, arrays by item type
    (token types i32, scores f32, tokens and merges strings)."""
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, (list, tuple)):
        writer.add_array(key, list(value))
    else:
        raise TypeError(f"metadata {key}: {type(value).__name__}")
