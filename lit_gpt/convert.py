"""Weight conversion between Hugging Face checkpoints and ours, both ways, for every supported family.

HF -> ours streams: it reads one tensor at a time from each shard and writes it straight to its place in
`lit_model.pth`, so peak memory stays near one shard whatever the model size. The file is a normal `torch.save`
archive: `torch.save` first writes its skeleton (layout plus empty space for each tensor, `skip_data`), then each
tensor's bytes are written at their offset.
"""

import json
import math
import re
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Iterator, Optional

import torch

from lit_gpt.checkpoint import check_checkpoint_dir
from lit_gpt.config import LLAMA_LIKE, Config
from lit_gpt.files import LIT_CONFIG_FILE, LIT_WEIGHTS_FILE, LORA_WEIGHTS_FILE, TOKENIZER_FILES
from lit_gpt.model import GPT
from lit_gpt.utils import UserError, atomic_path, atomic_write_text, check_writable_dir, load_state_dict

# HF module name -> ours; "{}" stands for the layer index, the .weight/.bias suffix carries over.
# "attn.qkv" marks one HF tensor that holds the queries, keys and values of a layer grouped per key/value head
# (GPT-NeoX, Falcon: see split_qkv); a tuple of our names marks one HF tensor that is those tensors stacked row-wise
# (Phi-3's qkv_proj and gate_up_proj). Both are split on the way in and fused on the way out.
LLAMA_NAMES = {
    "model.embed_tokens": "wte",
    "model.layers.{}.input_layernorm": "blocks.{}.norm_1",
    "model.layers.{}.self_attn.q_proj": "blocks.{}.attn.q",
    "model.layers.{}.self_attn.k_proj": "blocks.{}.attn.k",
    "model.layers.{}.self_attn.v_proj": "blocks.{}.attn.v",
    "model.layers.{}.self_attn.o_proj": "blocks.{}.attn.proj",
    "model.layers.{}.post_attention_layernorm": "blocks.{}.norm_2",
    "model.layers.{}.mlp.gate_proj": "blocks.{}.mlp.fc_1",
    "model.layers.{}.mlp.up_proj": "blocks.{}.mlp.fc_2",
    "model.layers.{}.mlp.down_proj": "blocks.{}.mlp.proj",
    "model.norm": "ln_f",
    "lm_head": "lm_head",
}
QWEN3_NAMES = {
    **LLAMA_NAMES,
    "model.layers.{}.self_attn.q_norm": "blocks.{}.attn.norm_q",
    "model.layers.{}.self_attn.k_norm": "blocks.{}.attn.norm_k",
}
GEMMA_NAMES = {  # four norms a block: before and after attention, before and after the MLP
    **QWEN3_NAMES,
    "model.layers.{}.post_attention_layernorm": "blocks.{}.post_attention_norm",
    "model.layers.{}.pre_feedforward_layernorm": "blocks.{}.norm_2",
    "model.layers.{}.post_feedforward_layernorm": "blocks.{}.post_mlp_norm",
}
PHI3_NAMES = {
    **{hf: ours for hf, ours in LLAMA_NAMES.items() if ".self_attn." not in hf and ".mlp." not in hf},
    "model.layers.{}.self_attn.qkv_proj": ("blocks.{}.attn.q", "blocks.{}.attn.k", "blocks.{}.attn.v"),
    "model.layers.{}.self_attn.o_proj": "blocks.{}.attn.proj",
    "model.layers.{}.mlp.gate_up_proj": ("blocks.{}.mlp.fc_1", "blocks.{}.mlp.fc_2"),
    "model.layers.{}.mlp.down_proj": "blocks.{}.mlp.proj",
}
GPT_NEOX_NAMES = {
    "gpt_neox.embed_in": "wte",
    "gpt_neox.layers.{}.input_layernorm": "blocks.{}.norm_1",
    "gpt_neox.layers.{}.attention.query_key_value": "blocks.{}.attn.qkv",
    "gpt_neox.layers.{}.attention.dense": "blocks.{}.attn.proj",
    "gpt_neox.layers.{}.post_attention_layernorm": "blocks.{}.norm_2",
    "gpt_neox.layers.{}.mlp.dense_h_to_4h": "blocks.{}.mlp.fc",
    "gpt_neox.layers.{}.mlp.dense_4h_to_h": "blocks.{}.mlp.proj",
    "gpt_neox.final_layer_norm": "ln_f",
    "embed_out": "lm_head",
    "lm_head": "lm_head",  # transformers 5's in-memory name, found in state dicts saved with torch.save
}
PHI_NAMES = {
    "model.embed_tokens": "wte",
    "model.layers.{}.input_layernorm": "blocks.{}.norm_1",
    "model.layers.{}.self_attn.q_proj": "blocks.{}.attn.q",
    "model.layers.{}.self_attn.k_proj": "blocks.{}.attn.k",
    "model.layers.{}.self_attn.v_proj": "blocks.{}.attn.v",
    "model.layers.{}.self_attn.dense": "blocks.{}.attn.proj",
    "model.layers.{}.mlp.fc1": "blocks.{}.mlp.fc",
    "model.layers.{}.mlp.fc2": "blocks.{}.mlp.proj",
    "model.final_layernorm": "ln_f",
    "lm_head": "lm_head",
}
FALCON_NAMES = {
    "transformer.word_embeddings": "wte",
    "transformer.h.{}.input_layernorm": "blocks.{}.norm_1",
    "transformer.h.{}.self_attention.query_key_value": "blocks.{}.attn.qkv",
    "transformer.h.{}.self_attention.dense": "blocks.{}.attn.proj",
    "transformer.h.{}.mlp.dense_h_to_4h": "blocks.{}.mlp.fc",
    "transformer.h.{}.mlp.dense_4h_to_h": "blocks.{}.mlp.proj",
    "transformer.ln_f": "ln_f",
    "lm_head": "lm_head",
}
# architecture -> (model_type, names)
HF_FAMILIES = {
    "LlamaForCausalLM": ("llama", LLAMA_NAMES),
    "MistralForCausalLM": ("mistral", LLAMA_NAMES),
    "Qwen2ForCausalLM": ("qwen2", LLAMA_NAMES),
    "Qwen3ForCausalLM": ("qwen3", QWEN3_NAMES),
    "Gemma2ForCausalLM": ("gemma2", GEMMA_NAMES),
    "Gemma3ForCausalLM": ("gemma3_text", GEMMA_NAMES),
    "Phi3ForCausalLM": ("phi3", PHI3_NAMES),
    "GPTNeoXForCausalLM": ("gpt_neox", GPT_NEOX_NAMES),
    "PhiForCausalLM": ("phi", PHI_NAMES),
    "FalconForCausalLM": ("falcon", FALCON_NAMES),
}
# non-weight buffers that older checkpoints saved (causal masks, rotary frequencies): nothing to convert; the
# vision half of a Gemma 3 (text + vision) checkpoint
IGNORED_HF_NAMES = re.compile(r"(rotary_emb\.inv_freq|\.attention\.masked_bias|\.attention\.bias)$"
                              r"|^(model\.)?(vision_tower|multi_modal_projector)\.")
# the text model's prefix in those checkpoints (as published; as transformers 5 saves them) -> a text model's
TEXT_MODEL_PREFIXES = (("language_model.model.", "model."), ("model.language_model.", "model."),
                       ("language_model.lm_head.", "lm_head."))
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}
# the switches each HF family fixes (the others are free: sizes, eps, rope, parallel residual for GPT-NeoX, ...)
_GEMMA_OFF = dict(norm_unit_offset=False, post_block_norms=False, scale_embeddings=False, attention_scores_scalar=None,
                  attention_logit_softcapping=None, final_logit_softcapping=None, rope_local_base=None)
_LLAMA_SWITCHES = dict(norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", parallel_residual=False,
                       shared_attention_norm=False, bias=False, attn_bias=False, lm_head_bias=False,
                       rotary_percentage=1.0, norm_qk=False, sliding_window_pattern=1, **_GEMMA_OFF)
_GELU_SWITCHES = dict(_GEMMA_OFF, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP", sliding_window=None,
                      rope_scaling=None, norm_qk=False)
_GEMMA_SWITCHES = dict(_LLAMA_SWITCHES, mlp_class_name="GemmaMLP", norm_unit_offset=True, post_block_norms=True,
                       scale_embeddings=True)
for _free in ("attention_scores_scalar", "attention_logit_softcapping", "final_logit_softcapping", "rope_local_base",
              "sliding_window_pattern"):
    _GEMMA_SWITCHES.pop(_free)
FAMILY_SWITCHES = {
    "llama": dict(_LLAMA_SWITCHES, sliding_window=None),
    "mistral": _LLAMA_SWITCHES,
    "qwen2": dict(_LLAMA_SWITCHES, attn_bias=True, sliding_window=None),
    "qwen3": dict(_LLAMA_SWITCHES, norm_qk=True, sliding_window=None),
    "gemma2": dict(_GEMMA_SWITCHES, norm_qk=False, rope_local_base=None),
    "gemma3_text": dict(_GEMMA_SWITCHES, norm_qk=True, attention_logit_softcapping=None),
    "phi3": {k: v for k, v in _LLAMA_SWITCHES.items() if k != "rotary_percentage"},
    "gpt_neox": dict(_GELU_SWITCHES, shared_attention_norm=False, bias=True, lm_head_bias=False),
    "phi": dict(_GELU_SWITCHES, parallel_residual=True, shared_attention_norm=True, bias=True, lm_head_bias=True),
    "falcon": dict(_GELU_SWITCHES, parallel_residual=True, shared_attention_norm=True, lm_head_bias=False,
                   rotary_percentage=1.0),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---- names and tensors ---------------------------------------------------------------------------------------------
def family_names(config: Config) -> dict:
    if config.architecture not in HF_FAMILIES:
        raise UserError(f"{config.name or 'config'}: architecture {config.architecture!r} has no weight mapping; "
                        f"supported: {', '.join(HF_FAMILIES)}")
    return HF_FAMILIES[config.architecture][1]


def _layer_template(module: str) -> "tuple[str, Optional[str]]":
    """'model.layers.12.mlp.up_proj' -> ('model.layers.{}.mlp.up_proj', '12'); names without a layer pass as is."""
    match = re.search(r"\.(\d+)\.", module)
    if match is None:
        return module, None
    return f"{module[:match.start()]}.{{}}.{module[match.end():]}", match.group(1)


def split_qkv(fused: torch.Tensor, config: Config) -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """Fused rows are grouped per key/value head: [q of the group's heads..., k, v] for each group. That one rule
    covers GPT-NeoX (a group per head: q, k, v interleaved per head) and Falcon-7B (one group: all q, then k, v)."""
    hs, groups = config.head_size, config.n_query_groups
    per_group = config.n_head // groups
    rest = fused.shape[1:]
    fused = fused.reshape(groups, per_group + 2, hs, *rest)
    q = fused[:, :per_group].reshape(config.n_head * hs, *rest)
    k = fused[:, per_group].reshape(groups * hs, *rest)
    v = fused[:, per_group + 1].reshape(groups * hs, *rest)
    return q, k, v


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: Config) -> torch.Tensor:
    """The inverse of `split_qkv`."""
    hs, groups = config.head_size, config.n_query_groups
    rest = q.shape[1:]
    q = q.reshape(groups, config.n_head // groups, hs, *rest)
    k = k.reshape(groups, 1, hs, *rest)
    v = v.reshape(groups, 1, hs, *rest)
    return torch.cat((q, k, v), dim=1).reshape(-1, *rest)


def _stacked_rows(ours: tuple, config: Config) -> "list[int]":
    """Rows of each of our tensors that one stacked HF tensor holds (Phi-3's qkv_proj, gate_up_proj)."""
    rows = {"attn.q": config.n_head * config.head_size, "attn.k": config.n_query_groups * config.head_size,
            "attn.v": config.n_query_groups * config.head_size, "mlp.fc_1": config.intermediate_size,
            "mlp.fc_2": config.intermediate_size}
    return [rows[name.split(".", 2)[2]] for name in ours]


def hf_to_lit(name: str, tensor: torch.Tensor, config: Config,
              source: "str | Path" = "") -> "list[tuple[str, torch.Tensor]]":
    """One HF tensor -> our (name, tensor) pairs: none for ignored buffers and tied heads, several for a fused one."""
    for prefix, text_prefix in TEXT_MODEL_PREFIXES:
        if name.startswith(prefix):
            name = text_prefix + name[len(prefix):]
    if IGNORED_HF_NAMES.search(name) or (name == "lm_head.weight" and config.tie_embeddings):
        return []
    module, _, param = name.rpartition(".")
    template, layer = _layer_template(module)
    names = family_names(config)
    if template not in names or param not in ("weight", "bias"):
        raise UserError(f"{source}: unexpected weight {name!r} for {config.architecture}; "
                        "the checkpoint and its config.json disagree, or pass the right --model_name")
    ours = names[template]
    if isinstance(ours, tuple):  # stacked row-wise
        parts = [n.format(layer) for n in ours]
        rows = _stacked_rows(parts, config)
        if tensor.shape[0] != sum(rows):
            raise UserError(f"{source}: {name} has {tensor.shape[0]} rows, the config expects {sum(rows)}; "
                            "the checkpoint and its config disagree")
        return [(f"{part}.{param}", t) for part, t in zip(parts, torch.split(tensor, rows))]
    ours = ours.format(layer)
    if not ours.endswith(".qkv"):
        return [(f"{ours}.{param}", tensor)]
    expected_rows = (config.n_head + 2 * config.n_query_groups) * config.head_size
    if tensor.shape[0] != expected_rows:
        raise UserError(f"{source}: {name} has {tensor.shape[0]} rows, the config expects {expected_rows}; "
                        "the checkpoint and its config disagree")
    base = ours[: -len("qkv")]
    return [(f"{base}{part}.{param}", t) for part, t in zip("qkv", split_qkv(tensor, config))]


def lit_to_hf(state_dict: dict, config: Config, source: "str | Path" = "") -> dict:
    """Our state dict -> HF names (views of the same tensors except fused ones). Tied heads are left out, as
    `save_pretrained` does."""
    names = family_names(config)
    hf_names, stacked = {}, {}
    for theirs, ours in names.items():  # the first HF name is the one checkpoints on the Hub use
        if isinstance(ours, tuple):
            for i, part in enumerate(ours):  # the first part carries the stack, the others go into it
                stacked[part] = (theirs, ours) if i == 0 else None
        else:
            hf_names.setdefault(ours, theirs)
    fused = any(ours.endswith(".qkv") for ours in names.values() if isinstance(ours, str))
    out = {}
    for name, tensor in state_dict.items():
        if name == "lm_head.weight" and config.tie_embeddings:
            continue
        module, _, param = name.rpartition(".")
        template, layer = _layer_template(module)
        if template in stacked:
            if stacked[template] is not None:
                theirs, ours = stacked[template]
                out[f"{theirs.format(layer)}.{param}"] = torch.cat(
                    [state_dict[f"{part.format(layer)}.{param}"] for part in ours])
            continue
        if fused and template.endswith((".attn.k", ".attn.v")):
            continue  # went into the fused tensor with the queries
        if fused and template.endswith(".attn.q"):
            prefix = module[: -len("q")]
            tensor = fuse_qkv(*(state_dict[f"{prefix}{part}.{param}"] for part in "qkv"), config)
            template = f"{template[: -len('q')]}qkv"
        if template not in hf_names or param not in ("weight", "bias"):  # e.g. unmerged LoRA matrices
            raise UserError(f"{source}: weight {name!r} has no counterpart in {config.architecture}")
        out[f"{hf_names[template].format(layer)}.{param}"] = tensor
    return out


def hf_state_dict_to_lit(hf_state_dict: dict, config: Config) -> dict:
    """In-memory HF -> ours, for models already loaded (tests, small models)."""
    return {name: t for hf_name, tensor in hf_state_dict.items() for name, t in hf_to_lit(hf_name, tensor, config)}


# ---- reading HF checkpoints ---------------------------------------------------------------------------------------
def hf_weight_files(checkpoint_dir: Path) -> "list[Path]":
    """The weight files of an HF checkpoint: safetensors first, else .bin; sharded ones through their index."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = checkpoint_dir / index_name
        if not index.is_file():
            continue
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise UserError(f"{index}: not a valid shard index ({type(e).__name__}); download it again") from None
        files = sorted({checkpoint_dir / file for file in weight_map.values()})
        for file in files:
            if not file.is_file():
                raise UserError(f"{file}: shard listed in {index.name} is missing; download the checkpoint again")
        return files
    for pattern in ("model*.safetensors", "pytorch_model*.bin"):
        files = sorted(checkpoint_dir.glob(pattern))
        if files:
            return files
    raise UserError(f"{checkpoint_dir}: no weights found (model.safetensors or pytorch_model.bin, possibly sharded); "
                    "download the checkpoint with scripts/download.py")


def read_hf_shard(path: Path, meta: bool = False) -> Iterator["tuple[str, torch.Tensor]"]:
    """Yields (name, tensor) one at a time. meta=True yields shape/dtype-only tensors read from the header."""
    if path.suffix == ".bin":  # memory-mapped: a tensor's pages are read when it is converted
        yield from load_state_dict(path).items()
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as shard:
            for name in shard.keys():
                if meta:
                    view = shard.get_slice(name)
                    if view.get_dtype() not in SAFETENSORS_DTYPES:
                        raise UserError(f"{path}: {name} has dtype {view.get_dtype()}, which is not supported "
                                        "(quantized checkpoints are not); use the unquantized checkpoint")
                    yield name, torch.empty(view.get_shape(), dtype=SAFETENSORS_DTYPES[view.get_dtype()], device="meta")
                else:
                    yield name, shard.get_tensor(name)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e}); download it again") from None
    except Exception as e:  # safetensors' own error type is not exported under a stable name
        if type(e).__name__ != "SafetensorError":
            raise
        raise UserError(f"{path}: not a valid safetensors file ({e}); the file is truncated or corrupt, "
                        "download it again") from None


# ---- writing lit_model.pth incrementally --------------------------------------------------------------------------
class StateDictWriter:
    """Fills a `torch.save` archive of a state dict one tensor at a time, so the model is never whole in memory.

    Use it as a context manager. `layout` (name -> (shape, dtype)) is saved first with
    `torch.serialization.skip_data`: the archive then holds the pickled layout and an empty (sparse) record per
    tensor. torch.save numbers storages in the order it pickles them, so the i-th tensor of the layout is record
    data/i; `write` puts a tensor's bytes at that record's offset. FakeTensorMode gives the skeleton tensors shapes
    and dtypes without memory (its first use imports torch._dynamo: about two seconds, once)."""

    def __init__(self, path: Path, layout: "dict[str, tuple[torch.Size, torch.dtype]]") -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode():  # shapes and dtypes without memory
            skeleton = {name: torch.empty(shape, dtype=dtype) for name, (shape, dtype) in layout.items()}
        with torch.serialization.skip_data(materialize_fake_tensors=True):
            torch.save(skeleton, path)
        with zipfile.ZipFile(path) as archive:  # record names are "<archive folder>/data/<i>"
            records = {info.filename.split("/", 1)[1]: info for info in archive.infolist()}
        self.file = open(path, "r+b")
        self.slots: dict[str, tuple[int, int]] = {}
        for i, (name, (shape, dtype)) in enumerate(layout.items()):
            record = records[f"data/{i}"]
            nbytes = math.prod(shape) * dtype.itemsize
            if record.file_size != nbytes:
                raise RuntimeError(f"torch.save laid out {name} in an unexpected order "
                                   f"({record.file_size} != {nbytes} bytes)")
            self.file.seek(record.header_offset + 26)  # zip local header: name and extra-field lengths at byte 26
            name_len, extra_len = struct.unpack("<HH", self.file.read(4))
            self.slots[name] = (record.header_offset + 30 + name_len + extra_len, nbytes)
        self.missing = set(layout)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        offset, nbytes = self.slots[name]
        data = tensor.contiguous().reshape(-1).view(torch.uint8)  # little-endian bytes, as torch.save writes them
        assert data.numel() == nbytes, name
        self.file.seek(offset)
        self.file.write(data.numpy())
        self.missing.discard(name)

    def __enter__(self) -> "StateDictWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.file.close()
        if exc_type is None and self.missing:
            raise RuntimeError(f"tensors never written: {sorted(self.missing)[:3]}")


# ---- HF -> ours ---------------------------------------------------------------------------------------------------
def convert_hf_checkpoint(checkpoint_dir: "str | Path", model_name: Optional[str] = None,
                          dtype: Optional[str] = None) -> Path:
    """Writes lit_model.pth and lit_config.json into an HF checkpoint dir; tokenizer files stay where they are."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise UserError(f"{checkpoint_dir}: checkpoint directory not found; download it with "
                        "`python scripts/download.py --repo_id ORG/NAME` first")
    if dtype is not None and dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    files = hf_weight_files(checkpoint_dir)
    config = Config.from_checkpoint(checkpoint_dir, model_name)
    family_names(config)
    target_dtype = DTYPES.get(dtype)

    # pass 1: names, shapes and dtypes from the headers only, checked against the model before anything is written
    found: dict[str, tuple[torch.Size, torch.dtype]] = {}
    for path in files:
        for hf_name, tensor in read_hf_shard(path, meta=True):
            for name, t in hf_to_lit(hf_name, tensor, config, path):
                found[name] = (t.shape, target_dtype or t.dtype)
    layout = _check_layout(found, config, checkpoint_dir, "the checkpoint")

    # pass 2: tensor by tensor into their slots
    with atomic_path(checkpoint_dir / LIT_WEIGHTS_FILE) as tmp:
        try:
            with StateDictWriter(tmp, layout) as writer:
                for path in files:
                    for hf_name, tensor in read_hf_shard(path):
                        for name, t in hf_to_lit(hf_name, tensor, config, path):
                            writer.write(name, t.to(layout[name][1]))
        except OSError as e:
            raise UserError(f"{checkpoint_dir}: cannot write lit_model.pth ({e.strerror or e}); "
                            "check the free disk space") from None
    config.save(checkpoint_dir / LIT_CONFIG_FILE)
    return checkpoint_dir / LIT_WEIGHTS_FILE


def _check_layout(found: dict, config: Config, source: Path, what: str) -> dict:
    """The converted names/shapes must be exactly the model's; returns them in the model's order."""
    with torch.device("meta"):
        expected = GPT(config).state_dict()
    if config.tie_embeddings:
        expected.pop("lm_head.weight")
    missing = [name for name in expected if name not in found]
    if missing:
        raise UserError(f"{source}: {what} lacks {len(missing)} weights the config needs "
                        f"(e.g. {missing[:2]}); the files are incomplete or belong to another config "
                        "(check config.json, --model_name)")
    unexpected = [name for name in found if name not in expected]
    if unexpected:
        raise UserError(f"{source}: {what} has weights the config does not know (e.g. {unexpected[:2]}); "
                        "they belong to another config (check config.json, --model_name)")
    for name, tensor in expected.items():
        if found[name][0] != tensor.shape:
            raise UserError(f"{source}: {name} has shape {tuple(found[name][0])}, the config expects "
                            f"{tuple(tensor.shape)}; the checkpoint and its config disagree")
    return {name: found[name] for name in expected}


# ---- ours -> HF ---------------------------------------------------------------------------------------------------
def hf_config_dict(config: Config, dtype: Optional[torch.dtype] = None) -> dict:
    """A config.json that `transformers.AutoModelForCausalLM` builds into the same model. Rope settings go both in
    the transformers 4 fields and in transformers 5's `rope_parameters`."""
    family_names(config)  # an architecture we cannot write fails here
    arch = config.architecture
    model_type = HF_FAMILIES[arch][0]
    llama_like = arch in LLAMA_LIKE
    differing = [f"{field}={getattr(config, field)!r}" for field, value in FAMILY_SWITCHES[model_type].items()
                 if getattr(config, field) != value]
    if not llama_like and config.head_size * config.n_head != config.n_embd:
        differing.append(f"head_size={config.head_size}")
    if config.n_query_groups not in {"gpt_neox": (config.n_head,), "falcon": (1, config.n_head)}.get(
            model_type, (config.n_query_groups,)):
        differing.append(f"n_query_groups={config.n_query_groups}")
    if model_type == "falcon" and config.attn_bias and not config.bias:
        differing.append("attn_bias=True")
    if model_type not in ("gemma2", "gemma3_text", "mistral", "phi3") and config.sliding_window is not None:
        differing.append(f"sliding_window={config.sliding_window}")
    if differing:
        raise UserError(f"lit_config.json: {', '.join(differing)} cannot be expressed as a {arch} config.json")

    rope = {"rope_type": "default", "rope_theta": config.rope_base, **(config.rope_scaling or {})}
    hf = dict(architectures=[arch], model_type=model_type, vocab_size=config.vocab_size, hidden_size=config.n_embd,
              num_hidden_layers=config.n_layer, num_attention_heads=config.n_head,
              max_position_embeddings=config.block_size, tie_word_embeddings=config.tie_embeddings,
              rope_theta=config.rope_base, use_cache=True)
    if config.rope_scaling is not None:
        hf["rope_scaling"] = dict(config.rope_scaling)
    if dtype is not None:
        hf["torch_dtype"] = str(dtype).removeprefix("torch.")
    gelu = "gelu_new" if config.gelu_approximate == "tanh" else "gelu"
    if llama_like:
        hf.update(intermediate_size=config.intermediate_size, num_key_value_heads=config.n_query_groups,
                  head_dim=config.head_size, rms_norm_eps=config.norm_eps, hidden_act="silu")
        if model_type == "llama":
            hf.update(attention_bias=False, mlp_bias=False)
        elif model_type in ("mistral", "phi3"):
            hf.update(sliding_window=config.sliding_window)
            if model_type == "phi3":
                rope["partial_rotary_factor"] = config.rotary_percentage
                hf.update(partial_rotary_factor=config.rotary_percentage)
                if config.vocab_size <= 32000:  # Phi3Config's default pad id (Phi-3's tokenizer's) must fit
                    hf.update(pad_token_id=None)
                if config.rope_scaling is not None and config.rope_scaling["rope_type"] == "longrope":
                    hf["original_max_position_embeddings"] = config.rope_scaling["original_max_position_embeddings"]
        elif model_type in ("qwen2", "qwen3"):
            hf.update(use_sliding_window=False, sliding_window=None, attention_bias=model_type == "qwen2")
        else:  # gemma2, gemma3_text
            hf.update(_gemma_fields(config), hidden_activation="gelu_pytorch_tanh", hidden_act="gelu_pytorch_tanh")
            if config.rope_local_base is not None:  # per layer kind, as transformers 5 writes Gemma 3's
                hf["rope_local_base_freq"] = config.rope_local_base
                rope = {"full_attention": rope,
                        "sliding_attention": {"rope_type": "default", "rope_theta": config.rope_local_base}}
    elif model_type == "gpt_neox":
        rope["partial_rotary_factor"] = config.rotary_percentage
        hf.update(intermediate_size=config.intermediate_size, rotary_pct=config.rotary_percentage,
                  rotary_emb_base=config.rope_base, use_parallel_residual=config.parallel_residual,
                  layer_norm_eps=config.norm_eps, hidden_act=gelu, attention_bias=True)
    elif model_type == "phi":
        rope["partial_rotary_factor"] = config.rotary_percentage
        hf.update(intermediate_size=config.intermediate_size, num_key_value_heads=config.n_query_groups,
                  partial_rotary_factor=config.rotary_percentage, layer_norm_eps=config.norm_eps, hidden_act=gelu,
                  qk_layernorm=False)
    else:  # falcon, the Falcon-7B layout
        hf.update(ffn_hidden_size=config.intermediate_size, multi_query=config.n_query_groups == 1,
                  num_kv_heads=config.n_query_groups, new_decoder_architecture=False, parallel_attn=True,
                  alibi=False, bias=config.bias, layer_norm_epsilon=config.norm_eps, activation=gelu)
    hf["rope_parameters"] = rope
    return hf


def _gemma_fields(config: Config) -> dict:
    """Gemma 2/3's own config.json fields: score scale, soft-caps, and which layers are windowed."""
    windowed = [config.is_windowed(i) for i in range(config.n_layer)]
    return dict(query_pre_attn_scalar=config.attention_scores_scalar or config.head_size,
                attn_logit_softcapping=config.attention_logit_softcapping,
                final_logit_softcapping=config.final_logit_softcapping, sliding_window=config.sliding_window,
                layer_types=["sliding_attention" if w else "full_attention" for w in windowed],
                sliding_window_pattern=config.sliding_window_pattern, attention_bias=False)


def convert_lit_checkpoint(checkpoint_dir: "str | Path", output_dir: "str | Path") -> Path:
    """Writes an HF folder (config.json, model.safetensors, the tokenizer files) from one of our checkpoints."""
    from safetensors.torch import save_file

    if (Path(checkpoint_dir) / LORA_WEIGHTS_FILE).is_file() and not (Path(checkpoint_dir) / LIT_WEIGHTS_FILE).is_file():
        raise UserError(f"{checkpoint_dir}: holds LoRA weights only; merge them into the base first (python "
                        f"scripts/merge_lora.py --lora_path {checkpoint_dir} --out_dir MERGED), then convert MERGED")
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    output_dir = Path(output_dir)
    if output_dir.resolve() == checkpoint_dir.resolve():
        raise UserError(f"{output_dir}: --output_dir must differ from --checkpoint_dir "
                        "(its config.json would be replaced)")
    config = Config.from_file(checkpoint_dir / LIT_CONFIG_FILE)
    hf_config_dict(config)  # fail on a config transformers cannot express before reading any weights
    source = checkpoint_dir / LIT_WEIGHTS_FILE
    state_dict = load_state_dict(source)
    if not isinstance(state_dict, dict) or not all(isinstance(t, torch.Tensor) for t in state_dict.values()):
        raise UserError(f"{source}: not a model state dict; convert the checkpoint again")
    if config.tie_embeddings:  # model.state_dict() of a tied model lists the head too
        state_dict.pop("lm_head.weight", None)
    _check_layout({name: (t.shape, t.dtype) for name, t in state_dict.items()}, config, source, "the file")
    hf_state_dict = {name: t.contiguous() for name, t in lit_to_hf(state_dict, config, source).items()}
    check_writable_dir(output_dir)
    with atomic_path(output_dir / "model.safetensors") as tmp:
        save_file(hf_state_dict, str(tmp), metadata={"format": "pt"})
    hf_config = hf_config_dict(config, dtype=state_dict["wte.weight"].dtype)
    atomic_write_text(output_dir / "config.json", json.dumps(hf_config, indent=2))
    for file in TOKENIZER_FILES:
        if (checkpoint_dir / file).is_file():
            with atomic_path(output_dir / file) as tmp:
                shutil.copyfile(checkpoint_dir / file, tmp)
    return output_dir
