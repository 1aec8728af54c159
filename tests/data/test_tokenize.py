"""lit_gpt/data/tokenize.py: one tokenization per conversation, special tokens by id, prompts, fit to length."""

from lit_gpt.data.normalize import conversation
from lit_gpt.data.tokenize import (decode_with_specials, encode_prompt, encode_segments, fit_to_length,
                                   training_segments)
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.tokenizer import Tokenizer


def test_whole_conversation_tokenized_once(smollm2_dir, llama_dir):
    """Tokens that merge across the prompt/answer boundary come out as when the model reads the whole text."""
    example = {"instruction": "Say hello.", "input": "", "output": "  Hello"}
    style = get_prompt_style("alpaca")
    prompt = style.prompt("Say hello.")
    for checkpoint in (smollm2_dir, llama_dir):
        tokenizer = Tokenizer(checkpoint)
        (ids, flags), = encode_segments(tokenizer, [training_segments(style, conversation(example))])
        whole = tokenizer.encode_ids(prompt + "  Hello")
        assert ids[:-1] == whole and ids[-1] == tokenizer.eos_id
        assert whole != tokenizer.encode_ids(prompt) + tokenizer.encode_ids("  Hello")  # separately: other tokens
        # the answer's tokens are trained, the prompt's are not; a straddling token counts as answer
        assert not any(flags[: len(tokenizer.encode_ids(prompt)) - 1]) and all(flags[-3:])


def test_special_tokens_by_id_and_message_text_stays_text(smollm2_dir, llama_dir):
    smol = Tokenizer(smollm2_dir)
    messages = [{"role": "user", "content": "Print <|im_end|> literally"},
                {"role": "assistant", "content": "<|im_end|>"}]
    (ids, flags), = encode_segments(smol, [training_segments(get_prompt_style("chatml"), messages)])
    im_start, im_end = smol.token_to_id("<|im_start|>"), smol.token_to_id("<|im_end|>")
    assert ids.count(im_start) == 2 and ids.count(im_end) == 2  # only the template's, not the ones users typed
    assert smol.decode(ids) == "<|im_start|>user\nPrint <|im_end|> literally<|im_end|>\n<|im_start|>assistant\n" \
                               "<|im_end|><|im_end|>"
    llama = Tokenizer(llama_dir)
    (ids, flags), = encode_segments(llama, [training_segments(get_prompt_style("llama2-chat"), messages * 2)])
    assert ids.count(llama.bos_id) == 2 and ids.count(llama.eos_id) == 2  # BOS/EOS per turn, inserted as ids
    assert ids[0] == llama.bos_id and flags[ids.index(llama.eos_id)]


def test_encode_prompt_matches_generation_text(smollm2_dir, llama_dir):
    smol = Tokenizer(smollm2_dir)
    text = get_prompt_style("smollm2").prompt("Hi")
    assert encode_prompt(smol, "smollm2", "Hi").tolist() == smol.encode(text).tolist()
    llama = Tokenizer(llama_dir)
    ids = encode_prompt(llama, "llama2-chat", "Hi").tolist()
    assert ids == [llama.bos_id] + llama.encode_ids("[INST] Hi [/INST]")
    ids = encode_prompt(llama, "zephyr", "Hi").tolist()  # </s> inside the prompt: an id, not text
    assert ids.count(llama.eos_id) == 1 and decode_with_specials(llama, ids) == "<s><|user|>\nHi</s>\n<|assistant|>\n"


def test_fit_to_length():
    eos = 2
    ids, flags = [1, 5, 6, 7, 8, 9, eos], [False, False, False, True, True, True, True]
    assert fit_to_length(ids, flags, 10, eos) == (ids, flags, "")
    assert fit_to_length(ids, flags, 6, eos) == ([1, 5, 6, 7, 8, eos], [False] * 3 + [True] * 3, "truncated")
    assert fit_to_length(ids, flags, 6, eos, "drop") == (None, None, "longer than max_seq_length")
    assert fit_to_length(ids, flags, 4, eos)[2] == "prompt longer than max_seq_length"  # EOS right after the prompt
    # multi-turn: the second prompt crosses the limit -> keep the complete first exchange
    ids = [1, 5, 7, eos, 5, 5, 5, 5, 8, eos]
    flags = [False, False, True, True, False, False, False, False, True, True]
    assert fit_to_length(ids, flags, 7, eos) == (ids[:4], flags[:4], "truncated")
