"""lit_gpt/infer/answer.py: the one "answer these prompts" function every caller uses."""

import pytest
import torch

from helpers import tiny_config
from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.infer.answer import Answer, answer_prompts, continue_ids, encode_conversation
from lit_gpt.infer.sampling import generate
from lit_gpt.model import GPT
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.tokenizer import Tokenizer


def _model_and_tokenizer(tiny_checkpoint_dir):
    checkpoint = tiny_checkpoint_dir("smollm2")
    tokenizer = Tokenizer(checkpoint)
    torch.manual_seed(0)
    return GPT(tiny_config(vocab_size=tokenizer.vocab_size, block_size=48)).eval(), tokenizer


@pytest.mark.slow
def test_answers_equal_the_sampling_loop_greedy(tiny_checkpoint_dir):
    model, tokenizer = _model_and_tokenizer(tiny_checkpoint_dir)
    prompts = [{"instruction": "Name a colour."}, {"instruction": "Add the numbers.", "input": "2 and 3"}]
    answers = answer_prompts(model, tokenizer, "chatml", prompts, max_new_tokens=6)
    for prompt, answer in zip(prompts, answers):
        ids = encode_prompt(tokenizer, "chatml", prompt["instruction"], prompt.get("input", ""))
        expected = generate(model, ids, 6, temperature=0.0, eos_id=tokenizer.stop_ids)
        assert answer.text == tokenizer.decode(expected, skip_special_tokens=True).strip()
        assert answer.finished == (expected.numel() < 6)


def test_continuation_is_clipped_to_the_context(tiny_checkpoint_dir):
    model, tokenizer = _model_and_tokenizer(tiny_checkpoint_dir)
    long_prompt = list(range(100, 100 + 45))  # 45 of the 48 positions
    answer = continue_ids(model, tokenizer, long_prompt, max_new_tokens=50)  # room for 3: no error, 3 at most
    expected = generate(model, torch.tensor(long_prompt), 3, temperature=0.0, eos_id=tokenizer.stop_ids)
    assert answer == Answer(tokenizer.decode(expected, skip_special_tokens=True), expected.numel() < 3)
    assert continue_ids(model, tokenizer, list(range(100, 148)), max_new_tokens=5) == Answer("", False)


def test_encode_conversation_drops_the_oldest_exchange_first(tiny_checkpoint_dir):
    _, tokenizer = _model_and_tokenizer(tiny_checkpoint_dir)
    style = get_prompt_style("chatml")
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(3):
        messages += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]
    messages.append({"role": "user", "content": "last"})
    full, kept = encode_conversation(tokenizer, style, messages, max_tokens=10_000)
    assert kept == messages
    ids, kept = encode_conversation(tokenizer, style, messages, max_tokens=full.numel() - 1)
    assert kept[0] == messages[0] and kept[1:] == messages[3:] and ids.numel() < full.numel()


def test_encode_conversation_drops_oldest_exchanges(base):
    tokenizer, style = Tokenizer(base), get_prompt_style("smollm2")
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(3):
        messages += [{"role": "user", "content": f"question {i} " * 10},
                     {"role": "assistant", "content": f"answer {i}"}]
    messages.append({"role": "user", "content": "last question"})
    full, kept = encode_conversation(tokenizer, style, messages, max_tokens=10_000)
    assert kept == messages
    ids, kept = encode_conversation(tokenizer, style, messages, max_tokens=full.numel() - 1)
    assert kept == messages[:1] + messages[3:] and ids.numel() < full.numel()  # system kept, oldest exchange gone
    ids, kept = encode_conversation(tokenizer, style, messages, max_tokens=5)
    assert ids is None


def test_prompt_style_plain_feeds_bos_and_the_raw_text(tiny_checkpoint_dir, monkeypatch):
    # generate/base.py --prompt_style plain, as Lit-GPT's generate/base.py: no template, BOS per the tokenizer
    import lit_gpt.infer.answer as answer

    checkpoint = tiny_checkpoint_dir("llama-2", weights=True)
    fed = {}
    monkeypatch.setattr(answer, "generate_samples", lambda model, tokenizer, ids, **kw: fed.update(ids=ids, **kw))
    prompt = "Q: What is the capital of France?\nA:"
    answer.generate_answers(checkpoint, None, prompt, prompt_style="plain", max_new_tokens=4, temperature=0.0,
                            top_k=None, top_p=None, num_samples=1, precision="32-true", seed=0, device="cpu")
    tokenizer = Tokenizer(checkpoint)
    assert fed["ids"].tolist() == tokenizer.encode(prompt).tolist() and fed["ids"][0] == tokenizer.bos_id == 1
    assert fed["stop_strings"] == ()
    answer.generate_answers(checkpoint, None, prompt, max_new_tokens=4, temperature=0.0, top_k=None, top_p=None,
                            num_samples=1, precision="32-true", seed=0, device="cpu")  # the checkpoint's own: alpaca
    alpaca = encode_prompt(tokenizer, "alpaca", prompt).tolist()
    assert fed["ids"].tolist() == alpaca != tokenizer.encode(prompt).tolist()


@pytest.mark.slow
def test_batched_answers_equal_one_at_a_time_and_stop_at_stop_strings(tiny_checkpoint_dir):
    from lit_gpt.infer.answer import continue_batch

    model, tokenizer = _model_and_tokenizer(tiny_checkpoint_dir)
    prompts = [encode_prompt(tokenizer, "chatml", q) for q in ("Hi.", "Name three colours of the rainbow, please.",
                                                               "Why?", "Add the numbers two and three.", "Go")]
    alone = [continue_ids(model, tokenizer, p, 8) for p in prompts]
    assert continue_batch(model, tokenizer, prompts, 8, batch_size=2) == alone  # batches of 2, 2, 1
    # a stop string cut from the text it ends: take a piece of the 3rd answer's text
    text = alone[2].text
    stop = text[3:6]
    assert stop and text.find(stop) == 3
    stopped = continue_batch(model, tokenizer, prompts, 8, batch_size=4, stop_strings=[stop])
    assert stopped[2] == Answer(text[:3], True)
    assert all(s.text == a.text[:a.text.find(stop)] if stop in a.text else s == a for s, a in zip(stopped, alone))
