"""What every prompt style is made of: the segment types (text, or a `Special` token), the `PromptStyle` base class
and the conversation helpers. The styles themselves live in `lit_gpt.prompts.styles` (instruction templates, the registry)
and `lit_gpt.prompts.chat_formats` (the instruct models' chat templates); import all of it from `lit_gpt.prompts.styles`.
"""

import hashlib
import json
from typing import Optional

from lit_gpt.utils import UserError


class Special(str):
    """A segment that is one special token rather than text to tokenize.

    kind "bos"/"eos": whatever BOS/EOS token the model's tokenizer has (the string is only a display name; Alpaca on
    Llama-2 ends answers with </s>, on Pythia with <|endoftext|>). kind None: the token spelled by the string (e.g.
    "<|im_end|>"); a tokenizer without such a token gets the string as plain text, which is why prepare, finetune
    and generate refuse such a tokenizer first (`PromptStyle.check_tokenizer`).
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

# a conversation with every part a style renders (a system message, an input, two exchanges): the fingerprint hashes
# its rendering and `check_tokenizer` looks for the special tokens in it
PROBE = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1", "input": "I"},
         {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"},
         {"role": "assistant", "content": "A2"}]


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
        (tokenizers with such tokens parse them); BOS is left to the tokenizer, and so is the space a template writes
        after it (Mistral's `<s> [INST]`: the SentencePiece word-boundary of the first word). SentencePiece tokenizers
        do not parse special-token text: use `lit_gpt.data.tokenize.encode_prompt` to get ids for any tokenizer."""
        segments = self.render([{"role": "user", "content": instruction, "input": input}], add_generation_prompt=True)
        if segments and isinstance(segments[0][0], Special) and segments[0][0].kind == "bos":
            segments = segments[1:]
            if segments and not isinstance(segments[0][0], Special) and segments[0][0].startswith(" "):
                segments = [(segments[0][0][1:], segments[0][1]), *segments[1:]]
        return "".join(text for text, _ in segments)

    @property
    def end_tokens(self) -> tuple[str, ...]:
        """The special tokens (other than the tokenizer's EOS) that end this style's answers, e.g. ("<|im_end|>",):
        generation must stop at them (`lit_gpt.tokenizer.END_OF_TURN_TOKENS` lists them for every style)."""
        segments = self.render([{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}])
        return tuple(dict.fromkeys(str(text) for text, trained in segments
                                   if trained and isinstance(text, Special) and text.kind is None))

    @property
    def fingerprint(self) -> str:
        """Hash of how this style renders a probe conversation: prepared data records it, so a changed template
        invalidates data prepared with the old one."""
        rendered = [[str(t), getattr(t, "kind", "text"), trained] for t, trained in self.render(PROBE)]
        rendered += [[str(t), getattr(t, "kind", "text"), trained] for t, trained in self.render(PROBE[1:3])]
        return hashlib.sha256(json.dumps([self.name, rendered]).encode()).hexdigest()[:16]

    def check_tokenizer(self, tokenizer, model_vocab_size: Optional[int] = None) -> None:
        """Refuses (UserError naming the tokenizer file, the token and the fix) a tokenizer this style cannot work
        with, before any data is read or any model runs: a marker it renders as a special token (<|im_end|>,
        <|eot_id|>, <end_of_turn>, [INST], ...) that the vocabulary does not have as one token (encoded as plain text
        pieces, generation would not stop at the end of an answer and training would learn the pieces), no EOS (every
        answer ends with one), no BOS where the style starts with one, or a special id outside the vocabulary or
        outside the model's embedding (`model_vocab_size`: the rows of lit_config.json's vocab_size)."""
        where = getattr(tokenizer, "model_file", tokenizer.checkpoint_dir)
        specials = {t: t.kind for rendering in (self.render(PROBE), self.render(PROBE[:2], add_generation_prompt=True))
                    for t, _ in rendering if isinstance(t, Special)}
        ids = []  # (what, id)
        for token, kind in specials.items():
            if kind is None and tokenizer.token_to_id(str(token)) is None:
                raise UserError(f"{where}: prompt style {self.name} needs {str(token)!r} as one special token, but "
                                "this tokenizer has no such token (spelled as text pieces, turns would not end where "
                                "the style ends them and training would learn the pieces); pass the --prompt_style "
                                "of this model's own chat format, or use the tokenizer the style is for")
            if kind is None:
                ids.append((repr(str(token)), tokenizer.token_to_id(str(token))))
        if tokenizer.eos_id is None:
            raise UserError(f"{tokenizer.checkpoint_dir}: the tokenizer has no EOS token (tokenizer_config.json "
                            "eos_token, generation_config.json eos_token_id), so answers cannot end; add eos_token "
                            "to tokenizer_config.json or download the tokenizer again")
        if tokenizer.bos_id is None and "bos" in specials.values():
            raise UserError(f"{tokenizer.checkpoint_dir}: prompt style {self.name} starts with a BOS token, but the "
                            "tokenizer has none (tokenizer_config.json bos_token, generation_config.json "
                            "bos_token_id); pass a --prompt_style without BOS (alpaca, plain) or add bos_token")
        ids += [("BOS", tokenizer.bos_id), ("EOS", tokenizer.eos_id)]
        ids += [("a stop token (generation_config.json eos_token_id)", i) for i in getattr(tokenizer, "stop_ids", ())]
        for what, i in ids:
            _check_token_id(what, i, tokenizer.vocab_size, f"{where}: ", "the vocabulary",
                            "download the tokenizer again")
            if model_vocab_size is not None:
                _check_token_id(what, i, model_vocab_size, f"{where}: ", "the model's embedding (lit_config.json "
                                "vocab_size)", "use the checkpoint's own tokenizer files")

    def __repr__(self) -> str:
        return f"PromptStyle({self.name!r})"


def _check_token_id(what: str, i: Optional[int], size: int, where: str, of: str, fix: str) -> None:
    if i is not None and not 0 <= i < size:
        raise UserError(f"{where}{what} has id {i}, outside {of} of {size} tokens; {fix}")


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


def with_system(system: Optional[str], text: str) -> str:
    """Styles without a system slot put the system text before the first instruction."""
    return f"{system}\n\n{text}" if system else text
