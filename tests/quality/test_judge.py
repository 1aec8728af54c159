"""lit_gpt/quality/judge.py: parsing a judge's score, the expected score from digit probabilities, the batched judge."""

import pytest
import torch

import lit_gpt.infer.answer
from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.infer.load import load
from lit_gpt.quality.judge import ALPAGASUS_PROMPT, CURATION_PROMPT, Judge, digit_token_ids, expected_score, parse_score
from lit_gpt.quality.scored_records import ScoringExample, fit_ids, scoring_example
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError


@pytest.fixture(scope="module")
def judge_parts(tiny_checkpoint_dir):
    """A random tiny model with SmolLM2's tokenizer (ChatML prompt style from its chat template)."""
    loaded = load(tiny_checkpoint_dir("smollm2", weights=True, block_size=384), device="cpu", precision="32-true")
    return loaded.model, loaded.tokenizer, loaded.style


# ---- score parsing ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("answer", "expected"), [
    ("Score: 4.5", 4.5),
    ("4", 4.0),
    ("5\nThe response is accurate and complete.", 5.0),
    ("4/5", 4.0),
    ("3.5/5 - mostly correct", 3.5),
    ("I'd rate this a 3 out of 5", 3.0),
    ("I would rate it 4.5/5.", 4.5),
    ("**5**", 5.0),
    ("**Score:** 2", 2.0),
    ("Rating: four", 4.0),
    ("Four and a half.", 4.5),
    ("five", 5.0),
    ("Score: 4.", 4.0),
    ("Score:5.0", 5.0),
    ("8/10", 4.0),  # another scale, rescaled
    ("10/10", 5.0),
    ("On a scale of 0 to 5, I give it a 4.", 4.0),  # the restated scale is not the score
    ("Score (0-5): 3\nExplanation: the answer has 2 errors", 3.0),
    ("1. Accuracy: the response contains 2 errors.\nOverall score: 2", 2.0),
    ("This one deserves 4", 4.0),  # "one" is not a score when a digit is there
    ("The response is accurate. 5", 5.0),
    ("0", 0.0),
    ("Score: 7", None),  # out of range
    ("-1", None),
    ("12/10", None),
    ("Score: N/A", None),
    ("I cannot evaluate this response.", None),
    ("", None),
    (None, None),
    ("The response is excellent!", None),
])
def test_parse_score(answer, expected):
    assert parse_score(answer) == expected


def test_parse_score_one_to_five_scale():
    assert parse_score("Score: 0", low=1, high=5) is None
    assert parse_score("Score: 1", low=1, high=5) == 1.0


# ---- expected score from digit probabilities -------------------------------------------------------------------------
def test_expected_score_by_hand():
    digit_ids = {0: [0], 1: [1], 2: [2], 3: [3], 4: [4], 5: [5, 6]}  # "5" and " 5" both spell five
    probs = torch.tensor([[0.1, 0.0, 0.0, 0.0, 0.2, 0.3, 0.1, 0.3, 0.0, 0.0],
                          [0.1] * 10])
    logits = torch.log(probs) + 3.0  # any shift: softmax is invariant
    scores, mass = expected_score(logits, digit_ids)
    # row 0: p(0)=.1, p(4)=.2, p(5)=.3+.1=.4, mass .7 -> (0*.1 + 4*.2 + 5*.4) / .7 = 2.8 / .7 = 4
    # row 1: p(0..4)=.1 each, p(5)=.2, mass .7 -> (0+1+2+3+4)*.1 + 5*.2 = 2.0 -> 2.0 / .7
    assert scores.tolist() == pytest.approx([4.0, 2.0 / 0.7], abs=1e-5)
    assert mass.tolist() == pytest.approx([0.7, 0.7], abs=1e-5)
    # tiny mass (the judge wanted another token) is still a proper expectation
    peaked = torch.full((1, 10), -1e4)
    peaked[0, 8] = 0.0
    peaked[0, 3] = -50.0
    score, mass = expected_score(peaked, digit_ids)
    assert score.item() == pytest.approx(3.0) and mass.item() < 1e-20


@pytest.mark.parametrize("name", ["smollm2", "gpt2", "llama-2"])
def test_digit_token_ids_on_real_tokenizers(shared_dir, name):
    tokenizer = Tokenizer(shared_dir / "tokenizers" / name)
    prefix, ids = digit_token_ids(tokenizer, 0, 5)
    assert list(ids) == [0, 1, 2, 3, 4, 5]
    for digit, variants in ids.items():
        assert all(tokenizer.decode([i]).strip() == str(digit) for i in variants)
        # the natural tokenization of "Score: d" is the prefix plus one of the digit's tokens
        full = tokenizer.encode_ids(f"Score: {digit}")
        assert full[:-1] == prefix and full[-1] in variants
    assert len({i for v in ids.values() for i in v}) == sum(len(v) for v in ids.values())  # no id for two digits


# ---- the judge: batching and padding ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_judge_batched_equals_one_by_one_and_hand_computation(judge_parts, alpaca_rows):
    model, tokenizer, style = judge_parts
    assert style.name == "smollm2"  # picked from the chat template
    judge = Judge(model, tokenizer, style)
    examples = [scoring_example(i, row) for i, row in enumerate(alpaca_rows[:4])]
    batched = judge.score(examples)
    single = [judge.score([e])[0] for e in examples]
    assert [r["score"] for r in batched] == pytest.approx([r["score"] for r in single], abs=1e-4)
    assert all(0.0 <= r["score"] <= 5.0 and 0.0 < r["digit_mass"] <= 1.0 for r in batched)
    # by hand for example 0: the judge's prompt in ChatML with the answer begun, logits at its last position
    request = ALPAGASUS_PROMPT.format(examples[0].instruction, examples[0].input, examples[0].output)
    assert "[Response]" in request and "0 to 5" in request
    prefix, digit_ids = digit_token_ids(tokenizer, 0, 5)  # "Score:" and, for SmolLM2, the space token before digits
    ids = encode_prompt(tokenizer, style, request).tolist() + prefix
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\nScore: ")
    with torch.inference_mode():
        logits = model(torch.tensor([ids]))[0, -1]
    probs = torch.softmax(logits, -1)
    p = torch.tensor([probs[v].sum() for v in digit_ids.values()])
    assert batched[0]["score"] == pytest.approx(float((p * torch.arange(6)).sum() / p.sum()), abs=1e-4)
    # curation prompt: 1-5 scale
    curation = Judge(model, tokenizer, style, rating=CURATION_PROMPT).score(examples[:2])
    assert all(1.0 <= r["score"] <= 5.0 for r in curation)


def test_judge_truncates_long_prompts_keeping_the_question(judge_parts):
    model, tokenizer, style = judge_parts
    judge = Judge(model, tokenizer, style, max_seq_length=200)
    long = ScoringExample(0, "Summarize this.", "", "word " * 1000)
    ids, truncated = judge.prompt_ids(long)
    assert truncated and len(ids) == 200 and tokenizer.decode(ids).endswith("assistant\nScore: ")
    assert judge.score([long])[0]["truncated"] is True
    assert fit_ids([1, 2, 3], 5) == ([1, 2, 3], False)
    assert fit_ids(list(range(10)), 4, head_fraction=0.5) == ([0, 1, 8, 9], True)


def test_judge_generate_mode_parses_text(judge_parts, monkeypatch):
    model, tokenizer, style = judge_parts
    judge = Judge(model, tokenizer, style, score_from="generate", max_new_tokens=4)
    results = judge.score([ScoringExample(0, "Name a color.", "", "Blue.")])
    assert set(results[0]) == {"score", "answer", "truncated"}  # random weights: the answer is gibberish
    assert results[0]["score"] == parse_score(results[0]["answer"])
    monkeypatch.setattr(lit_gpt.infer.answer, "generate_batch",
                        lambda model, prompts, *a, **k: [tokenizer.encode_ids(" 4.5\nGood.")] * len(prompts))
    assert judge.score([ScoringExample(0, "Name a color.", "", "Blue.")])[0]["score"] == 4.5
    with pytest.raises(UserError):
        Judge(model, tokenizer, style, score_from="sampling")
