"""lit_gpt/prompts/base.py: what every prompt style is made of. `Special` segments, what `PromptStyle` derives from a
style's `render` (the prompt, the end tokens, the fingerprint) shown on small styles written here, and the
conversation helpers."""

import copy
import pickle

import pytest

from lit_gpt.prompts.base import BOS, EOS, PromptStyle, Special, split_conversation, user_text, with_system

USER = {"role": "user", "content": "Name a colour.", "input": ""}
ANSWER = {"role": "assistant", "content": "Blue."}
TURN_END = Special("<|turn_end|>")


class Tagged(PromptStyle):
    """BOS, a space, `Q: ...` / `A: ...` per exchange; answers end with <|turn_end|>, then the tokenizer's EOS."""

    name = "tagged"

    def render(self, messages, add_generation_prompt=False):
        system, turns = split_conversation(messages)
        segments = [(BOS, False), (" " + with_system(system, ""), False)]
        for user, assistant in turns:
            segments.append((f"Q: {user_text(user)}\n", False))
            if assistant is not None:
                segments += [("A: ", False), (assistant["content"], True), (TURN_END, True), (EOS, True)]
        if add_generation_prompt:
            segments.append(("A:", False))
        return segments


class Retagged(Tagged):
    """The same name and the same text, but the turn end spelled as text rather than as a special token."""

    def render(self, messages, add_generation_prompt=False):
        return [(str(text) if text == TURN_END else text, trained)
                for text, trained in super().render(messages, add_generation_prompt)]


def test_special_is_its_text_with_a_kind():
    assert Special("<|im_end|>") == "<|im_end|>" and isinstance(Special("<|im_end|>"), str)
    assert Special("<|im_end|>").kind is None and (BOS.kind, EOS.kind) == ("bos", "eos")
    assert str(BOS) == "<s>" and "x" + EOS == "x</s>"  # the display name, where text is wanted
    # prepared data and worker processes pickle segments: the kind must survive
    for restored in (pickle.loads(pickle.dumps(EOS)), copy.deepcopy(EOS)):
        assert isinstance(restored, Special) and (str(restored), restored.kind) == ("</s>", "eos")


def test_render_is_for_subclasses():
    with pytest.raises(NotImplementedError):
        PromptStyle().render([USER])


def test_prompt_is_the_rendering_up_to_the_answer_without_bos_and_its_space():
    style = Tagged()
    # BOS, and the space after it (SentencePiece's word boundary), are the tokenizer's to add
    assert style.prompt("Name a colour.") == "Q: Name a colour.\nA:"
    assert style.prompt("Name a colour.", "Think of the sky.") == "Q: Name a colour.\n\nThink of the sky.\nA:"


def test_prompt_keeps_what_starts_without_bos():
    class NoBos(Tagged):
        def render(self, messages, add_generation_prompt=False):
            return super().render(messages, add_generation_prompt)[1:]  # starts with the space

    assert NoBos().prompt("Hi") == " Q: Hi\nA:"


def test_end_tokens_are_the_trained_special_tokens_that_are_not_eos():
    assert Tagged().end_tokens == ("<|turn_end|>",)
    assert Retagged().end_tokens == ()  # as text it is not a token generation could stop at


def test_fingerprint_follows_the_rendering():
    tagged = Tagged()
    assert len(tagged.fingerprint) == 16 and int(tagged.fingerprint, 16) >= 0
    assert tagged.fingerprint == Tagged().fingerprint  # stable: prepared data compares it across runs
    assert Retagged().fingerprint != tagged.fingerprint  # same text, a special token become text

    class Renamed(Tagged):
        name = "tagged-2"

    assert Renamed().fingerprint != tagged.fingerprint
    assert repr(tagged) == "PromptStyle('tagged')"


def test_split_conversation():
    system = {"role": "system", "content": "Be brief."}
    messages = [system, USER, ANSWER, USER]
    assert split_conversation(messages) == ("Be brief.", [(USER, ANSWER), (USER, None)])
    assert messages == [system, USER, ANSWER, USER]  # the caller's list is left as it was
    assert split_conversation([USER, ANSWER]) == (None, [(USER, ANSWER)])
    assert split_conversation([]) == (None, [])
    with pytest.raises(ValueError, match=r"alternate user/assistant .* got \['user', 'user'\]"):
        split_conversation([USER, USER])
    with pytest.raises(ValueError, match=r"got \['assistant'\]"):
        split_conversation([system, ANSWER])


def test_user_text_and_with_system():
    assert user_text({"content": "Sum these.", "input": "2, 3"}) == "Sum these.\n\n2, 3"
    assert user_text({"content": "Sum 2 and 3."}) == user_text({"content": "Sum 2 and 3.", "input": None}) == \
        "Sum 2 and 3."
    assert with_system("Be brief.", "Hi") == "Be brief.\n\nHi"
    assert with_system(None, "Hi") == with_system("", "Hi") == "Hi"
