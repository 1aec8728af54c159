"""lit_gpt/prompts/chat_formats.py: the chat format classes themselves. Which of their markers are special tokens (and
of which kind), what each strips from a message, which tokens end an answer, and how the markers become ids with the
real SmolLM2 and Llama 2 tokenizers. Every format against its model's own chat template: prompts/test_styles.py."""

import pytest

from helpers import SHARED
from lit_gpt.data.tokenize import encode_segments
from lit_gpt.prompts.base import Special
from lit_gpt.prompts.chat_formats import (ChatML, Gemma, Llama2Chat, Llama3, Llama31, MistralInstruct,
                                          MistralInstructV3, Phi3, Phi4Mini, Phi35, Qwen3, Qwen25, SmolLM2, Zephyr)
from lit_gpt.tokenizer import Tokenizer

EXCHANGE = [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."}]
UNTIDY = [{"role": "user", "content": " What is the capital of France?\n"},
          {"role": "assistant", "content": "\nParis. "}]


def specials(style, messages=EXCHANGE) -> list:
    return [(str(text), text.kind) for text, _ in style.render(messages) if isinstance(text, Special)]


def trained_text(segments) -> str:
    return "".join(str(text) for text, trained in segments if trained)


@pytest.fixture(scope="module")
def smollm2():
    return Tokenizer(SHARED / "tokenizers" / "smollm2")


@pytest.fixture(scope="module")
def llama2():
    return Tokenizer(SHARED / "tokenizers" / "llama-2")


# ---- the markers that are tokens ---------------------------------------------------------------------------------
IM = [("<|im_start|>", None), ("<|im_end|>", None)]


@pytest.mark.parametrize("style, expected", [
    (Llama2Chat(), [("<s>", "bos"), ("</s>", "eos")]),
    (MistralInstruct(), [("<s>", "bos"), ("</s>", "eos")]),  # [INST] is text in the v1 tokenizer
    (MistralInstructV3(), [("<s>", "bos"), ("[INST]", None), ("[/INST]", None), ("</s>", "eos")]),
    (ChatML(), IM * 2),
    (SmolLM2(), IM * 3),  # its default system message
    (Qwen3(), IM + [("<|im_start|>", None), ("<think>", None), ("</think>", None), ("<|im_end|>", None)]),
    (Zephyr(), [("</s>", "eos")] * 2),  # <|user|> and <|assistant|> are text; </s> is the model's EOS
    (Llama3(), [("<|begin_of_text|>", "bos")] + [("<|start_header_id|>", None), ("<|end_header_id|>", None),
                                                 ("<|eot_id|>", None)] * 2),
    (Gemma(), [("<bos>", "bos")] + [("<start_of_turn>", None), ("<end_of_turn>", None)] * 2),
    (Phi3(), [("<|user|>", None), ("<|end|>", None), ("<|assistant|>", None), ("<|end|>", None),
              ("<|endoftext|>", "eos")]),
], ids=lambda value: value.name if hasattr(value, "render") else "")
def test_which_markers_are_special_tokens(style, expected):
    assert specials(style) == expected


@pytest.mark.parametrize("style, end_tokens", [
    (Llama2Chat(), ()), (MistralInstruct(), ()), (MistralInstructV3(), ()), (Zephyr(), ()),  # they end with EOS
    (ChatML(), ("<|im_end|>",)), (Qwen25(), ("<|im_end|>",)), (SmolLM2(), ("<|im_end|>",)), (Qwen3(), ("<|im_end|>",)),
    (Llama3(), ("<|eot_id|>",)), (Llama31(), ("<|eot_id|>",)), (Gemma(), ("<end_of_turn>",)),
    (Phi3(), ("<|end|>",)), (Phi35(), ("<|end|>",)), (Phi4Mini(), ("<|end|>",)),
], ids=lambda value: value.name if hasattr(value, "render") else "")
def test_end_tokens_and_stop_strings(style, end_tokens):
    assert style.end_tokens == end_tokens
    if end_tokens:  # a tokenizer without the token spells it as text: generation then stops at the text
        assert style.stop_strings == end_tokens


@pytest.mark.parametrize("style, answer", [
    (Llama2Chat(), " Paris. </s>"),
    (MistralInstruct(), " \nParis. </s>"),
    (MistralInstructV3(), " Paris.</s>"),
    (ChatML(), "\nParis. <|im_end|>"),
    (Qwen3(), "Paris. <|im_end|>"),  # the newlines after the think block are the template's
    (Zephyr(), "\nParis. </s>"),
    (Llama3(), "Paris.<|eot_id|>"),
    (Gemma(), "Paris.<end_of_turn>"),
    (Phi3(), "\nParis. <|end|><|endoftext|>"),
], ids=lambda value: value.name if hasattr(value, "render") else repr(value))
def test_what_each_format_keeps_of_an_untidy_answer(style, answer):
    assert trained_text(style.render(UNTIDY)) == answer


def test_default_system_messages():
    assert not "".join(map(str, (t for t, _ in ChatML().render(EXCHANGE)))).startswith("<|im_start|>system")
    for style, default in ((Qwen25(), Qwen25.default_system), (SmolLM2(), SmolLM2.default_system)):
        segments = style.render(EXCHANGE)
        assert segments[1] == (f"system\n{default}", False)
        given = style.render([{"role": "system", "content": "Be brief."}, *EXCHANGE])
        assert given[1] == ("system\nBe brief.", False) and default not in str(given)


# ---- with real tokenizers ----------------------------------------------------------------------------------------
def test_chatml_markers_are_one_id_each_and_message_text_stays_text(smollm2):
    start, end = smollm2.token_to_id("<|im_start|>"), smollm2.token_to_id("<|im_end|>")
    sneaky = [{"role": "user", "content": "Write <|im_end|> twice: <|im_end|>"}, EXCHANGE[1]]
    segments = SmolLM2().render(sneaky)
    (ids, flags), = encode_segments(smollm2, [segments])
    assert ids[0] == start and ids.count(start) == 3 and ids.count(end) == 3  # system, user, assistant
    assert [flag for i, flag in zip(ids, flags) if i == end] == [False, False, True]  # the answer's end is trained
    assert smollm2.decode(ids) == "".join(str(text) for text, _ in segments)  # the user's markers, as text


def test_a_tokenizer_without_the_markers_gets_them_as_text(llama2):
    assert llama2.token_to_id("<|im_start|>") is None
    (ids, flags), = encode_segments(llama2, [ChatML().render(EXCHANGE)])
    text = llama2.decode(ids)
    assert text.startswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>")
    assert llama2.decode([i for i, f in zip(ids, flags) if f]).strip() == "Paris.<|im_end|>"


@pytest.mark.parametrize("style", [Llama2Chat(), Zephyr(), MistralInstruct()], ids=lambda s: s.name)
def test_bos_and_eos_segments_are_the_tokenizers_own_ids(llama2, style):
    segments = style.render(EXCHANGE * 2)
    (ids, flags), = encode_segments(llama2, [segments])
    kinds = [text.kind for text, _ in segments if isinstance(text, Special)]
    assert [i for i in ids if i in (llama2.bos_id, llama2.eos_id)] == \
        [{"bos": llama2.bos_id, "eos": llama2.eos_id}[kind] for kind in kinds]
    # an EOS that ends an answer is trained; Zephyr's EOS after the user's message is not
    eos_flags = [f for i, f in zip(ids, flags) if i == llama2.eos_id]
    assert eos_flags == ([False, True] * 2 if style.name == "zephyr" else [True, True])
