"""Prompt styles: exact template texts, every chat format against its model's real chat template (rendered as
transformers renders it), Mistral's token ids, defaults per checkpoint."""

import json

import jinja2
import pytest

from helpers import ROOT
from lit_gpt.data.tokenize import encode_prompt, encode_segments, training_segments
from lit_gpt.prompts.styles import (
    EOS,
    Special,
    default_prompt_style,
    get_prompt_style,
    load_prompt_style,
    prompt_styles,
    save_prompt_style,
    split_conversation,
    style_from_chat_template,
    style_from_model_name,
)
from lit_gpt.tokenizer import END_OF_TURN_TOKENS, Tokenizer
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
    assert joined(style.render(CONVERSATION)) == ("<s> [INST] What is the capital of France? [/INST] Paris.</s> "
                                                  "[INST] And of Italy? [/INST] Rome, since 1871.</s>")
    assert joined(style.render([SYSTEM, *CONVERSATION[:2]])).startswith("<s> [INST] Answer in one line.\n\nWhat is")
    assert style.prompt("Hi") == "[INST] Hi [/INST]"  # BOS and the space after it are the tokenizer's


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
    plain = get_prompt_style("plain")  # no template at all: the text as it is, the answer right after it
    assert plain.prompt("Q: What is the capital of France?\nA:") == "Q: What is the capital of France?\nA:"
    assert plain.prompt("Sum these.", "2, 3") == "Sum these.\n\n2, 3"
    segments = plain.render([{"role": "user", "content": "Q: 2+2?\nA:"}, {"role": "assistant", "content": " 4"},
                             {"role": "user", "content": "Q: 3+3?\nA:"}, {"role": "assistant", "content": " 6"}])
    assert joined(segments) == "Q: 2+2?\nA: 4</s>Q: 3+3?\nA: 6</s>"
    assert trained_text(segments) == " 4</s> 6</s>"


@pytest.mark.parametrize("tokenizer_name", ["llama-2", "smollm2", "gpt2"])
def test_plain_prompt_ids_are_the_tokenizers_encoding_of_the_raw_text(shared_dir, tokenizer_name):
    # what `generate/base.py --prompt_style plain` feeds the model: BOS where the tokenizer uses one, then the text
    tokenizer = Tokenizer(shared_dir / "tokenizers" / tokenizer_name)
    prompt = "Q: What is the capital of France?\nA:"
    ids = encode_prompt(tokenizer, "plain", prompt)
    assert ids.tolist() == tokenizer.encode(prompt).tolist()
    assert (ids[0] == tokenizer.bos_id) == tokenizer.use_bos and tokenizer.decode(ids, skip_special_tokens=True) == \
        prompt


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
    *[(name, "llama3") for name in ("Meta-Llama-3-8B-Instruct", "Meta-Llama-3-70B-Instruct")],
    *[(name, "llama3.1") for name in ("Llama-3.1-8B-Instruct", "Llama-3.1-70B-Instruct", "Llama-3.2-1B-Instruct",
                                      "Llama-3.2-3B-Instruct", "Llama-3.3-70B-Instruct")],
    ("Meta-Llama-3-8B", "alpaca"), ("Llama-3.2-1B", "alpaca"),
    *[(name, "qwen3") for name in ("Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B")],
    ("Qwen3-0.6B-Base", "alpaca"), ("Qwen3-8B-Base", "alpaca"),
    *[(name, "gemma") for name in ("gemma-2-2b-it", "gemma-2-9b-it", "gemma-3-270m-it", "gemma-3-1b-it",
                                   "gemma-3-4b-it")],
    ("gemma-3-270m", "alpaca"), ("gemma-2-2b", "alpaca"), ("gemma-3-1b-pt", "alpaca"),
    ("Phi-3-mini-4k-instruct", "phi-3"), ("Phi-3.5-mini-instruct", "phi-3.5"), ("Phi-4-mini-instruct", "phi-4-mini"),
    ("Mistral-7B-Instruct-v0.3", "mistral-instruct-v0.3"), ("Mistral-7B-v0.3", "alpaca"),
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
    *[((ROOT / "tests/fixtures/chat_templates" / file).read_text(), style) for file, style in [
        ("meta-llama-Meta-Llama-3-8B-Instruct.jinja", "llama3"),
        ("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3.1"), ("meta-llama-Llama-3.2-3B-Instruct.jinja", "llama3.1"),
        ("Qwen-Qwen3-8B.jinja", "qwen3"), ("google-gemma-2-9b-it.jinja", "gemma"),
        ("google-gemma-3-4b-it.jinja", "gemma"),
        ("microsoft-Phi-3-mini-4k-instruct.jinja", "phi-3"), ("microsoft-Phi-3.5-mini-instruct.jinja", "phi-3.5"),
        ("microsoft-Phi-4-mini-instruct.jinja", "phi-4-mini"),
        ("mistralai-Mistral-7B-Instruct-v0.2.jinja", "mistral-instruct"),
        ("mistralai-Mistral-7B-Instruct-v0.3.jinja", "mistral-instruct-v0.3")]],
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


@pytest.mark.parametrize("content, problem", [
    ('{"name": ["alpaca"]}', "name = ['alpaca']: must be a prompt style's name"),
    ('{"name": ' * 80 + '"x"' + "}" * 80, "cannot read this prompt style file: nested more than 64 levels deep"),
    ('{"name": "alpaca", "n": 1' + "0" * 120 + "}", "cannot read this prompt style file: line 1 holds a number of"),
])
def test_crafted_prompt_style_and_tokenizer_config_name_the_file(tmp_path, content, problem):
    checkpoint = make_checkpoint(tmp_path / "out", "pythia-160m")
    (checkpoint / "prompt_style.json").write_text(content)
    with pytest.raises(UserError) as e:
        load_prompt_style(checkpoint)
    assert str(e.value).startswith(f"{checkpoint / 'prompt_style.json'}: {problem}")
    (checkpoint / "prompt_style.json").unlink()
    config = json.loads((checkpoint / "lit_config.json").read_text())
    (checkpoint / "lit_config.json").write_text(json.dumps({**config, "name": "my-own-model"}))  # not registered
    (checkpoint / "tokenizer_config.json").write_text('{"chat_template": 7}')
    with pytest.raises(UserError, match="tokenizer_config.json: chat_template must be a template text"):
        load_prompt_style(checkpoint)


# ---- every chat format against its model's own chat template --------------------------------------------------------
# tests/fixtures/chat_templates/<org>-<model>.jinja: the chat_template of each model's tokenizer_config.json (no Hub
# here; transcribed from public copies of the Hub files, each cross-checked against a second copy):
#   meta-llama-Meta-Llama-3-8B-Instruct  guidance-ai/guidance guidance/chat.py (quoting the Hub file, 05/08/24);
#                                        openvinotoolkit/openvino.genai tests/python_tests/tokenizer_configs.py
#   meta-llama-Llama-3.1-8B-Instruct     openvino.genai tokenizer_configs.py ("meta-llama/Meta-Llama-3.1-8B-Instruct");
#                                        microsoft/onnxruntime-extensions shared/api/chat_template.cc, whose
#                                        LLAMA3_3_CHAT_TEMPLATE maps Llama-3.1-8B/70B and Llama-3.3-70B to this text
#   meta-llama-Llama-3.2-3B-Instruct     ggerganov/llama.cpp models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja
#                                        (fetched from the Hub by its scripts/get_chat_template.py); guidance chat.py
#   Qwen-Qwen3-8B                        guidance chat.py (Qwen/Qwen3-8B tokenizer_config.json#L230); the release-day
#                                        variant (`message.reasoning_content is defined`) renders the same
#   google-gemma-2-9b-it                 guidance chat.py (google/gemma-2-9b-it tokenizer_config.json#L1747); the same
#                                        as gemma-7b-it's in openvino.genai tokenizer_configs.py
#   google-gemma-3-4b-it                 onnxruntime-extensions chat_template.cc GEMMA3_CHAT_TEMPLATE; a kalosm test
#                                        "google/gemma-3-4b-it template, output checked against python transformers"
#   microsoft-Phi-3-mini-4k-instruct     guidance chat.py (tokenizer_config.json#L119); openvino.genai; ORT extensions
#   microsoft-Phi-3.5-mini-instruct      llama.cpp models/templates/microsoft-Phi-3.5-mini-instruct.jinja; ORT
#                                        extensions
#   microsoft-Phi-4-mini-instruct        guidance chat.py ([06/16/25] tokenizer_config.json#L104); an ORT extensions
#                                        test "From HuggingFace Python output for 'microsoft/Phi-4-mini-instruct'"
#   mistralai-Mistral-7B-Instruct-v0.2   guidance chat.py (tokenizer_config.json#L42); openvino.genai holds the same
#                                        text for Mistral-7B-Instruct-v0.1; mistralai/cookbook
#                                        concept-deep-dive/tokenization/chat_templates.md (the v1 format and its ids)
#   mistralai-Mistral-7B-Instruct-v0.3   a public copy labelled mistralai/Mistral-7B-Instruct-v0.3 (a chat-template
#                                        explorer app); other copies agree, one noting that it "emits the system message
#                                        only on a conversation whose last message is a user turn"
TEMPLATES = ROOT / "tests" / "fixtures" / "chat_templates"
SPECIAL_TOKENS = {"bos_token": "<|begin_of_text|>"}
CHAT_FORMATS = [  # (style, template file, what the template is rendered with)
    ("llama3", "meta-llama-Meta-Llama-3-8B-Instruct.jinja", {"bos_token": "<|begin_of_text|>"}),
    ("llama3.1", "meta-llama-Llama-3.1-8B-Instruct.jinja", {"bos_token": "<|begin_of_text|>"}),
    # 3.2's template asks transformers' strftime_now for today's date; ours is the fixed date 3.1 and 3.3 render
    ("llama3.1", "meta-llama-Llama-3.2-3B-Instruct.jinja", {"bos_token": "<|begin_of_text|>",
                                                            "date_string": "26 Jul 2024"}),
    ("qwen3", "Qwen-Qwen3-8B.jinja", {"enable_thinking": False}),
    ("gemma", "google-gemma-3-4b-it.jinja", {"bos_token": "<bos>"}),
    ("gemma", "google-gemma-2-9b-it.jinja", {"bos_token": "<bos>"}),
    ("phi-3", "microsoft-Phi-3-mini-4k-instruct.jinja", {"eos_token": "<|endoftext|>"}),
    ("phi-3.5", "microsoft-Phi-3.5-mini-instruct.jinja", {"eos_token": "<|endoftext|>"}),
    ("phi-4-mini", "microsoft-Phi-4-mini-instruct.jinja", {"eos_token": "<|endoftext|>"}),
    ("mistral-instruct", "mistralai-Mistral-7B-Instruct-v0.2.jinja", {"bos_token": "<s>", "eos_token": "</s>"}),
    ("mistral-instruct-v0.3", "mistralai-Mistral-7B-Instruct-v0.3.jinja", {"bos_token": "<s>", "eos_token": "</s>"}),
]
# messages whose texts start or end with whitespace: which template strips what is part of the format
UNTIDY = [{"role": "user", "content": " What is the capital of France?\n"},
          {"role": "assistant", "content": "\nParis. "},
          {"role": "user", "content": "And of Italy? "},
          {"role": "assistant", "content": " Rome.\n\n"}]
CONVERSATIONS = {"single turn": CONVERSATION[:2], "multi-turn": CONVERSATION, "untidy": UNTIDY,
                 "system": [SYSTEM, *CONVERSATION[:2]], "system, multi-turn": [SYSTEM, *CONVERSATION],
                 "empty system": [{"role": "system", "content": ""}, *CONVERSATION[:2]]}


def render_with_transformers(template: str, messages, add_generation_prompt=False, **variables) -> str:
    """The template's text for a conversation, rendered by transformers' own chat-template renderer (its Jinja
    sandbox, trim_blocks/lstrip_blocks, raise_exception, strftime_now, tojson)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template([messages], chat_template=template,
                                        add_generation_prompt=add_generation_prompt, **variables)
    return rendered[0]


def skipped_by_us(style: str, template: str, messages) -> bool:
    """Conversations whose rendering differs from the template on purpose (tested on their own below)."""
    has_system = messages[0]["role"] == "system"
    return has_system and (template.startswith("google-gemma-2")  # its template refuses a system message
                           or (style == "mistral-instruct-v0.3" and messages[-1]["role"] == "assistant"))


@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
@pytest.mark.parametrize("style_name, template_file, variables", CHAT_FORMATS)
def test_chat_format_renders_what_the_models_template_renders(style_name, template_file, variables, conversation):
    template, style = (TEMPLATES / template_file).read_text(), get_prompt_style(style_name)
    messages = CONVERSATIONS[conversation]
    if not skipped_by_us(style_name, template_file, messages):
        # a conversation to train on, then its last answer to be generated after the generation prompt
        assert joined(style.render(messages)) == render_with_transformers(template, messages, **variables)
    if not skipped_by_us(style_name, template_file, messages[:-1]):
        assert joined(style.render(messages[:-1], add_generation_prompt=True)) == \
            render_with_transformers(template, messages[:-1], add_generation_prompt=True, **variables)
    # the trained text is each answer (stripped where the template strips it) with its end-of-turn token
    trained = trained_text(style.render(messages))
    for answer in (m["content"] for m in messages if m["role"] == "assistant"):
        assert answer.strip() in trained


@pytest.mark.parametrize("style_name, template_file, variables", CHAT_FORMATS)
def test_chat_format_prompt_is_the_templates_generation_prompt(style_name, template_file, variables):
    template, style = (TEMPLATES / template_file).read_text(), get_prompt_style(style_name)
    text = render_with_transformers(template, [{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                    **variables)
    bos = variables.get("bos_token", "")
    assert style.prompt("Hi") == text[len(bos):].removeprefix(" ")  # BOS (and the space after it) are the tokenizer's


@pytest.mark.parametrize("style_name, answer_end", [
    ("llama3", "<|eot_id|>"), ("llama3.1", "<|eot_id|>"), ("qwen3", "<|im_end|>"), ("gemma", "<end_of_turn>"),
    ("phi-3", "<|end|>"), ("phi-3.5", "<|end|>"), ("phi-4-mini", "<|end|>"), ("mistral-instruct", "</s>"),
    ("mistral-instruct-v0.3", "</s>"),
])
def test_chat_format_trains_on_the_answer_and_its_end_of_turn_token(style_name, answer_end):
    segments = get_prompt_style(style_name).render(CONVERSATION)
    trained = [(str(text), isinstance(text, Special)) for text, flag in segments if flag]
    assert "".join(text for text, _ in trained).replace(" ", "").replace("<|endoftext|>", "") == \
        f"Paris.{answer_end}Rome,since1871.{answer_end}"
    assert (answer_end, True) in trained  # the end of turn is one special token, inserted by id


def test_llama31_always_opens_with_the_knowledge_cutoff_system_block():
    for name in ("llama3.1", "llama-3.2", "llama3.3"):
        text = joined(get_prompt_style(name).render(CONVERSATION[:2]))
        assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
                               "Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user")
    assert joined(get_prompt_style("llama3").render(CONVERSATION[:2])).startswith(
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>")
    # Llama 3.2's template, left to transformers, writes today's date: the fixed date is a choice (stable data)
    template = (TEMPLATES / "meta-llama-Llama-3.2-3B-Instruct.jinja").read_text()
    from datetime import datetime
    today = render_with_transformers(template, CONVERSATION[:2], bos_token="<|begin_of_text|>")
    assert f"Today Date: {datetime.now().strftime('%d %b %Y')}\n\n" in today


def test_qwen3_think_blocks_as_the_template_renders_them():
    template, style = (TEMPLATES / "Qwen-Qwen3-8B.jinja").read_text(), get_prompt_style("qwen3")
    thinking = [{"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4."},
                {"role": "user", "content": "And 3+3?"},
                {"role": "assistant", "content": "<think>\nThree and three.\n</think>\n\n6."}]
    for messages in (thinking, thinking[:2], CONVERSATION):
        assert joined(style.render(messages)) == render_with_transformers(template, messages, enable_thinking=False)
    text = joined(style.render(thinking))
    assert "Two and two" not in text and "<|im_start|>assistant\n4.<|im_end|>" in text  # history loses its reasoning
    # the last answer's own reasoning is trained; an empty think block is the generation prompt's, not trained
    assert trained_text(style.render(thinking)) == "4.<|im_end|><think>\nThree and three.\n</think>\n\n6.<|im_end|>"
    assert trained_text(style.render(CONVERSATION)) == "Paris.<|im_end|>Rome, since 1871.<|im_end|>"
    assert joined(style.render(CONVERSATION)).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\nRome, since 1871.<|im_end|>\n")
    assert style.prompt("Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert not joined(style.render(CONVERSATION)).startswith("<|im_start|>system")  # no default system (Qwen2.5 has)


def test_gemma2_template_refuses_a_system_message_ours_puts_it_first_as_gemma3_does():
    gemma2, gemma3 = [(TEMPLATES / f).read_text() for f in ("google-gemma-2-9b-it.jinja", "google-gemma-3-4b-it.jinja")]
    messages = [SYSTEM, *CONVERSATION]
    with pytest.raises(jinja2.exceptions.TemplateError, match="System role not supported"):
        render_with_transformers(gemma2, messages, bos_token="<bos>")
    text = joined(get_prompt_style("gemma").render(messages))
    assert text == render_with_transformers(gemma3, messages, bos_token="<bos>")
    assert text.startswith("<bos><start_of_turn>user\nAnswer in one line.\n\nWhat is the capital of France?"
                           "<end_of_turn>\n<start_of_turn>model\nParis.<end_of_turn>\n")


def test_phi3_and_phi35_differ_on_an_empty_system_message():
    messages = [{"role": "system", "content": ""}, *CONVERSATION[:2]]
    assert joined(get_prompt_style("phi-3").render(messages)).startswith("<|system|>\n<|end|>\n<|user|>")
    assert joined(get_prompt_style("phi-3.5").render(messages)).startswith("<|user|>\n")
    assert joined(get_prompt_style("phi-4-mini").render(messages, add_generation_prompt=True)) == \
        "<|system|><|end|><|user|>What is the capital of France?<|end|><|assistant|>Paris.<|end|><|assistant|>"


def test_mistral_v03_system_message_goes_before_the_last_instruction():
    template, style = (TEMPLATES / "mistralai-Mistral-7B-Instruct-v0.3.jinja").read_text(), \
        get_prompt_style("mistral-instruct-v0.3")
    tokens = {"bos_token": "<s>", "eos_token": "</s>"}
    prompt = [SYSTEM, *CONVERSATION[:3]]  # ends with the instruction to answer: exactly the template's text
    assert joined(style.render(prompt)) == render_with_transformers(template, prompt, **tokens) == (
        "<s>[INST] What is the capital of France?[/INST] Paris.</s>[INST] Answer in one line.\n\nAnd of Italy?[/INST]")
    # a conversation to train on: mistral_common's place for the system message; the HF template drops it there
    training = [SYSTEM, *CONVERSATION]
    assert "Answer in one line" not in render_with_transformers(template, training, **tokens)
    assert joined(style.render(training)) == joined(style.render(prompt)) + " Rome, since 1871.</s>"


def test_mistral_ids_are_mistrals_and_transformers_tokenization_of_the_template(shared_dir):
    """The ids of the rendered segments equal transformers' tokenization of the template's text with the Mistral
    SentencePiece tokenizer, and the ids Mistral's cookbook lists for mistral_common's encoding."""
    from transformers import AutoTokenizer

    directory = shared_dir / "tokenizers" / "mistral-v1"
    tokenizer, hf = Tokenizer(directory), AutoTokenizer.from_pretrained(directory)
    template, style = (TEMPLATES / "mistralai-Mistral-7B-Instruct-v0.2.jinja").read_text(), \
        get_prompt_style("mistral-instruct")
    cookbook = [{"role": "user", "content": "user message"}, {"role": "assistant", "content": "assistant message"},
                {"role": "user", "content": "new user message"}]
    (ids, _), = encode_segments(tokenizer, [style.render(cookbook)])
    assert ids == [1, 733, 16289, 28793, 2188, 2928, 733, 28748, 16289, 28793, 13892, 2928, 2, 733, 16289, 28793, 633,
                   2188, 2928, 733, 28748, 16289, 28793]  # <s> ▁[ INST ] ▁user ▁message ... ▁assistant ...
    # (not UNTIDY: on runs of spaces the tokenizer transformers converts from tokenizer.model merges "▁▁" where
    # SentencePiece itself, which mistral_common uses, does not: a difference of the two tokenizers, not of the text)
    for messages in (cookbook, CONVERSATION, [SYSTEM, *CONVERSATION]):
        text = render_with_transformers(template, messages, bos_token="<s>", eos_token="</s>")
        expected = hf(text, add_special_tokens=False).input_ids
        (ids, flags), = encode_segments(tokenizer, [style.render(messages)])
        assert ids == expected, hf.convert_ids_to_tokens(expected)
        assert hf.convert_ids_to_tokens([i for i, f in zip(ids, flags) if f])[0].startswith("\u2581")
    (ids, _), = encode_segments(tokenizer, [training_segments(style, CONVERSATION)])
    assert ids == hf(render_with_transformers(template, CONVERSATION, bos_token="<s>", eos_token="</s>"),
                     add_special_tokens=False).input_ids
    prompt = CONVERSATION[:3]
    expected = hf(render_with_transformers(template, prompt, bos_token="<s>", eos_token="</s>"),
                  add_special_tokens=False).input_ids
    assert encode_prompt(tokenizer, style, prompt).tolist() == expected
    trained = [hf.convert_ids_to_tokens(i) for i, f in zip(*encode_segments(tokenizer, [style.render(CONVERSATION)])[0])
               if f]
    assert trained[0] == "\u2581Paris"  # the first answer token Mistral trained on, not "Paris"


def test_every_style_ends_its_answers_with_a_token_generation_stops_at():
    for style in prompt_styles.values():
        assert set(style.end_tokens) <= set(END_OF_TURN_TOKENS), style.name


def test_style_from_model_name_knows_every_instruct_model_of_the_registry():
    from lit_gpt.registry import name_to_config

    for name in name_to_config:
        if re_instruct(name):
            assert style_from_model_name(name), name


def re_instruct(name: str) -> bool:
    import re

    return bool(re.search(r"instruct|chat|-it$", name, flags=re.IGNORECASE))


def test_style_from_chat_template_is_none_for_unknown_templates():
    assert style_from_chat_template(None) is None and style_from_chat_template("{{ messages }}") is None
