"""Prompt styles: how a conversation becomes the text a model is trained on and prompted with.

One registry (`get_prompt_style`) holds the plain instruction templates (`alpaca`, `plain`, `phi-2`) and the chat
formats of the instruct models in the config registry (Llama-2-chat, Mistral-Instruct, ChatML for Qwen2.5 and
SmolLM2, Zephyr/TinyLlama-chat). Each style renders a conversation into text segments flagged "trained" (the
assistant's answers with their end-of-turn token) or not; the data pipeline (`lit_gpt.data.tokenize`) tokenizes the segments
and masks the untrained ones. The rendered text follows each model's own chat template character for character.

A conversation is a list of {"role": "system" | "user" | "assistant", "content": str} messages: an optional system
message first, then user and assistant strictly alternating. A user message may also carry an "input" (the extra
context of an Alpaca-style row): styles with a slot for it (alpaca) use it, the others append it to the instruction.
"""

import hashlib
import json
import re
from pathlib import Path
from typing import Optional, Union

from lit_gpt.config import name_to_config
from lit_gpt.files import LIT_CONFIG_FILE, PROMPT_STYLE_FILE
from lit_gpt.utils import UserError, atomic_write_text



class Special(str):
    """A segment that is one special token rather than text to tokenize.

    kind "bos"/"eos": whatever BOS/EOS token the model's tokenizer has (the string is only a display name; Alpaca on
    Llama-2 ends answers with </s>, on Pythia with <|endoftext|>). kind None: the token spelled by the string (e.g.
    "<|im_end|>"); a tokenizer without such a token gets the string as plain text.
    """

    kind: Optional[str]

    def __new__(cls, text: str, kind: Optional[str] = None) -> "Special":
        obj = super().__new__(cls, text)
        obj.kind = kind
        return obj

    def __reduce__(self):
        return Special, (str(self), self.kind)


BOS = Special("<s>", "bos")
EOS = Special("</s>", "eos")

Segment = tuple[str, bool]  # (text or Special, trained)


class PromptStyle:
    """Base class. Subclasses implement `render`; `prompt` (the text before the answer) follows from it."""

    name: str = ""
    stop_strings: tuple[str, ...] = ()  # text that ends an answer besides the tokenizer's stop ids

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> list[Segment]:
        """The conversation as text segments; True marks what the model is trained to produce (assistant answers
        including their end-of-turn token). add_generation_prompt appends the header an answer starts after."""
        raise NotImplementedError

    def prompt(self, instruction: str, input: str = "") -> str:
        """The text a model sees before its answer to one instruction, for generation. Special tokens appear as text
        (tokenizers with such tokens parse them); BOS is left to the tokenizer. SentencePiece tokenizers do not parse
        special-token text: use `lit_gpt.data.tokenize.encode_prompt` to get ids for any tokenizer."""
        segments = self.render([{"role": "user", "content": instruction, "input": input}], add_generation_prompt=True)
        if segments and isinstance(segments[0][0], Special) and segments[0][0].kind == "bos":
            segments = segments[1:]
        return "".join(text for text, _ in segments)

    @property
    def fingerprint(self) -> str:
        """Hash of how this style renders a probe conversation: prepared data records it, so a changed template
        invalidates data prepared with the old one."""
        probe = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1", "input": "I"},
                 {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"},
                 {"role": "assistant", "content": "A2"}]
        rendered = [[str(t), getattr(t, "kind", "text"), trained] for t, trained in self.render(probe)]
        rendered += [[str(t), getattr(t, "kind", "text"), trained] for t, trained in self.render(probe[1:3])]
        return hashlib.sha256(json.dumps([self.name, rendered]).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"PromptStyle({self.name!r})"


# ---- conversation helpers ----------------------------------------------------------------------------------------
def split_conversation(messages: list[dict]) -> tuple[Optional[str], list[tuple[dict, Optional[dict]]]]:
    """(system text or None, [(user message, assistant message or None), ...]); raises ValueError on a conversation
    that does not alternate user/assistant after an optional leading system message."""
    messages = list(messages)
    system = None
    if messages and messages[0].get("role") == "system":
        system = messages.pop(0)["content"]
    turns = []
    for i in range(0, len(messages), 2):
        user = messages[i]
        assistant = messages[i + 1] if i + 1 < len(messages) else None
        if user.get("role") != "user" or (assistant is not None and assistant.get("role") != "assistant"):
            roles = [m.get("role") for m in messages]
            raise ValueError(f"roles must alternate user/assistant after an optional system message, got {roles}")
        turns.append((user, assistant))
    return system, turns


def user_text(message: dict) -> str:
    """The instruction with its input appended, for styles without a separate input slot."""
    extra = message.get("input") or ""
    return f"{message['content']}\n\n{extra}" if extra else message["content"]


def _with_system(system: Optional[str], text: str) -> str:
    """Styles without a system slot put the system text before the first instruction."""
    return f"{system}\n\n{text}" if system else text


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
    """The instruction, a newline, the answer: for base models without any template."""

    name = "plain"

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments: list[Segment] = []
        for i, (user, assistant) in enumerate(turns):
            text = _with_system(system, user_text(user)) if i == 0 else user_text(user)
            segments.append((("\n" if i else "") + text + "\n", False))
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
            text = _with_system(system, user_text(user)) if i == 0 else user_text(user)
            segments.append((("\n" if i else "") + f"Instruct: {text}\nOutput:", False))
            if assistant is not None:
                segments += [(" " + assistant["content"], True), (EOS, True)]
        return segments


# ---- chat formats ------------------------------------------------------------------------------------------------
class Llama2Chat(PromptStyle):
    """Llama-2-chat: every exchange is `<s>[INST] user [/INST] answer </s>`, the system prompt wrapped in <<SYS>> inside
    the first user turn; message texts are stripped, as in Meta's template."""

    name = "llama2-chat"

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments: list[Segment] = []
        for i, (user, assistant) in enumerate(turns):
            content = user_text(user)
            if i == 0 and system:
                content = f"<<SYS>>\n{system}\n<</SYS>>\n\n{content}"
            segments += [(BOS, False), (f"[INST] {content.strip()} [/INST]", False)]
            if assistant is not None:
                segments += [(f" {assistant['content'].strip()} ", True), (EOS, True)]
        return segments


class MistralInstruct(PromptStyle):
    """Mistral-7B-Instruct v0.1/v0.2: one BOS, then `[INST] user [/INST]answer</s>` per exchange. The format has no
    system slot: a system message goes before the first instruction."""

    name = "mistral-instruct"

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments: list[Segment] = [(BOS, False)]
        for i, (user, assistant) in enumerate(turns):
            content = _with_system(system, user_text(user)) if i == 0 else user_text(user)
            segments.append((f"[INST] {content} [/INST]", False))
            if assistant is not None:
                segments += [(assistant["content"], True), (EOS, True)]
        return segments


IM_START = Special("<|im_start|>")
IM_END = Special("<|im_end|>")


class ChatML(PromptStyle):
    """`<|im_start|>role\\ncontent<|im_end|>\\n` per message. default_system is used when the conversation has no system
    message (Qwen2.5 and SmolLM2 templates insert one; plain ChatML does not)."""

    name = "chatml"
    default_system: Optional[str] = None
    stop_strings = ("<|im_end|>",)

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        system = system if system is not None else self.default_system
        segments: list[Segment] = []
        if system is not None:
            segments += [(IM_START, False), (f"system\n{system}", False), (IM_END, False), ("\n", False)]
        for user, assistant in turns:
            segments += [(IM_START, False), (f"user\n{user_text(user)}", False), (IM_END, False), ("\n", False)]
            if assistant is not None:
                segments += [(IM_START, False), ("assistant\n", False), (assistant["content"], True), (IM_END, True),
                             ("\n", False)]
        if add_generation_prompt:
            segments += [(IM_START, False), ("assistant\n", False)]
        return segments


class Qwen25(ChatML):
    name = "qwen2.5"
    default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


class SmolLM2(ChatML):
    name = "smollm2"
    default_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


class Zephyr(PromptStyle):
    """Zephyr / TinyLlama-chat: `<|role|>\\ncontent</s>\\n` per message, </s> being the model's EOS."""

    name = "zephyr"
    stop_strings = ("<|user|>",)

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments: list[Segment] = []
        if system is not None:
            segments += [(f"<|system|>\n{system}", False), (EOS, False), ("\n", False)]
        for user, assistant in turns:
            segments += [(f"<|user|>\n{user_text(user)}", False), (EOS, False), ("\n", False)]
            if assistant is not None:
                segments += [("<|assistant|>\n", False), (assistant["content"], True), (EOS, True), ("\n", False)]
        if add_generation_prompt:
            segments.append(("<|assistant|>\n", False))
        return segments


# ---- registry ----------------------------------------------------------------------------------------------------
prompt_styles: dict[str, PromptStyle] = {s.name: s for s in (
    Alpaca(), Plain(), Phi2(), Llama2Chat(), MistralInstruct(), ChatML(), Qwen25(), SmolLM2(), Zephyr())}
ALIASES = {"llama-2-chat": "llama2-chat", "mistral": "mistral-instruct", "tinyllama-chat": "zephyr",
           "tiny-llama-chat": "zephyr", "qwen": "qwen2.5", "phi2": "phi-2", "default": "plain"}

# instruct models of the config registry -> their chat format (case-insensitive regex on the model name)
MODEL_NAME_STYLES = (
    (r"llama-2-\d+b-chat", "llama2-chat"),
    (r"mistral-7b-instruct", "mistral-instruct"),
    (r"tiny-?llama.*chat|zephyr", "zephyr"),
    (r"smollm2-.*instruct", "smollm2"),
    (r"qwen2\.5-.*instruct", "qwen2.5"),
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
    """Name of the style a Hugging Face chat template renders, or None when none of ours matches."""
    if not template:
        return None
    if "<|im_start|>" in template:
        if "You are Qwen" in template:
            return "qwen2.5"
        if "SmolLM" in template:
            return "smollm2"
        return "chatml"
    if "<<SYS>>" in template:
        return "llama2-chat"
    if "[INST]" in template:
        return "mistral-instruct"
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
        try:
            names.insert(0, json.loads(lit_config.read_text()).get("name") or "")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{lit_config}: not valid JSON; convert the checkpoint again") from None
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
        try:
            template = json.loads(config_file.read_text(encoding="utf-8")).get("chat_template")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{config_file}: not valid JSON; download the tokenizer again") from None
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
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
    try:
        name = json.loads(path.read_text(encoding="utf-8"))["name"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise UserError(f"{path}: not a prompt style file (expected {{\"name\": ...}}); delete it or write it again "
                        "with lit_gpt.prompts.save_prompt_style") from None
    return get_prompt_style(name)
