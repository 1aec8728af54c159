"""Model configurations: one dataclass, a registry of named models, and derivation from a Hugging Face config.json."""

import json
from copy import deepcopy
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, Optional

from lit_gpt.config_checks import (ABOVE_ZERO_FIELDS, MAX_PARAMETERS, REQUIRED_IN_FILE, ROPE_SCALING_KEYS, SIZE_LIMITS,
                                   ConfigError, check_hf_sizes, size_problem, type_problem)
from lit_gpt.file_names import HF_CONFIG_FILE, LIT_CONFIG_FILE
from lit_gpt.registry import name_to_config, repo_to_config
from lit_gpt.utils import UserError, atomic_write_text
from lit_gpt.json_files import read_json


@dataclass
class Config:
    name: str = ""
    hf_repo_id: str = ""  # "ORG/NAME" on the Hugging Face Hub
    block_size: int = 4096  # longest sequence the model was trained for
    vocab_size: int = 50304  # rows of the embedding matrix (may exceed the tokenizer's vocabulary)
    n_layer: int = 16
    n_head: int = 32
    n_embd: int = 4096
    n_query_groups: Optional[int] = None  # key/value heads: n_head = MHA, 1 = MQA, in between = GQA
    head_size: Optional[int] = None
    rotary_percentage: float = 1.0  # share of each head's dims that get rotary embeddings
    rope_base: float = 10000.0
    parallel_residual: bool = False  # x + attn(norm(x)) + mlp(norm(x)) instead of sequential
    shared_attention_norm: bool = False  # parallel residual with one norm feeding both branches
    bias: bool = False  # biases on every linear layer
    attn_bias: bool = False  # biases on the q/k/v projections only (Qwen2)
    lm_head_bias: bool = False
    norm_class_name: Literal["RMSNorm", "LayerNorm"] = "RMSNorm"
    norm_eps: float = 1e-5
    mlp_class_name: Literal["LLaMAMLP", "GemmaMLP", "GptNeoxMLP"] = "LLaMAMLP"  # SwiGLU, GeGLU (tanh), GELU
    intermediate_size: Optional[int] = None
    gelu_approximate: Literal["none", "tanh"] = "none"
    tie_embeddings: bool = False
    sliding_window: Optional[int] = None  # windowed layers attend to at most this many past tokens (Mistral v0.1)
    sliding_window_pattern: int = 1  # every k-th layer attends globally, the others windowed; 1: all windowed
    rope_scaling: Optional[dict] = None  # scaled rotary: {"rope_type": "llama3" | "linear" | "longrope", ...}
    rope_local_base: Optional[float] = None  # rope base of the windowed layers, where it differs (Gemma 3)
    norm_qk: bool = False  # RMSNorm over each head's queries and keys before RoPE (Qwen3, Gemma 3)
    norm_unit_offset: bool = False  # RMSNorm scales by (1 + weight): Gemma stores the weights as offsets from 1
    post_block_norms: bool = False  # also norm the attention and MLP outputs before adding them (Gemma 2/3)
    scale_embeddings: bool = False  # token embeddings times sqrt(n_embd) (Gemma)
    attention_scores_scalar: Optional[int] = None  # scores scaled by 1/sqrt(this), not 1/sqrt(head_size) (Gemma)
    attention_logit_softcapping: Optional[float] = None  # scores -> cap * tanh(scores / cap) (Gemma 2)
    final_logit_softcapping: Optional[float] = None  # the same on the output logits (Gemma 2)
    architecture: str = "LlamaForCausalLM"  # the Hugging Face class this layout corresponds to

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            problem = type_problem(value, f.type)
            if problem is None and f.name in SIZE_LIMITS and value is not None:
                problem = size_problem(f.name, value)
            if problem is not None:
                raise ConfigError(f"{f.name} = {value!r}: {problem}", f.name)
        if not 0 < self.rotary_percentage <= 1:
            raise ConfigError(f"rotary_percentage = {self.rotary_percentage!r}: must be in (0, 1]")
        for name in ABOVE_ZERO_FIELDS:
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name} = {getattr(self, name)!r}: must be above 0")
        if self.n_query_groups is None:
            self.n_query_groups = self.n_head
        if self.head_size is None:
            self.head_size = self.n_embd // self.n_head
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.n_embd
        if self.head_size < 1:
            raise ConfigError(f"n_embd = {self.n_embd} is smaller than n_head = {self.n_head}, no head_size fits",
                              "n_embd")
        if self.n_head % self.n_query_groups:
            raise ConfigError(f"n_head={self.n_head} is not a multiple of n_query_groups={self.n_query_groups}")
        if self.parameter_estimate() > MAX_PARAMETERS:
            raise ConfigError(f"the sizes (n_layer {self.n_layer}, n_embd {self.n_embd}, intermediate_size "
                              f"{self.intermediate_size}, vocab_size {self.vocab_size}) make "
                              f"{self.parameter_estimate():.3g} parameters, more than {MAX_PARAMETERS:.3g}")
        if self.rope_scaling is not None:
            self._check_rope_scaling()

    def _check_rope_scaling(self) -> None:
        kind = self.rope_scaling.get("rope_type")
        if kind not in ROPE_SCALING_KEYS:
            raise ConfigError(f"rope_scaling = {self.rope_scaling!r}: rope_type must be one of "
                              f"{', '.join(ROPE_SCALING_KEYS)}")
        missing = [key for key in ROPE_SCALING_KEYS[kind] if key not in self.rope_scaling]
        if missing:
            raise ConfigError(f"rope_scaling = {self.rope_scaling!r}: {kind} needs {', '.join(missing)}")
        if kind == "longrope" and not (len(self.rope_scaling["short_factor"]) == len(
                self.rope_scaling["long_factor"]) == self.rope_n_elem // 2):
            raise ConfigError(f"rope_scaling: longrope needs {self.rope_n_elem // 2} short and long factors "
                              "(one per rotary frequency)")

    def is_windowed(self, layer: int) -> bool:
        """Whether `layer` attends through the sliding window (Gemma: all but every sliding_window_pattern-th)."""
        if self.sliding_window is None:
            return False
        return self.sliding_window_pattern == 1 or (layer + 1) % self.sliding_window_pattern != 0

    def parameter_estimate(self) -> int:
        """About how many parameters the sizes make (the matmul weights and embeddings; norms and biases aside)."""
        attention = self.n_embd * self.head_size * (2 * self.n_head + 2 * self.n_query_groups)
        mlp = (3 if self.mlp_class_name != "GptNeoxMLP" else 2) * self.n_embd * self.intermediate_size
        embeddings = self.vocab_size * self.n_embd * (1 if self.tie_embeddings else 2)
        return self.n_layer * (attention + mlp) + embeddings

    @property
    def rope_n_elem(self) -> int:
        return int(self.rotary_percentage * self.head_size)

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "Config":
        """Look up a registered config by short name ("pythia-70m") or HF repo id ("EleutherAI/pythia-70m")."""
        entry = name_to_config.get(name) or repo_to_config.get(name) or name_to_config.get(name.split("/")[-1])
        if entry is None:
            raise UserError(f"unknown model name {name!r}; run `python scripts/download.py` to list supported models")
        return cls(**{**deepcopy(entry), **overrides})

    @classmethod
    def from_file(cls, path: "str | Path", **overrides: Any) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: config file not found")
        data = read_json(path, "model config", fix="convert the checkpoint again")
        missing = [k for k in REQUIRED_IN_FILE if k not in data and k not in overrides]
        if missing:
            raise UserError(f"{path}: {', '.join(missing)} missing; convert the checkpoint again")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in {**data, **overrides}.items() if k in known})
        except ConfigError as e:
            raise UserError(f"{path}: {e}; fix the value or convert the checkpoint again") from None

    @classmethod
    def from_hf_config(cls, hf: dict, name: str = "") -> "Config":
        """Derive a Config from a Hugging Face `config.json` dict (community fine-tunes have arbitrary names)."""
        source = name or "config.json"
        hf, arch = _hf_architecture(hf, source)
        n_head = hf.get("num_attention_heads") or hf.get("n_head")
        n_embd = hf["hidden_size"]
        rope = _hf_rope(hf, source)
        # Falcon is the one family whose transformers class ties the embeddings when config.json does not say;
        # Gemma's classes tie by default too
        tied = bool(hf.get("tie_word_embeddings", arch in ("FalconForCausalLM", "Gemma2ForCausalLM",
                                                           "Gemma3ForCausalLM")))
        common = dict(name=name, architecture=arch, tie_embeddings=tied, vocab_size=hf["vocab_size"],
                      n_layer=hf["num_hidden_layers"], n_head=n_head, n_embd=n_embd, rope_base=rope.base,
                      rope_scaling=rope.scaling)
        if arch in LLAMA_LIKE:
            return cls(**_hf_llama_like_fields(hf, arch, common, rope, source))
        if rope.scaling is not None:
            raise UserError(f"{source}: rope scaling {rope.scaling['rope_type']!r} is not supported for {arch}")
        return cls(**HF_FAMILY_FIELDS[arch](hf, common, rope, source))

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: "str | Path", model_name: Optional[str] = None) -> "Config":
        """The config of a checkpoint dir: lit_config.json, else the registry by name, else the HF config.json."""
        checkpoint_dir = Path(checkpoint_dir)
        if (checkpoint_dir / LIT_CONFIG_FILE).is_file() and model_name is None:
            return cls.from_file(checkpoint_dir / LIT_CONFIG_FILE)
        name = model_name or f"{checkpoint_dir.parent.name}/{checkpoint_dir.name}"
        if name in name_to_config or name in repo_to_config or (model_name and model_name.split("/")[-1] in name_to_config):
            return cls.from_name(name)
        if model_name is not None:
            raise UserError(f"--model_name {model_name!r} is not a known model; leave it out to use the checkpoint's "
                            "config.json, or see `python scripts/download.py` for the known names")
        if checkpoint_dir.name in name_to_config:
            return cls.from_name(checkpoint_dir.name)
        hf_config = checkpoint_dir / HF_CONFIG_FILE
        if hf_config.is_file():
            hf = read_json(hf_config, "model config", fix="download the checkpoint again")
            check_hf_sizes(hf, str(hf_config))  # before anything loops over num_hidden_layers
            try:
                return cls.from_hf_config(hf, name=checkpoint_dir.name)
            except KeyError as e:
                raise UserError(f"{hf_config}: cannot read the model config ({e!r} missing)") from None
            except ConfigError as e:  # a value of the wrong type, named as our field
                raise UserError(f"{hf_config}: {e} (as derived from this file); fix the value in the file") from None
            except (TypeError, ValueError, ZeroDivisionError) as e:
                raise UserError(f"{hf_config}: a value has the wrong type or is zero ({e}); fix the file") from None
        raise UserError(
            f"{checkpoint_dir}: no lit_config.json, no config.json and {name!r} is not a known model; "
            "pass --model_name or download the checkpoint with scripts/download.py"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: "str | Path") -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))


MODEL_TYPE_TO_ARCHITECTURE = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                              "qwen3": "Qwen3ForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM",
                              "phi3": "Phi3ForCausalLM", "gpt_neox": "GPTNeoXForCausalLM", "phi": "PhiForCausalLM",
                              "falcon": "FalconForCausalLM"}
# RMSNorm + gated MLP + rotary on the whole head, in the Llama module layout (with switches for the differences)
LLAMA_LIKE = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM",
              "Gemma2ForCausalLM", "Gemma3ForCausalLM")
# what Gemma3TextConfig assumes for a field the text_config of a Gemma3ForConditionalGeneration config.json leaves out
GEMMA3_TEXT_DEFAULTS = dict(vocab_size=262208, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                            max_position_embeddings=131072, rms_norm_eps=1e-6, query_pre_attn_scalar=256,
                            rope_theta=1000000.0, rope_local_base_freq=10000.0, sliding_window=4096,
                            sliding_window_pattern=6, hidden_activation="gelu_pytorch_tanh")


@dataclass
class HFRope:
    base: float
    partial: Optional[float] = None  # share of the head that rotates, when config.json says
    scaling: Optional[dict] = None  # Config.rope_scaling
    local_base: Optional[float] = None  # Gemma 3's windowed layers


def _hf_rope(hf: dict, source: str) -> HFRope:
    """Rotary settings from the transformers 4 fields (rope_theta, rope_scaling, ...) or transformers 5's
    `rope_parameters` (per layer type for Gemma 3). Variants we do not implement (yarn, dynamic NTK) would silently
    give wrong logits: refused."""
    params = hf.get("rope_parameters") or {}
    local = {}
    if "full_attention" in params or "sliding_attention" in params:  # transformers 5 Gemma 3: one dict per layer type
        params, local = params.get("full_attention") or {}, params.get("sliding_attention") or {}
    params = {**(hf.get("rope_scaling") or {}), **params}
    rope_type = params.get("rope_type") or params.get("type") or "default"
    rope_type = {"su": "longrope"}.get(rope_type, rope_type)  # Phi-3's first name for longrope
    theta = params.get("rope_theta") or hf.get("rope_theta") or hf.get("rotary_emb_base") or 10000.0
    partial = hf.get("partial_rotary_factor") or hf.get("rotary_pct") or params.get("partial_rotary_factor")
    local_base = local.get("rope_theta") or hf.get("rope_local_base_freq")
    if local.get("rope_type", "default") != "default":
        raise UserError(f"{source}: rope scaling {local['rope_type']!r} on the windowed layers is not supported")
    scaling = None
    if rope_type != "default":
        if rope_type not in ROPE_SCALING_KEYS:
            raise UserError(f"{source}: rope scaling {rope_type!r} is not supported (supported: plain, "
                            f"{', '.join(ROPE_SCALING_KEYS)})")
        if "original_max_position_embeddings" not in params and "original_max_position_embeddings" in hf:
            params["original_max_position_embeddings"] = hf["original_max_position_embeddings"]
        optional = ("factor", "attention_factor") if rope_type == "longrope" else ()
        scaling = {"rope_type": rope_type, **{k: params[k] for k in (*ROPE_SCALING_KEYS[rope_type], *optional)
                                              if params.get(k) is not None}}
    return HFRope(float(theta), partial, scaling, None if local_base is None else float(local_base))


def _hf_sliding_window(hf: dict, arch: str, source: str) -> dict:
    """sliding_window and sliding_window_pattern from config.json. transformers 5 lists each layer's kind in
    `layer_types`; transformers 4 had `sliding_window_pattern` (Gemma 3) or alternation (Gemma 2)."""
    window = hf.get("sliding_window")
    if arch in ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM") and not hf.get("use_sliding_window"):
        window = None  # Qwen's configs name a window they do not use
    if window is None:
        return dict(sliding_window=None)
    if arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        raise UserError(f"{source}: use_sliding_window (windows on some layers only) is not supported for {arch}")
    n_layer = hf["num_hidden_layers"]
    default_pattern = {"Gemma2ForCausalLM": 2, "Gemma3ForCausalLM": hf.get("sliding_window_pattern", 6)}.get(arch, 1)
    layer_types = hf.get("layer_types") or [
        "full_attention" if default_pattern > 1 and (i + 1) % default_pattern == 0 else "sliding_attention"
        for i in range(n_layer)]
    windowed = [kind == "sliding_attention" for kind in layer_types]
    if not any(windowed):
        return dict(sliding_window=None)
    for pattern in range(1, n_layer + 2):  # the period whose every k-th layer is global
        if windowed == [pattern == 1 or (i + 1) % pattern != 0 for i in range(n_layer)]:
            return dict(sliding_window=window, sliding_window_pattern=pattern)
    raise UserError(f"{source}: layer_types {layer_types} do not repeat one windowed/global pattern; not supported")


def _hf_architecture(hf: dict, source: str) -> tuple[dict, str]:
    """The transformers class config.json names (or its model_type implies), checked; a Gemma 3 text + vision config
    becomes its text model's config, with Gemma3TextConfig's defaults."""
    # some configs (e.g. GGUF exports) name only the model_type
    arch = (hf.get("architectures") or [MODEL_TYPE_TO_ARCHITECTURE.get(hf.get("model_type"), "")])[0]
    if arch == "Gemma3ForConditionalGeneration":  # text + vision: the text model is ours, with its defaults
        hf = {**GEMMA3_TEXT_DEFAULTS, **hf.get("text_config", {}), "architectures": ["Gemma3ForCausalLM"]}
        arch = "Gemma3ForCausalLM"
    if arch not in MODEL_TYPE_TO_ARCHITECTURE.values():
        supported = ", ".join(sorted({*MODEL_TYPE_TO_ARCHITECTURE.values(), "Gemma3ForConditionalGeneration"}))
        raise UserError(f"{source}: architecture {arch or '(none)'!r} is not supported; supported: {supported}")
    return hf, arch


def _hf_llama_like_fields(hf: dict, arch: str, common: dict, rope: HFRope, source: str) -> dict:
    """Config fields of the LLAMA_LIKE families; Gemma 2 and 3 add their switches."""
    n_head, n_embd = common["n_head"], common["n_embd"]
    llama_like = dict(
        **common,
        block_size=hf.get("max_position_embeddings", 4096),
        n_query_groups=hf.get("num_key_value_heads") or n_head,
        head_size=hf.get("head_dim") or n_embd // n_head,
        rotary_percentage=rope.partial or 1.0,
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        intermediate_size=hf["intermediate_size"],
        attn_bias=arch == "Qwen2ForCausalLM" or bool(hf.get("attention_bias", False)),
        norm_qk=arch in ("Qwen3ForCausalLM", "Gemma3ForCausalLM"),
        **_hf_sliding_window(hf, arch, source),
    )
    if arch not in ("Gemma2ForCausalLM", "Gemma3ForCausalLM"):
        return llama_like
    activation = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
    if activation not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise UserError(f"{source}: hidden_activation {activation!r} is not supported for {arch} "
                        "(gelu_pytorch_tanh only)")
    return dict(
        **llama_like,
        mlp_class_name="GemmaMLP",
        norm_unit_offset=True,
        post_block_norms=True,
        scale_embeddings=True,
        rope_local_base=rope.local_base,
        attention_scores_scalar=hf.get("query_pre_attn_scalar") or llama_like["head_size"],
        attention_logit_softcapping=hf.get("attn_logit_softcapping"),
        final_logit_softcapping=hf.get("final_logit_softcapping"),
    )


def _hf_gpt_neox_fields(hf: dict, common: dict, rope: HFRope, source: str) -> dict:
    return dict(
        **common,
        block_size=hf.get("max_position_embeddings", 2048),
        rotary_percentage=rope.partial or 1.0,
        parallel_residual=hf.get("use_parallel_residual", True),
        bias=True,
        norm_class_name="LayerNorm",
        norm_eps=hf.get("layer_norm_eps", 1e-5),
        mlp_class_name="GptNeoxMLP",
        intermediate_size=hf["intermediate_size"],
    )


def _hf_phi_fields(hf: dict, common: dict, rope: HFRope, source: str) -> dict:
    return dict(
        **common,
        block_size=hf.get("max_position_embeddings", 2048),
        n_query_groups=hf.get("num_key_value_heads") or common["n_head"],
        rotary_percentage=rope.partial or 0.5,
        parallel_residual=True,
        shared_attention_norm=True,
        bias=True,
        lm_head_bias=True,
        norm_class_name="LayerNorm",
        norm_eps=hf.get("layer_norm_eps", 1e-5),
        mlp_class_name="GptNeoxMLP",
        intermediate_size=hf["intermediate_size"],
        gelu_approximate="tanh",
    )


def _hf_falcon_fields(hf: dict, common: dict, rope: HFRope, source: str) -> dict:
    if hf.get("new_decoder_architecture") or hf.get("alibi") or not hf.get("parallel_attn", True):
        raise UserError(f"{source}: only the Falcon-7B layout is supported (new_decoder_architecture, alibi are not)")
    return dict(
        **common,
        block_size=hf.get("max_position_embeddings", 2048),
        n_query_groups=1 if hf.get("multi_query", True) else common["n_head"],
        parallel_residual=True,
        shared_attention_norm=True,
        bias=bool(hf.get("bias", False)),
        norm_class_name="LayerNorm",
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        mlp_class_name="GptNeoxMLP",
        intermediate_size=hf.get("ffn_hidden_size") or 4 * common["n_embd"],
    )


# the families outside LLAMA_LIKE: architecture -> their Config fields
HF_FAMILY_FIELDS = {"GPTNeoXForCausalLM": _hf_gpt_neox_fields, "PhiForCausalLM": _hf_phi_fields,
                    "FalconForCausalLM": _hf_falcon_fields}
