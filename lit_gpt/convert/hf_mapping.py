"""How our weights and config map onto Hugging Face's, per family: tensor names (with the tensors HF fuses), the
switches each HF class fixes, and the config.json that builds the same model (`hf_config_dict`). The file handling
(reading shards, writing lit_model.pth or an HF folder) is `lit_gpt.convert.hf`.
"""

import re
from pathlib import Path
from typing import Optional

import torch

from lit_gpt.config import LLAMA_LIKE, Config
from lit_gpt.utils import UserError

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
# the switches each HF family fixes (the others are free: sizes, eps, rope, parallel residual for GPT-NeoX, ...)
_GEMMA_OFF = dict(norm_unit_offset=False, post_block_norms=False, scale_embeddings=False, attention_scores_scalar=None,
                  attention_logit_softcapping=None, final_logit_softcapping=None, rope_local_base=None)
_LLAMA_SWITCHES = dict(norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", parallel_residual=False,
                       shared_attention_norm=False, bias=False, attn_bias=False, lm_head_bias=False,
                       rotary_percentage=1.0, norm_qk=False, sliding_window_pattern=1, **_GEMMA_OFF)
_GELU_SWITCHES = dict(_GEMMA_OFF, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP", sliding_window=None,
                      rope_scaling=None, norm_qk=False)
_GEMMA_FREE = ("attention_scores_scalar", "attention_logit_softcapping", "final_logit_softcapping", "rope_local_base",
               "sliding_window_pattern")  # Gemma's config.json sets these
_GEMMA_SWITCHES = {**{k: v for k, v in _LLAMA_SWITCHES.items() if k not in _GEMMA_FREE}, "mlp_class_name": "GemmaMLP",
                   "norm_unit_offset": True, "post_block_norms": True, "scale_embeddings": True}
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


# ---- ours -> HF config.json --------------------------------------------------------------------------------------
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
