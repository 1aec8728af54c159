"""The checks a model config's values go through before anything is built from them: sizes within bounds (a crafted
file with 10^8 layers or a 10^9 rank would have the model allocate or a reader loop without end), the types of the
fields, and the sizes of a Hugging Face config.json. Config (lit_gpt/config.py) runs them on itself; readers of other
formats (GGUF) run them before they loop over layers."""

from typing import Any, Literal, Optional, Union, get_args, get_origin

from lit_gpt.utils import UserError


class ConfigError(UserError, ValueError):
    """A config value of the wrong type or out of range (a UserError: scripts print it as one line). `field`: the
    Config field it is about, so that a reader can name the file's own key."""

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


# The sizes: whole numbers from 1 to a bound far above any real model's (Llama 3.1 405B: 126 layers, 128 heads,
# n_embd 16,384; Gemma 3: a 262,208-token vocabulary; contexts of up to 10M tokens). A crafted file with more would
# have the model allocate (or a reader loop) without end before anything else noticed.
SIZE_LIMITS = {"block_size": 1 << 24, "vocab_size": 1 << 22, "n_layer": 1024, "n_head": 1024, "n_query_groups": 1024,
               "n_embd": 1 << 16, "head_size": 1 << 13, "intermediate_size": 1 << 20, "sliding_window": 1 << 24,
               "sliding_window_pattern": 1 << 10, "attention_scores_scalar": 1 << 16}
MAX_PARAMETERS = 1 << 41  # about 2.2 trillion: sizes each within bounds can still multiply to an impossible model
# the Hugging Face config.json keys of the sizes (checked before a config.json is turned into a Config)
HF_SIZE_KEYS = {"num_hidden_layers": "n_layer", "hidden_size": "n_embd", "num_attention_heads": "n_head",
                "n_head": "n_head", "num_key_value_heads": "n_query_groups", "head_dim": "head_size",
                "intermediate_size": "intermediate_size", "ffn_hidden_size": "intermediate_size",
                "vocab_size": "vocab_size", "max_position_embeddings": "block_size", "sliding_window": "sliding_window"}
ABOVE_ZERO_FIELDS = ("norm_eps", "rope_base", "rope_local_base", "attention_logit_softcapping",
                     "final_logit_softcapping")
# rope_scaling: the keys each scaled rotary variant needs (HF's names; longrope may also carry factor and
# attention_factor, which default as transformers computes them)
ROPE_SCALING_KEYS = {"linear": ("factor",),
                     "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
                     "longrope": ("short_factor", "long_factor", "original_max_position_embeddings")}
REQUIRED_IN_FILE = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd")  # no default can be right for these


def size_problem(field: str, value: Any) -> Optional[str]:
    """What is wrong with `value` for the size `field` (a key of SIZE_LIMITS), or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be a whole number"
    if not 1 <= value <= SIZE_LIMITS[field]:
        return f"must be from 1 to {SIZE_LIMITS[field]:,}"
    return None


def check_sizes(values: dict) -> None:
    """Refuses (ConfigError) a size in `values` (Config field -> value; None: not set) that is not a whole number
    within SIZE_LIMITS. Config checks its own; readers call it before they loop over n_layer or allocate."""
    for field, value in values.items():
        if field in SIZE_LIMITS and value is not None:
            problem = size_problem(field, value)
            if problem is not None:
                raise ConfigError(f"{field} = {value!r}: {problem}", field)


def check_hf_sizes(hf: dict, source: str) -> None:
    """The sizes of a Hugging Face config.json (and of a multimodal one's text_config), checked before anything is
    derived from them: one line naming the file and the key."""
    for part in (hf, hf.get("text_config")):
        for key, field in HF_SIZE_KEYS.items():
            if isinstance(part, dict) and part.get(key) is not None:
                problem = size_problem(field, part[key])
                if problem is not None:
                    raise UserError(f"{source}: {key} = {part[key]!r}: {problem}; fix the value in the file")


def type_problem(value: Any, annotation: Any) -> Optional[str]:
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
    if annotation is dict:
        return None if isinstance(value, dict) else "must be an object"
    return None
