"""Prompt styles: how a conversation becomes the text a model is trained on and prompted with.

One registry (`get_prompt_style`) holds the plain instruction templates defined here (`alpaca`, `plain`, `phi-2`)
and the chat formats of the instruct models in the config registry (`lit_gpt.prompts.chat_formats`: Llama-2-chat, Llama 3 and
3.1-3.3, Mistral-Instruct v0.1/v0.2 and v0.3, ChatML for Qwen2.5 and SmolLM2, Qwen3, Gemma 2/3, Phi-3, Phi-3.5,
Phi-4-mini, Zephyr/TinyLlama-chat). Each style renders a conversation into text segments flagged "trained" (the
assistant's answers with their end-of-turn token) or not; the data pipeline (`lit_gpt.data.tokenize`) tokenizes the
segments and masks the untrained ones. The rendered text follows each model's own chat template character for
character.

A conversation is a list of {"role": "system" | "user" | "assistant", "content": str} messages: an optional system
message first, then user and assistant strictly alternating. A user message may also carry an "input" (the extra
context of an Alpaca-style row): styles with a slot for it (alpaca) use it, the others append it to the instruction.
"""

import json
import re
from pathlib import Path
from typing import Optional, Union

from lit_gpt.prompts.chat_formats import (ChatML, Gemma, Llama2Chat, Llama3, Llama31, MistralInstruct, MistralInstructV3,
                                  Phi3, Phi4Mini, Phi35, Qwen3, Qwen25, SmolLM2, Zephyr)
from lit_gpt.registry import name_to_config
from lit_gpt.file_names import LIT_CONFIG_FILE, PROMPT_STYLE_FILE
from lit_gpt.prompts.base import (BOS, EOS, PromptStyle, Segment, Special, split_conversation, user_text,
                                 with_system)
from lit_gpt.utils import UserError, atomic_write_text
from lit_gpt.json_files import read_json

__all__ = [  # the styles and their parts, importable from here
    "BOS", "EOS", "PromptStyle", "Segment", "Special", "split_conversation", "user_text", "with_system",
    "Alpaca", "Plain", "Phi2", "ChatML", "Gemma", "Llama2Chat", "Llama3", "Llama31", "MistralInstruct",
    "MistralInstructV3", "Phi3", "Phi35", "Phi4Mini", "Qwen3", "Qwen25", "SmolLM2", "Zephyr",
    "prompt_styles", "get_prompt_style", "style_from_chat_template", "style_from_model_name", "default_prompt_style",
    "save_prompt_style", "load_prompt_style",
]


# ---- plain instruction templates -------------------------------------------------------------------------------
class Alpaca(PromptStyle):
    """Stanford Alpaca's template, as Lit-GPT uses it. A system message replaces the opening sentence; later turns of a
    conversation continue with another "### Instruction:" block after the previous answer's EOS."""

    name = "alpaca"
    stop_strings = ("### Instruction:",)
    WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                  "Write a response that appropriately completes the request.\n\n"
                  "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
    WITHOUT_INPUT = ("Below is an instruction that describes a task. "
                     "Write a response that appropriately completes the request.\n\n"
                     "### Instruction:\n{instruction}\n\n### Response:\n")
    NEXT_TURN = "\n\n### Instruction:\n{instruction}\n\n### Response:\n"

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments: list[Segment] = []
        for i, (user, assistant) in enumerate(turns):
            if i == 0:
                extra = user.get("input") or ""
                text = (self.WITH_INPUT.format(instruction=user["content"], input=extra) if extra
                        else self.WITHOUT_INPUT.format(instruction=user["content"]))
                if system:
                    text = system + "\n\n" + text.split("\n\n", 1)[1]
            else:
                text = self.NEXT_TURN.format(instruction=user_text(user))
            segments.append((text, False))
            if assistant is not None:
                segments += [(assistant["content"], True), (EOS, True)]
        return segments


class Plain(PromptStyle):
    """No template (Lit-GPT's `default`): the prompt is the instruction exactly as given and the answer follows it
    directly, then EOS; a generation prompt is the raw text, continued as it is. Data for it carries its own
    separators (an instruction "Q: ...\\nA:" and an answer " Paris.")."""

    name = "plain"

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments: list[Segment] = []
        for i, (user, assistant) in enumerate(turns):
            segments.append((with_system(system, user_text(user)) if i == 0 else user_text(user), False))
            if assistant is not None:
                segments += [(assistant["content"], True), (EOS, True)]
        return segments


class Phi2(PromptStyle):
    """Phi-2's documented QA format: "Instruct: <prompt>\\nOutput: <answer>"."""

    name = "phi-2"
    stop_strings = ("Instruct:",)

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments: list[Segment] = []
        for i, (user, assistant) in enumerate(turns):
            text = with_system(system, user_text(user)) if i == 0 else user_text(user)
            segments.append((("\n" if i else "") + f"Instruct: {text}\nOutput:", False))
            if assistant is not None:
                segments += [(" " + assistant["content"], True), (EOS, True)]
        return segments


# ---- registry ----------------------------------------------------------------------------------------------------
prompt_styles: dict[str, PromptStyle] = {s.name: s for s in (
    Alpaca(), Plain(), Phi2(), Llama2Chat(), Llama3(), Llama31(), MistralInstruct(), MistralInstructV3(), ChatML(),
    Qwen25(), Qwen3(), SmolLM2(), Gemma(), Phi3(), Phi35(), Phi4Mini(), Zephyr())}
ALIASES = {"llama-2-chat": "llama2-chat", "mistral": "mistral-instruct", "tinyllama-chat": "zephyr",
           "tiny-llama-chat": "zephyr", "qwen": "qwen2.5", "phi2": "phi-2", "default": "plain",
           "llama-3": "llama3", "llama-3.1": "llama3.1", "llama3.2": "llama3.1", "llama-3.2": "llama3.1",
           "llama3.3": "llama3.1", "llama-3.3": "llama3.1", "mistral-v0.3": "mistral-instruct-v0.3",
           "gemma2": "gemma", "gemma-2": "gemma", "gemma3": "gemma", "gemma-3": "gemma", "phi3": "phi-3",
           "phi3.5": "phi-3.5", "phi4-mini": "phi-4-mini"}

# instruct models of the config registry -> their chat format (case-insensitive regex on the model name; the first
# match wins). Base models (Qwen3-0.6B-Base, gemma-2-2b, ...) match none and get alpaca.
MODEL_NAME_STYLES = (
    (r"llama-2-\d+b-chat", "llama2-chat"),
    (r"meta-llama-3-\d+b-instruct", "llama3"),
    (r"llama-3\.[123]-\d+b-instruct", "llama3.1"),
    (r"mistral-7b-instruct-v0\.3", "mistral-instruct-v0.3"),
    (r"mistral-7b-instruct", "mistral-instruct"),
    (r"tiny-?llama.*chat|zephyr", "zephyr"),
    (r"smollm2-.*instruct", "smollm2"),
    (r"qwen2\.5-.*instruct", "qwen2.5"),
    (r"(^|/)qwen3-[\d.]+b$", "qwen3"),
    (r"(^|/)gemma-[23]-[\d.]+[mb]-it$", "gemma"),
    (r"(^|/)phi-3-mini-(4k|128k)-instruct$", "phi-3"),
    (r"(^|/)phi-3\.5-mini-instruct$", "phi-3.5"),
    (r"(^|/)phi-4-mini-instruct$", "phi-4-mini"),
    (r"(^|/)phi-2$", "phi-2"),
)


def get_prompt_style(name: Union[str, PromptStyle]) -> PromptStyle:
    if isinstance(name, PromptStyle):
        return name
    key = ALIASES.get(name.lower(), name.lower())
    if key not in prompt_styles:
        raise UserError(f"unknown prompt style {name!r}; choose one of: {', '.join(prompt_styles)}")
    return prompt_styles[key]


def style_from_chat_template(template: Optional[str]) -> Optional[str]:
    """Name of the style a Hugging Face chat template renders, or None when none of ours matches (judged by each
    family's distinctive markers)."""
    if not template:
        return None
    if "<|im_start|>" in template:
        if "<think>" in template and "enable_thinking" in template:
            return "qwen3"
        if "You are Qwen" in template:
            return "qwen2.5"
        if "SmolLM" in template:
            return "smollm2"
        return "chatml"
    if "<|start_header_id|>" in template:
        return "llama3.1" if "Cutting Knowledge Date" in template else "llama3"
    if "<start_of_turn>" in template:
        return "gemma"
    if "<|assistant|>" in template and "<|end|>" in template:
        if "<|tool|>" in template:
            return "phi-4-mini"
        return "phi-3.5" if "'system' and message['content']" in template else "phi-3"
    if "<<SYS>>" in template:
        return "llama2-chat"
    if "[INST]" in template:
        return "mistral-instruct" if " [/INST]" in template else "mistral-instruct-v0.3"
    if "<|user|>" in template and "<|assistant|>" in template:
        return "zephyr"
    return None


def style_from_model_name(name: str) -> Optional[str]:
    for pattern, style in MODEL_NAME_STYLES:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return style
    return None


def default_prompt_style(checkpoint_dir: "str | Path") -> PromptStyle:
    """Instruct checkpoints get their own chat format, base models `alpaca`.

    Order: a model of the config registry by its name in lit_config.json (or the folder name); else the chat template
    in tokenizer_config.json / chat_template.jinja (community fine-tunes have arbitrary names); else alpaca."""
    checkpoint_dir = Path(checkpoint_dir)
    names = [checkpoint_dir.name]
    lit_config = checkpoint_dir / LIT_CONFIG_FILE
    if lit_config.is_file():
        name = read_json(lit_config, "model config", fix="convert the checkpoint again").get("name")
        names.insert(0, name if isinstance(name, str) else "")
    for name in names:
        style = style_from_model_name(name)
        if style:
            return get_prompt_style(style)
        if name in name_to_config:  # a registered base model: its tokenizer's chat template is not what it learned
            return get_prompt_style("alpaca")
    style = style_from_chat_template(_chat_template(checkpoint_dir))
    return get_prompt_style(style or "alpaca")


def _chat_template(checkpoint_dir: Path) -> Optional[str]:
    config_file = checkpoint_dir / "tokenizer_config.json"
    template = None
    if config_file.is_file():
        template = read_json(config_file, "tokenizer config", fix="download the tokenizer again").get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                            None)
        if template is not None and not isinstance(template, str):
            raise UserError(f"{config_file}: chat_template must be a template text; download the tokenizer again")
    if template is None and (checkpoint_dir / "chat_template.jinja").is_file():
        template = (checkpoint_dir / "chat_template.jinja").read_text(encoding="utf-8")
    return template


def save_prompt_style(style: Union[str, PromptStyle], directory: "str | Path") -> Path:
    """Writes `prompt_style.json` so that whoever loads a fine-tuned checkpoint prompts it the way it was trained."""
    style = get_prompt_style(style)
    path = Path(directory) / PROMPT_STYLE_FILE
    atomic_write_text(path, json.dumps({"name": style.name}, indent=2) + "\n")
    return path


def load_prompt_style(directory: "str | Path") -> PromptStyle:
    """The style saved with a checkpoint, else the checkpoint's default."""
    path = Path(directory) / PROMPT_STYLE_FILE
    if not path.is_file():
        return default_prompt_style(directory)
    fix = "delete it or write it again with lit_gpt.prompts.styles.save_prompt_style"
    name = read_json(path, "prompt style file", fix=fix).get("name")
    if not isinstance(name, str):
        raise UserError(f"{path}: name = {name!r}: must be a prompt style's name (expected {{\"name\": ...}}); {fix}")
    return get_prompt_style(name)
