"""Model configurations: one dataclass, a registry of named models, and derivation from a Hugging Face config.json."""

import json
from copy import deepcopy
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

from lit_gpt.files import HF_CONFIG_FILE, LIT_CONFIG_FILE
from lit_gpt.utils import UserError, atomic_write_text


class ConfigError(UserError, ValueError):
    """A config value of the wrong type or out of range (a UserError: scripts print it as one line)."""


POSITIVE_FIELDS = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "n_query_groups", "head_size",
                   "intermediate_size", "sliding_window")
REQUIRED_IN_FILE = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd")  # no default can be right for these


def _type_problem(value: Any, annotation: Any) -> Optional[str]:
    """What is wrong with `value` for a field annotated `annotation` (None if it fits)."""
    if get_origin(annotation) is Union:
        options = [a for a in get_args(annotation) if a is not type(None)]
        if value is None and len(options) < len(get_args(annotation)):
            return None
        annotation = options[0]
    if get_origin(annotation) is Literal:
        return None if value in get_args(annotation) else f"must be one of {', '.join(map(repr, get_args(annotation)))}"
    if annotation is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be a whole number"
    if annotation is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "must be a number"
    if annotation is str:
        return None if isinstance(value, str) else "must be a string"
    return None


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
    mlp_class_name: Literal["LLaMAMLP", "GptNeoxMLP"] = "LLaMAMLP"
    intermediate_size: Optional[int] = None
    gelu_approximate: Literal["none", "tanh"] = "none"
    tie_embeddings: bool = False
    sliding_window: Optional[int] = None  # Mistral v0.1 attends to at most this many past tokens
    architecture: str = "LlamaForCausalLM"  # the Hugging Face class this layout corresponds to

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            problem = _type_problem(value, f.type)
            if problem is None and f.name in POSITIVE_FIELDS and value is not None and value < 1:
                problem = "must be at least 1"
            if problem is not None:
                raise ConfigError(f"{f.name} = {value!r}: {problem}")
        if not 0 < self.rotary_percentage <= 1 or self.norm_eps <= 0 or self.rope_base <= 0:
            raise ConfigError(f"rotary_percentage = {self.rotary_percentage!r} must be in (0, 1], norm_eps = "
                              f"{self.norm_eps!r} and rope_base = {self.rope_base!r} above 0")
        if self.n_query_groups is None:
            self.n_query_groups = self.n_head
        if self.head_size is None:
            self.head_size = self.n_embd // self.n_head
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.n_embd
        if self.n_head % self.n_query_groups:
            raise ConfigError(f"n_head={self.n_head} is not a multiple of n_query_groups={self.n_query_groups}")

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
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e}); re-run the conversion script") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a model config (a JSON object); convert the checkpoint again")
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
        # some configs (e.g. GGUF exports) name only the model_type
        arch = (hf.get("architectures") or [MODEL_TYPE_TO_ARCHITECTURE.get(hf.get("model_type"), "")])[0]
        if arch not in MODEL_TYPE_TO_ARCHITECTURE.values():
            supported = ", ".join(sorted(set(MODEL_TYPE_TO_ARCHITECTURE.values())))
            raise UserError(f"{name or 'config.json'}: architecture {arch or '(none)'!r} is not supported; "
                            f"supported: {supported}")
        n_head = hf.get("num_attention_heads") or hf.get("n_head")
        n_embd = hf["hidden_size"]
        rope_base, rope_partial = _hf_rope(hf, name)
        # Falcon is the one family whose transformers class ties the embeddings when config.json does not say
        tied = bool(hf.get("tie_word_embeddings", arch == "FalconForCausalLM"))
        common = dict(name=name, architecture=arch, tie_embeddings=tied, vocab_size=hf["vocab_size"],
                      n_layer=hf["num_hidden_layers"], n_head=n_head, n_embd=n_embd, rope_base=rope_base)
        if arch in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"):
            return cls(
                **common,
                block_size=hf.get("max_position_embeddings", 4096),
                n_query_groups=hf.get("num_key_value_heads") or n_head,
                head_size=hf.get("head_dim") or n_embd // n_head,
                norm_eps=hf.get("rms_norm_eps", 1e-6),
                intermediate_size=hf["intermediate_size"],
                attn_bias=arch == "Qwen2ForCausalLM" or bool(hf.get("attention_bias", False)),
                sliding_window=hf.get("sliding_window") if arch == "MistralForCausalLM" else None,
            )
        if arch == "GPTNeoXForCausalLM":
            return cls(
                **common,
                block_size=hf.get("max_position_embeddings", 2048),
                rotary_percentage=rope_partial or 1.0,
                parallel_residual=hf.get("use_parallel_residual", True),
                bias=True,
                norm_class_name="LayerNorm",
                norm_eps=hf.get("layer_norm_eps", 1e-5),
                mlp_class_name="GptNeoxMLP",
                intermediate_size=hf["intermediate_size"],
            )
        if arch == "PhiForCausalLM":
            return cls(
                **common,
                block_size=hf.get("max_position_embeddings", 2048),
                n_query_groups=hf.get("num_key_value_heads") or n_head,
                rotary_percentage=rope_partial or 0.5,
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
        if arch == "FalconForCausalLM":
            if hf.get("new_decoder_architecture") or hf.get("alibi") or not hf.get("parallel_attn", True):
                raise UserError(f"{name or 'config.json'}: only the Falcon-7B layout is supported (new_decoder_architecture, alibi are not)")
            return cls(
                **common,
                block_size=hf.get("max_position_embeddings", 2048),
                n_query_groups=1 if hf.get("multi_query", True) else n_head,
                parallel_residual=True,
                shared_attention_norm=True,
                bias=bool(hf.get("bias", False)),
                norm_class_name="LayerNorm",
                norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                mlp_class_name="GptNeoxMLP",
                intermediate_size=hf.get("ffn_hidden_size") or 4 * n_embd,
            )
        raise AssertionError(arch)  # every supported architecture returned above

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
            try:
                return cls.from_hf_config(json.loads(hf_config.read_text()), name=checkpoint_dir.name)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError) as e:
                raise UserError(f"{hf_config}: cannot read the model config ({e!r})") from None
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
                              "gpt_neox": "GPTNeoXForCausalLM", "phi": "PhiForCausalLM", "falcon": "FalconForCausalLM"}


def _hf_rope(hf: dict, name: str) -> "tuple[float, Optional[float]]":
    """(rope theta, partial rotary factor or None) from the transformers 4 top-level fields or transformers 5's
    `rope_parameters`. Scaled variants (llama3, yarn, linear, dynamic) would silently give wrong logits: refused."""
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = params.get("rope_type") or params.get("type") or "default"
    if rope_type != "default":
        raise UserError(f"{name or 'config.json'}: rope scaling {rope_type!r} is not supported (plain rotary only)")
    theta = hf.get("rope_theta") or hf.get("rotary_emb_base") or params.get("rope_theta") or 10000.0
    partial = hf.get("partial_rotary_factor") or hf.get("rotary_pct") or params.get("partial_rotary_factor")
    return float(theta), partial


# ---- registry ------------------------------------------------------------------------------------------------------
configs: list[dict] = []


def _llama(name, repo, **kw):
    configs.append(dict(name=name, hf_repo_id=repo, architecture="LlamaForCausalLM", **kw))


for chat in ("", "-chat"):
    _llama(f"Llama-2-7b{chat}-hf", f"meta-llama/Llama-2-7b{chat}-hf", block_size=4096, vocab_size=32000, n_layer=32,
           n_head=32, n_embd=4096, intermediate_size=11008)
    _llama(f"Llama-2-13b{chat}-hf", f"meta-llama/Llama-2-13b{chat}-hf", block_size=4096, vocab_size=32000, n_layer=40,
           n_head=40, n_embd=5120, intermediate_size=13824)
    _llama(f"Llama-2-70b{chat}-hf", f"meta-llama/Llama-2-70b{chat}-hf", block_size=4096, vocab_size=32000, n_layer=80,
           n_head=64, n_embd=8192, n_query_groups=8, intermediate_size=28672)

_mistral = dict(architecture="MistralForCausalLM", vocab_size=32000, n_layer=32, n_head=32, n_embd=4096,
                n_query_groups=8, intermediate_size=14336)
for name, repo in (("Mistral-7B-v0.1", "mistralai/Mistral-7B-v0.1"),
                   ("Mistral-7B-Instruct-v0.1", "mistralai/Mistral-7B-Instruct-v0.1")):
    configs.append(dict(name=name, hf_repo_id=repo, block_size=32768, sliding_window=4096, **_mistral))
for name, repo in (("Mistral-7B-v0.2", "mistral-community/Mistral-7B-v0.2"),
                   ("Mistral-7B-Instruct-v0.2", "mistralai/Mistral-7B-Instruct-v0.2")):
    configs.append(dict(name=name, hf_repo_id=repo, block_size=32768, rope_base=1000000.0, **_mistral))

# Pythia: (name, layers, heads, width, embedding rows)
for size, n_layer, n_head, n_embd, vocab in (
    ("14m", 6, 4, 128, 50304), ("31m", 6, 8, 256, 50304), ("70m", 6, 8, 512, 50304), ("160m", 12, 12, 768, 50304),
    ("410m", 24, 16, 1024, 50304), ("1b", 16, 8, 2048, 50304), ("1.4b", 24, 16, 2048, 50304),
    ("2.8b", 32, 32, 2560, 50304), ("6.9b", 32, 32, 4096, 50432), ("12b", 36, 40, 5120, 50688),
):
    configs.append(dict(
        name=f"pythia-{size}", hf_repo_id=f"EleutherAI/pythia-{size}", architecture="GPTNeoXForCausalLM",
        block_size=2048, vocab_size=vocab, n_layer=n_layer, n_head=n_head, n_embd=n_embd, rotary_percentage=0.25,
        parallel_residual=True, bias=True, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP",
        intermediate_size=4 * n_embd,
    ))

_phi = dict(architecture="PhiForCausalLM", block_size=2048, vocab_size=51200, parallel_residual=True,
            shared_attention_norm=True, bias=True, lm_head_bias=True, norm_class_name="LayerNorm",
            mlp_class_name="GptNeoxMLP", gelu_approximate="tanh")
configs.append(dict(name="phi-2", hf_repo_id="microsoft/phi-2", n_layer=32, n_head=32, n_embd=2560,
                    rotary_percentage=0.4, intermediate_size=10240, **_phi))
configs.append(dict(name="phi-1_5", hf_repo_id="microsoft/phi-1_5", n_layer=24, n_head=32, n_embd=2048,
                    rotary_percentage=0.5, intermediate_size=8192, **_phi))

for name, repo in (("tiny-llama-1.1b", "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"),
                   ("tiny-llama-1.1b-chat", "TinyLlama/TinyLlama-1.1B-Chat-v1.0")):
    _llama(name, repo, block_size=2048, vocab_size=32000, n_layer=22, n_head=32, n_embd=2048, n_query_groups=4,
           intermediate_size=5632)

for instruct in ("", "-Instruct"):
    _llama(f"SmolLM2-135M{instruct}", f"HuggingFaceTB/SmolLM2-135M{instruct}", block_size=8192, vocab_size=49152,
           n_layer=30, n_head=9, n_embd=576, n_query_groups=3, intermediate_size=1536, rope_base=100000.0,
           tie_embeddings=True)
    _llama(f"SmolLM2-360M{instruct}", f"HuggingFaceTB/SmolLM2-360M{instruct}", block_size=8192, vocab_size=49152,
           n_layer=32, n_head=15, n_embd=960, n_query_groups=5, intermediate_size=2560, rope_base=100000.0,
           tie_embeddings=True)
    _llama(f"SmolLM2-1.7B{instruct}", f"HuggingFaceTB/SmolLM2-1.7B{instruct}", block_size=8192, vocab_size=49152,
           n_layer=24, n_head=32, n_embd=2048, n_query_groups=32, intermediate_size=8192, rope_base=130000.0,
           tie_embeddings=True)

_qwen = dict(architecture="Qwen2ForCausalLM", block_size=32768, vocab_size=151936, rope_base=1000000.0,
             attn_bias=True, norm_eps=1e-6, tie_embeddings=True)
for instruct in ("", "-Instruct"):
    configs.append(dict(name=f"Qwen2.5-0.5B{instruct}", hf_repo_id=f"Qwen/Qwen2.5-0.5B{instruct}", n_layer=24,
                        n_head=14, n_embd=896, n_query_groups=2, intermediate_size=4864, **_qwen))
    configs.append(dict(name=f"Qwen2.5-1.5B{instruct}", hf_repo_id=f"Qwen/Qwen2.5-1.5B{instruct}", n_layer=28,
                        n_head=12, n_embd=1536, n_query_groups=2, intermediate_size=8960, **_qwen))

configs.append(dict(
    name="falcon-7b", hf_repo_id="tiiuae/falcon-7b", architecture="FalconForCausalLM", block_size=2048,
    vocab_size=65024, n_layer=32, n_head=71, n_embd=4544, n_query_groups=1, parallel_residual=True,
    shared_attention_norm=True, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP", intermediate_size=18176,
    tie_embeddings=True,  # FalconForCausalLM ties lm_head to the word embeddings
))

name_to_config = {c["name"]: c for c in configs}
repo_to_config = {c["hf_repo_id"]: c for c in configs}
