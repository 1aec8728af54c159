"""The chat formats of the instruct models in the config registry, one class per template family.

Each renders exactly what the model's own Hugging Face chat template renders (the templates, and where they come
from, are in tests/test_prompts.py, which renders them with Jinja and compares). Role markers that are special tokens
of the model's vocabulary are `Special` segments, so they are inserted by id and never spelled out by the
tokenizer; a tokenizer without them gets them as text. Import these classes from `lit_gpt.prompts.styles`.
"""

from typing import Optional

from lit_gpt.prompts.base import BOS, EOS, PromptStyle, Segment, Special, split_conversation, user_text


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


# ---- Mistral -----------------------------------------------------------------------------------------------------
class MistralInstruct(PromptStyle):
    """Mistral-7B-Instruct v0.1/v0.2 (tokenizer v1), their current template: `<s> [INST] user [/INST] answer</s>
    [INST] ...`, a system message before the first instruction. Every space the template writes after `<s>`,
    `[/INST]` and `</s>` is the SentencePiece word boundary mistral_common encodes there, so the ids are Mistral's
    (`▁[`, `▁The`); `lit_gpt.data.tokenize` does not add a second one."""

    name = "mistral-instruct"

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        system_turn = self.system_turn(len(turns))
        segments: list[Segment] = [(BOS, False)]
        for i, (user, assistant) in enumerate(turns):
            content = user_text(user)
            if i == system_turn and system is not None:
                content = f"{system}\n\n{content}"
            segments += self.instruction(content)
            if assistant is not None:
                segments += [(" " + self.answer_text(assistant["content"]), True), (EOS, True)]
        return segments

    # the parts in which v0.3 differs
    def system_turn(self, num_turns: int) -> int:
        """The turn whose instruction the system message goes before."""
        return 0

    def instruction(self, content: str) -> list[Segment]:
        return [(f" [INST] {content} [/INST]", False)]

    def answer_text(self, answer: str) -> str:
        return answer


INST, INST_END = Special("[INST]"), Special("[/INST]")


class MistralInstructV3(MistralInstruct):
    """Mistral-7B-Instruct-v0.3 (tokenizer v3, `[INST]`/`[/INST]` are control tokens): `<s>[INST] user[/INST]
    answer</s>[INST] ...`, answers stripped. The system message goes before the last instruction, as mistral_common
    puts it; the HF template does that only when the conversation ends with that instruction (a generation prompt)
    and drops the system message from a conversation that ends with an answer."""

    name = "mistral-instruct-v0.3"

    def system_turn(self, num_turns):
        return num_turns - 1

    def instruction(self, content):
        return [(INST, False), (" " + content, False), (INST_END, False)]

    def answer_text(self, answer):
        return answer.strip()


# ---- role blocks: ChatML (Qwen, SmolLM2), Zephyr ----------------------------------------------------------------
IM_START = Special("<|im_start|>")
IM_END = Special("<|im_end|>")


class RoleBlocks(PromptStyle):
    """One block per message: the `opening` segments, the role's `header` with the content, the `closing` token and a
    newline; an answer's header is a segment of its own, untrained. default_system is used when the conversation has
    no system message."""

    opening: tuple[Segment, ...] = ()
    header = "{role}\n"
    closing: Special = EOS
    default_system: Optional[str] = None

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        system = system if system is not None else self.default_system
        segments: list[Segment] = []
        if system is not None:
            segments += self.message("system", system)
        for user, assistant in turns:
            segments += self.message("user", user_text(user))
            if assistant is not None:
                segments += [*self.answer_header(), (assistant["content"], True), (self.closing, True), ("\n", False)]
        if add_generation_prompt:
            segments += self.answer_header()
        return segments

    def message(self, role: str, content: str) -> list[Segment]:
        """An untrained message's block."""
        return [*self.opening, (self.header.format(role=role) + content, False), (self.closing, False), ("\n", False)]

    def answer_header(self) -> list[Segment]:
        return [*self.opening, (self.header.format(role="assistant"), False)]


class ChatML(RoleBlocks):
    """`<|im_start|>role\\ncontent<|im_end|>\\n` per message. default_system: the Qwen2.5 and SmolLM2 templates
    insert one; plain ChatML does not."""

    name = "chatml"
    stop_strings = ("<|im_end|>",)
    opening = ((IM_START, False),)
    closing = IM_END


class Qwen25(ChatML):
    name = "qwen2.5"
    default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


class SmolLM2(ChatML):
    name = "smollm2"
    default_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


THINK, THINK_END = Special("<think>"), Special("</think>")


class Qwen3(ChatML):
    """Qwen3 (the hybrid-thinking chat models), non-thinking: ChatML without a default system message. The answer
    after the last user message opens with a think block, empty unless the answer brings its reasoning as
    `<think>...</think>` (then the block is trained); earlier answers are rendered without their reasoning, as the
    template strips it from the history. The generation prompt is the template's with enable_thinking=False:
    `<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n`."""

    name = "qwen3"

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments: list[Segment] = []
        if system is not None:
            segments += self.message("system", system)
        for i, (user, assistant) in enumerate(turns):
            segments += self.message("user", user_text(user))
            if assistant is None:
                continue
            content, reasoning = assistant["content"], ""
            if "</think>" in content:
                reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].strip("\n")
                content = content.split("</think>")[-1].lstrip("\n")
            segments += self.answer_header()
            if i == len(turns) - 1:
                think = bool(reasoning)  # a reasoning block is the model's own output; the empty one is the prompt's
                segments += [(THINK, think), (f"\n{reasoning}\n", think), (THINK_END, think),
                             ("\n\n", think), (content.lstrip("\n"), True)]
            else:
                segments.append((content, True))
            segments += [(IM_END, True), ("\n", False)]
        if add_generation_prompt:
            segments += [*self.answer_header(), (THINK, False), ("\n\n", False), (THINK_END, False), ("\n\n", False)]
        return segments


class Zephyr(RoleBlocks):
    """Zephyr / TinyLlama-chat: `<|role|>\\ncontent</s>\\n` per message, </s> being the model's EOS."""

    name = "zephyr"
    stop_strings = ("<|user|>",)
    header = "<|{role}|>\n"
    closing = EOS


# ---- Llama 3 -----------------------------------------------------------------------------------------------------
BEGIN_OF_TEXT = Special("<|begin_of_text|>", "bos")
START_HEADER, END_HEADER, EOT = Special("<|start_header_id|>"), Special("<|end_header_id|>"), Special("<|eot_id|>")


def _header(role: str) -> list[Segment]:
    return [(START_HEADER, False), (role, False), (END_HEADER, False), ("\n\n", False)]


class Llama3(PromptStyle):
    """Meta-Llama-3-{8B,70B}-Instruct: `<|begin_of_text|>`, then `<|start_header_id|>role<|end_header_id|>\\n\\n
    content<|eot_id|>` per message, contents stripped; no system message unless the conversation has one."""

    name = "llama3"
    stop_strings = ("<|eot_id|>",)

    def system_text(self, system: Optional[str]) -> Optional[str]:
        return system.strip() if system is not None else None

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments: list[Segment] = [(BEGIN_OF_TEXT, False)]
        system = self.system_text(system)
        if system is not None:
            segments += [*_header("system"), (system, False), (EOT, False)]
        for user, assistant in turns:
            segments += [*_header("user"), (user_text(user).strip(), False), (EOT, False)]
            if assistant is not None:
                segments += [*_header("assistant"), (assistant["content"].strip(), True), (EOT, True)]
        if add_generation_prompt:
            segments += _header("assistant")
        return segments


class Llama31(Llama3):
    """Llama 3.1, 3.2 and 3.3 Instruct: Llama 3's format, but the system block is always there and opens with the
    template's knowledge-cutoff lines. The date is the templates' fixed "26 Jul 2024" (3.1 and 3.3 always render it;
    3.2's template renders today's date where transformers provides strftime_now, which would make the training
    text change every day)."""

    name = "llama3.1"
    DATE_HEADER = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"

    def system_text(self, system):
        return self.DATE_HEADER + (system.strip() if system is not None else "")


# ---- Gemma -------------------------------------------------------------------------------------------------------
GEMMA_BOS = Special("<bos>", "bos")
START_OF_TURN, END_OF_TURN = Special("<start_of_turn>"), Special("<end_of_turn>")


class Gemma(PromptStyle):
    """Gemma 2 and Gemma 3 instruct: `<bos>`, then `<start_of_turn>user\\ncontent<end_of_turn>\\n` and
    `<start_of_turn>model\\nanswer<end_of_turn>\\n`, contents stripped. An answer ends with <end_of_turn> (the model's
    stop token); the newline after it is not trained. A system message goes before the first user message followed
    by a blank line, as Gemma 3's template puts it (Gemma 2's template refuses system messages)."""

    name = "gemma"
    stop_strings = ("<end_of_turn>",)

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments: list[Segment] = [(GEMMA_BOS, False)]
        for i, (user, assistant) in enumerate(turns):
            prefix = f"{system}\n\n" if i == 0 and system is not None else ""
            segments += [(START_OF_TURN, False), (f"user\n{prefix}{user_text(user).strip()}", False),
                         (END_OF_TURN, False), ("\n", False)]
            if assistant is not None:
                segments += [(START_OF_TURN, False), ("model\n", False), (assistant["content"].strip(), True),
                             (END_OF_TURN, True), ("\n", False)]
        if add_generation_prompt:
            segments += [(START_OF_TURN, False), ("model\n", False)]
        return segments


# ---- Phi ---------------------------------------------------------------------------------------------------------
PHI_SYSTEM, PHI_USER, PHI_ASSISTANT = Special("<|system|>"), Special("<|user|>"), Special("<|assistant|>")
PHI_END = Special("<|end|>")
PHI_EOS = Special("<|endoftext|>", "eos")


class Phi3(PromptStyle):
    """Phi-3-mini-{4k,128k}-instruct: `<|role|>\\ncontent<|end|>\\n` per message, the generation prompt
    `<|assistant|>\\n`; a conversation rendered without one ends with the tokenizer's EOS, as the template adds it.
    The system message is rendered even when empty."""

    name = "phi-3"
    stop_strings = ("<|end|>",)
    newline = "\n"
    empty_system = True  # Phi-3.5's template skips an empty system message

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        nl = self.newline
        segments: list[Segment] = []
        if system is not None and (system or self.empty_system):
            segments += [(PHI_SYSTEM, False), (nl + system, False), (PHI_END, False), (nl, False)]
        for user, assistant in turns:
            segments += [(PHI_USER, False), (nl + user_text(user), False), (PHI_END, False), (nl, False)]
            if assistant is not None:
                segments += [(PHI_ASSISTANT, False), (nl, False), (assistant["content"], True), (PHI_END, True),
                             (nl, False)]
        if add_generation_prompt:
            segments += [(PHI_ASSISTANT, False), (nl, False)]
        else:
            segments.append((PHI_EOS, True))
        return [(text, trained) for text, trained in segments if text]


class Phi35(Phi3):
    """Phi-3.5-mini-instruct: Phi-3's format; an empty system message is left out."""

    name = "phi-3.5"
    empty_system = False


class Phi4Mini(Phi3):
    """Phi-4-mini-instruct: `<|role|>content<|end|>` per message, no newlines; `<|assistant|>` starts the answer."""

    name = "phi-4-mini"
    newline = ""
