"""Prompt styles: exact template texts, ChatML against the real SmolLM2 chat template, defaults per checkpoint."""

import json

import jinja2
import pytest

from lit_gpt.prompts import (
    EOS,
    Special,
    default_prompt_style,
    get_prompt_style,
    load_prompt_style,
    prompt_styles,
    save_prompt_style,
    split_conversation,
)
from lit_gpt.utils import UserError

CONVERSATION = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, since 1871."},
]
SYSTEM = {"role": "system", "content": "Answer in one line."}


def joined(segments) -> str:
    return "".join(str(text) for text, _ in segments)


def trained_text(segments) -> str:
    return "".join(str(text) for text, trained in segments if trained)


def render_hf_template(template: str, messages, add_generation_prompt=False, **tokens) -> str:
    # transformers renders chat templates with these Jinja settings
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **tokens)


def test_alpaca_is_lit_gpts_exact_text():
    alpaca = get_prompt_style("alpaca")
    assert alpaca.prompt("Sum 2 and 3.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nSum 2 and 3.\n\n### Response:\n")
    assert alpaca.prompt("Sum the numbers.", "2, 3") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nSum the numbers.\n\n### Input:\n2, 3\n\n### Response:\n")
    segments = alpaca.render([{"role": "user", "content": "Sum 2 and 3."}, {"role": "assistant", "content": "5"}])
    assert segments[1:] == [("5", True), (EOS, True)] and segments[2][0].kind == "eos"


def test_alpaca_multi_turn_and_system():
    segments = get_prompt_style("alpaca").render([SYSTEM, *CONVERSATION])
    assert joined(segments) == ("Answer in one line.\n\n### Instruction:\nWhat is the capital of France?\n\n"
                                "### Response:\nParis.</s>\n\n### Instruction:\nAnd of Italy?\n\n### Response:\n"
                                "Rome, since 1871.</s>")
    assert trained_text(segments) == "Paris.</s>Rome, since 1871.</s>"


@pytest.mark.parametrize("with_system", [False, True])
def test_smollm2_chatml_matches_the_real_chat_template(shared_dir, with_system):
    template = (shared_dir / "tokenizers" / "smollm2" / "chat_template.jinja").read_text()
    messages = [SYSTEM, *CONVERSATION] if with_system else CONVERSATION
    style = get_prompt_style("smollm2")
    assert joined(style.render(messages)) == render_hf_template(template, messages)
    assert joined(style.render(messages[:-1], add_generation_prompt=True)) == \
        render_hf_template(template, messages[:-1], add_generation_prompt=True)
    assert style.prompt("Hi") == render_hf_template(template, [{"role": "user", "content": "Hi"}], True)
    # the tokenizer_config.json copy of the template is the same text
    config = json.loads((shared_dir / "tokenizers" / "smollm2" / "tokenizer_config.json").read_text())
    assert joined(style.render(messages)) == render_hf_template(config["chat_template"], messages)


def test_chatml_trains_on_answers_and_their_end_token():
    segments = get_prompt_style("smollm2").render(CONVERSATION)
    assert trained_text(segments) == "Paris.<|im_end|>Rome, since 1871.<|im_end|>"
    assert all(isinstance(text, Special) for text, _ in segments if text in ("<|im_start|>", "<|im_end|>"))


def test_qwen_and_plain_chatml_system_prompts():
    qwen = joined(get_prompt_style("qwen2.5").render(CONVERSATION[:2]))
    assert qwen.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                           "<|im_end|>\n<|im_start|>user\n")
    assert joined(get_prompt_style("qwen2.5").render([SYSTEM, *CONVERSATION[:2]])).startswith(
        "<|im_start|>system\nAnswer in one line.<|im_end|>\n")
    assert joined(get_prompt_style("chatml").render(CONVERSATION[:2])) == (
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>\n")


def test_llama2_chat():
    style = get_prompt_style("llama2-chat")
    segments = style.render([SYSTEM, *CONVERSATION])
    assert joined(segments) == ("<s>[INST] <<SYS>>\nAnswer in one line.\n<</SYS>>\n\nWhat is the capital of France? "
                                "[/INST] Paris. </s><s>[INST] And of Italy? [/INST] Rome, since 1871. </s>")
    assert [t.kind for t, _ in segments if isinstance(t, Special)] == ["bos", "eos", "bos", "eos"]  # BOS/EOS per turn
    assert trained_text(segments) == " Paris. </s> Rome, since 1871. </s>"
    assert style.prompt("Hi", "there") == "[INST] Hi\n\nthere [/INST]"  # BOS is the tokenizer's


def test_mistral_instruct():
    style = get_prompt_style("mistral-instruct")
    assert joined(style.render(CONVERSATION)) == (
        "<s>[INST] What is the capital of France? [/INST]Paris.</s>[INST] And of Italy? [/INST]Rome, since 1871.</s>")
    assert joined(style.render([SYSTEM, *CONVERSATION[:2]])).startswith("<s>[INST] Answer in one line.\n\nWhat is")
    assert style.prompt("Hi") == "[INST] Hi [/INST]"


def test_zephyr_tinyllama_chat():
    style = get_prompt_style("tinyllama-chat")
    assert style.name == "zephyr"
    segments = style.render([SYSTEM, *CONVERSATION[:2]])
    assert joined(segments) == ("<|system|>\nAnswer in one line.</s>\n<|user|>\nWhat is the capital of France?</s>\n"
                                "<|assistant|>\nParis.</s>\n")
    assert trained_text(segments) == "Paris.</s>"
    assert style.prompt("Hi") == "<|user|>\nHi</s>\n<|assistant|>\n"


def test_phi2_and_plain():
    assert get_prompt_style("phi-2").prompt("Name a colour.") == "Instruct: Name a colour.\nOutput:"
    segments = get_prompt_style("phi-2").render(CONVERSATION[:2])
    assert trained_text(segments) == " Paris.</s>"
    plain = get_prompt_style("plain")
    assert plain.prompt("Name a colour.") == "Name a colour.\n"
    assert joined(plain.render(CONVERSATION)) == "What is the capital of France?\nParis.</s>\nAnd of Italy?\n" \
                                                 "Rome, since 1871.</s>"


@pytest.mark.parametrize("name", sorted(prompt_styles))
def test_every_style_trains_on_every_answer_and_nothing_else(name):
    segments = get_prompt_style(name).render([SYSTEM, *CONVERSATION])
    trained = trained_text(segments)
    for message in CONVERSATION:
        assert (message["content"] in trained) == (message["role"] == "assistant")
    # every answer's trained stretch ends with an end-of-turn token
    ends = [text for i, (text, trained) in enumerate(segments)
            if trained and (i + 1 == len(segments) or not segments[i + 1][1])]
    assert ends and all(isinstance(text, Special) for text in ends)


def test_fingerprints_tell_styles_apart():
    fingerprints = {style.fingerprint for style in prompt_styles.values()}
    assert len(fingerprints) == len(prompt_styles)


def test_bad_conversations_and_names():
    with pytest.raises(ValueError, match="alternate"):
        split_conversation([{"role": "assistant", "content": "hi"}])
    with pytest.raises(UserError, match="unknown prompt style 'nope'.*alpaca"):
        get_prompt_style("nope")


def make_checkpoint(tmp_path, name=None, chat_template=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    if name is not None:
        (tmp_path / "lit_config.json").write_text(json.dumps({"name": name}))
    if chat_template is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": chat_template}))
    return tmp_path


@pytest.mark.parametrize("name, expected", [
    ("Llama-2-7b-chat-hf", "llama2-chat"), ("Llama-2-7b-hf", "alpaca"),
    ("Mistral-7B-Instruct-v0.2", "mistral-instruct"),
    ("Mistral-7B-v0.1", "alpaca"), ("tiny-llama-1.1b-chat", "zephyr"), ("SmolLM2-135M-Instruct", "smollm2"),
    ("Qwen2.5-0.5B-Instruct", "qwen2.5"), ("Qwen2.5-0.5B", "alpaca"), ("phi-2", "phi-2"), ("pythia-160m", "alpaca"),
])
def test_default_style_from_registry_name(tmp_path, name, expected):
    # a registered base model keeps alpaca even when its tokenizer ships a chat template
    checkpoint = make_checkpoint(tmp_path, name, chat_template="{{ '<|im_start|>' }}")
    assert default_prompt_style(checkpoint).name == expected


@pytest.mark.parametrize("template, expected", [
    ("{{ '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.' }}", "qwen2.5"),
    ("{{ '<|im_start|>' + message['role'] }}", "chatml"),
    ("{{ bos_token + '[INST] <<SYS>>\n' }}", "llama2-chat"),
    ("{{ '[INST] ' + message['content'] + ' [/INST]' }}", "mistral-instruct"),
    ("{{ '<|user|>\n' }}{{ '<|assistant|>\n' }}", "zephyr"),
    ("{{ 'something else' }}", "alpaca"),
])
def test_default_style_from_chat_template(tmp_path, template, expected):
    checkpoint = make_checkpoint(tmp_path / "community-finetune", "my-finetune", chat_template=template)
    assert default_prompt_style(checkpoint).name == expected


def test_default_style_of_shared_tokenizers(tiny_checkpoint_dir):
    assert default_prompt_style(tiny_checkpoint_dir("smollm2")).name == "smollm2"  # from chat_template
    assert default_prompt_style(tiny_checkpoint_dir("llama-2")).name == "alpaca"  # no chat template: base model


def test_save_and_load_prompt_style(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "out", "pythia-160m")
    assert load_prompt_style(checkpoint).name == "alpaca"  # nothing saved: the default
    save_prompt_style("llama-2-chat", checkpoint)
    assert json.loads((checkpoint / "prompt_style.json").read_text()) == {"name": "llama2-chat"}
    assert load_prompt_style(checkpoint).name == "llama2-chat"
    save_prompt_style(get_prompt_style("zephyr"), checkpoint)
    assert load_prompt_style(checkpoint).name == "zephyr"
    (checkpoint / "prompt_style.json").write_text("{broken")
    with pytest.raises(UserError, match="prompt_style.json"):
        load_prompt_style(checkpoint)
