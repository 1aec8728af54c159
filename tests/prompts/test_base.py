"""lit_gpt/prompts/base.py: what every prompt style is made of. `Special` segments, what `PromptStyle` derives from a
style's `render` (the prompt, the end tokens, the fingerprint) shown on small styles written here,
`check_tokenizer` (the special-token setups a style cannot work with, on the real shared tokenizers) and the
conversation helpers."""

import copy
import json
import pickle
import re
import shutil

import pytest

from lit_gpt.prompts.base import BOS, EOS, PromptStyle, Special, split_conversation, user_text, with_system
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError

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


# ---- check_tokenizer: the special-token setups a style cannot work with, each one line before any work -----------------
def _tokenizer(shared_dir, tmp_path, name: str, **config_changes) -> Tokenizer:
    """A copy of a shared tokenizer with tokenizer_config.json's fields changed and no generation_config.json (so
    that a field set to None leaves the tokenizer without that token)."""
    folder = tmp_path / name
    shutil.copytree(shared_dir / "tokenizers" / name, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, **config_changes}))
    (folder / "generation_config.json").unlink(missing_ok=True)
    return Tokenizer(folder)


def _refusal(style, tokenizer, model_vocab_size=None) -> str:
    with pytest.raises(UserError) as error:
        style.check_tokenizer(tokenizer, model_vocab_size)
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("tokenizer_name, style, token", [
    ("llama-2", "chatml", "<|im_start|>"),  # SentencePiece: the ChatML markers would be plain text pieces
    ("gpt2", "llama3", "<|start_header_id|>"),
    ("smollm2", "gemma", "<start_of_turn>"),
    ("mistral-v1", "mistral-instruct-v0.3", "[INST]"),  # v0.3's control tokens are not in the v1 vocabulary
])
def test_markers_that_are_not_one_token_are_refused(shared_dir, tmp_path, tokenizer_name, style, token):
    tokenizer = _tokenizer(shared_dir, tmp_path, tokenizer_name)
    message = _refusal(get_prompt_style(style), tokenizer)
    assert message.startswith(f"{tokenizer.model_file}: prompt style {get_prompt_style(style).name} needs {token!r}")
    assert "--prompt_style" in message
    with pytest.raises(UserError, match=re.escape("'<|turn_end|>' as one special token")):  # an end marker alike
        Tagged().check_tokenizer(tokenizer)


@pytest.mark.parametrize("tokenizer_name, styles", [
    ("smollm2", ["chatml", "smollm2", "alpaca", "plain", "llama2-chat", "zephyr"]),
    ("llama-2", ["alpaca", "plain", "llama2-chat", "mistral-instruct", "zephyr"]),
    ("gpt2", ["alpaca", "plain"]),
])
def test_the_styles_a_tokenizer_can_work_with_pass(shared_dir, tmp_path, tokenizer_name, styles):
    tokenizer = _tokenizer(shared_dir, tmp_path, tokenizer_name)
    for style in styles:
        get_prompt_style(style).check_tokenizer(tokenizer, tokenizer.vocab_size)


def test_a_tokenizer_without_eos_is_refused_for_every_style(shared_dir, tmp_path):
    tokenizer = _tokenizer(shared_dir, tmp_path, "smollm2", bos_token=None, eos_token=None)
    assert tokenizer.eos_id is None
    for style in ("alpaca", "plain", "chatml"):
        assert "the tokenizer has no EOS token" in _refusal(get_prompt_style(style), tokenizer)


def test_a_tokenizer_without_bos_is_refused_where_the_style_starts_with_one(shared_dir, tmp_path):
    tokenizer = _tokenizer(shared_dir, tmp_path, "llama-2", bos_token=None)
    assert tokenizer.bos_id is None and tokenizer.eos_id == 2
    for style in ("llama2-chat", "mistral-instruct"):
        message = _refusal(get_prompt_style(style), tokenizer)
        assert "starts with a BOS token, but the tokenizer has none" in message and "--prompt_style" in message
    get_prompt_style("alpaca").check_tokenizer(tokenizer)  # no BOS in its template: fine


def test_special_ids_outside_the_models_embedding_are_refused(shared_dir, tmp_path):
    tokenizer = _tokenizer(shared_dir, tmp_path, "gpt2")  # <|endoftext|> = 50256
    message = _refusal(get_prompt_style("alpaca"), tokenizer, model_vocab_size=50000)
    assert message.startswith(f"{tokenizer.model_file}: BOS has id 50256, outside the model's embedding")
    smollm2 = _tokenizer(shared_dir, tmp_path, "smollm2")  # <|im_start|> = 1, <|im_end|> = 2
    assert "'<|im_start|>' has id 1, outside the model's embedding" in _refusal(get_prompt_style("chatml"), smollm2, 1)


def test_special_ids_outside_the_vocabulary_are_refused(shared_dir, tmp_path):
    tokenizer = _tokenizer(shared_dir, tmp_path, "smollm2")
    tokenizer.vocab_size = 2  # as a tokenizer.json whose added tokens lie past its vocabulary would say
    assert "EOS has id 2, outside the vocabulary of 2 tokens" in _refusal(get_prompt_style("alpaca"), tokenizer)


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
