import json

import pytest
import torch
import torch.nn.functional as F

import lit_gpt.infer.answer

from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.infer.load import load_model_for_inference
from lit_gpt.quality.heuristics import HeuristicConfig, heuristic_flags
from lit_gpt.quality.ifd import IFDScorer
from lit_gpt.quality.judge import ALPAGASUS_PROMPT, CURATION_PROMPT, Judge, digit_token_ids, expected_score, parse_score
from lit_gpt.quality.rows import ScoringRow, fit_ids, to_scoring_row
from lit_gpt.quality.scoring import ScoreCache, score_examples, select_rows
from lit_gpt.quality.synthetic import (InstructionFilter, filter_candidates, instruction_rejection,
                                       parse_backtranslated_instruction, parse_generated_tasks)
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError


@pytest.fixture(scope="module")
def alpaca_rows(shared_dir):
    return json.loads((shared_dir / "datasets/alpaca/alpaca_random_9k.json").read_text())[:50]


@pytest.fixture(scope="module")
def judge_parts(tiny_checkpoint_dir):
    """A random tiny model with SmolLM2's tokenizer (ChatML prompt style from its chat template)."""
    return load_model_for_inference(tiny_checkpoint_dir("smollm2", weights=True, block_size=384), "cpu", "32-true")


@pytest.fixture(scope="module")
def gpt2_parts(tiny_checkpoint_dir):
    """A random tiny model with GPT-2's tokenizer: no BOS, alpaca prompt style (a base model)."""
    return load_model_for_inference(tiny_checkpoint_dir("gpt2", weights=True, block_size=256), "cpu", "32-true")


# ---- score parsing ------------------------------------------------------------------------------------------------
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


# ---- expected score from digit probabilities -----------------------------------------------------------------------
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


# ---- the judge: batching and padding -------------------------------------------------------------------------------
def test_judge_batched_equals_one_by_one_and_hand_computation(judge_parts, alpaca_rows):
    model, tokenizer, style = judge_parts
    assert style.name == "smollm2"  # picked from the chat template
    judge = Judge(model, tokenizer, style)
    examples = [to_scoring_row(i, row) for i, row in enumerate(alpaca_rows[:4])]
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
    long = ScoringRow(0, "Summarize this.", "", "word " * 1000)
    ids, truncated = judge.prompt_ids(long)
    assert truncated and len(ids) == 200 and tokenizer.decode(ids).endswith("assistant\nScore: ")
    assert judge.score([long])[0]["truncated"] is True
    assert fit_ids([1, 2, 3], 5) == ([1, 2, 3], False)
    assert fit_ids(list(range(10)), 4, head_fraction=0.5) == ([0, 1, 8, 9], True)


def test_judge_generate_mode_parses_text(judge_parts, monkeypatch):
    model, tokenizer, style = judge_parts
    judge = Judge(model, tokenizer, style, score_from="generate", max_new_tokens=4)
    results = judge.score([ScoringRow(0, "Name a color.", "", "Blue.")])
    assert set(results[0]) == {"score", "answer", "truncated"}  # random weights: the answer is gibberish
    assert results[0]["score"] == parse_score(results[0]["answer"])
    monkeypatch.setattr(lit_gpt.infer.answer, "generate", lambda *a, **k: torch.tensor(tokenizer.encode_ids(" 4.5\nGood.")))
    assert judge.score([ScoringRow(0, "Name a color.", "", "Blue.")])[0]["score"] == 4.5
    with pytest.raises(UserError):
        Judge(model, tokenizer, style, score_from="sampling")


# ---- IFD ----------------------------------------------------------------------------------------------------------
def test_ifd_matches_hand_computation(gpt2_parts, alpaca_rows):
    model, tokenizer, style = gpt2_parts
    assert style.name == "alpaca" and not tokenizer.use_bos
    scorer = IFDScorer(model, tokenizer, style)
    examples = [to_scoring_row(i, row) for i, row in enumerate(alpaca_rows[:5])]
    examples.append(ScoringRow(5, "Say nothing.", "", ""))
    results = scorer.score(examples)
    assert results[5] == {"score": None, "reason": "empty_response"}

    def mean_ce(ids: list[int], start: int) -> float:
        with torch.inference_mode():
            logits = model(torch.tensor([ids]))[0]
        return F.cross_entropy(logits[start - 1:-1], torch.tensor(ids[start:])).item()

    for example, result in zip(examples[:5], results):
        prompt = tokenizer.encode(style.prompt(example.instruction, example.input)).tolist()
        response = tokenizer.encode_ids(example.output)
        conditioned = mean_ce(prompt + response, len(prompt))
        alone = mean_ce([tokenizer.eos_id] + response, 1)  # GPT-2: <|endoftext|> starts a document
        assert result["loss_conditioned"] == pytest.approx(conditioned, rel=1e-4)
        assert result["loss_response"] == pytest.approx(alone, rel=1e-4)
        assert result["score"] == pytest.approx(conditioned / alone, rel=1e-4)
        assert result["truncated"] is False


def test_ifd_truncates_long_pairs(gpt2_parts):
    model, tokenizer, style = gpt2_parts
    scorer = IFDScorer(model, tokenizer, style, max_seq_length=64)
    conditioned, start, alone, truncated = scorer.sequences(ScoringRow(0, "Explain. " * 40, "", "Because. " * 80))
    assert truncated and len(conditioned) == 64 and len(alone) == 64 - start + 1
    assert tokenizer.decode(conditioned[:start]).endswith("### Response:\n")
    assert scorer.score([ScoringRow(0, "Explain. " * 40, "", "Because. " * 80)])[0]["score"] > 0


# ---- heuristics ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("instruction", "output", "flags"), [
    ("Name a primary color.", "Blue.", []),
    ("What is 2 + 2?", "4", []),  # short answers are fine
    ("Write a haiku.", "", ["empty_response"]),
    ("Write a haiku.", "   \n", ["empty_response"]),
    ("Write a haiku.", ".", ["too_short"]),
    ("Write a haiku.", "?!", ["too_short"]),
    ("Tell me a secret.", "As an AI language model, I do not have secrets.", ["refusal"]),
    ("Hack this site.", "I'm sorry, but I can't help with that.", ["refusal"]),
    ("Write a letter to a friend.", "Dear Sam, I cannot wait to see you next week!", []),  # not at the start
    ("Write an excuse for being late.", "I apologize for being late to the meeting today.", []),  # a letter
    ("Find a synonym for deny.", "I can't repudiate my fears.", []),
    ("Set up a reminder for 8 am.", "I cannot set up a reminder for 8 am tomorrow.", ["refusal"]),
    ("Create a graphic.", "Sorry, the task requires a visual output which cannot be generated by the model.",
     ["refusal"]),
    ("Paint a picture.", "No output because this instruction requires a visual output.", ["refusal"]),
    ("Automate it.", "The steps are manual. The GPT model cannot perform such actions.", ["refusal"]),
    ("Translate into emojis.", "💃🏻🌃🕺🏼", []),
    ("Divide 887 by 3.", "887 / 3 = 295.666666666666667", []),
    ("Write VB code.", "End Function\n\n\n' Next", []),
    ("Benchmark it.", "Times in ms: " + "10 " * 12 + "for the runs", []),
    ("Continue the pattern.", "#$%^ a &*() !@#$ b %^&* ()_+ {}|: c <>?~ `-=[ ]", ["low_letter_share"]),
    ("Compute.", "x = (5 + 3) * 2 = 16", []),  # maths is not noise
    ("Describe the sky.", "It is soooooooooooooooo blue", ["repeated_chars"]),
    ("Cheer.", "Hooray!!!!!!!!!!!!!!!!", ["repeated_chars"]),
    ("Make a table.", "| a | b |\n|-------------------|--------------------|\n| 1 | 2 |", []),
    ("Describe the sea.", "the sea is " + "blue " * 10 + "and deep", ["repeated_words"]),
    ("Sing.", "Deck the halls, fa la la la la la la la la", []),
    ("Repeat after me: hello there", "Repeat after me: hello there!", ["copies_instruction"]),
])
def test_heuristic_flags(instruction, output, flags):
    assert heuristic_flags(instruction, "", output) == flags


def test_heuristic_flags_length_limits():
    assert heuristic_flags("Write an essay.", "", " ".join(f"w{i}" for i in range(30)), HeuristicConfig(max_response_words=20)) == ["too_long"]
    assert heuristic_flags("Answer.", "", "ok", HeuristicConfig(min_response_chars=5)) == ["too_short"]


# ---- resumable cache ----------------------------------------------------------------------------------------------
class CountingScorer:
    def __init__(self):
        self.seen = []

    def score(self, batch):
        self.seen += [e.index for e in batch]
        return [{"score": float(len(e.output) % 6)} for e in batch]


def test_score_cache_resumes_and_detects_changes(tmp_path, alpaca_rows):
    examples = [to_scoring_row(i, row) for i, row in enumerate(alpaca_rows[:20])]
    path = tmp_path / "out.json.alpagasus.scores.jsonl"
    scorer = CountingScorer()
    partial = score_examples(examples, scorer, ScoreCache(path, "alpagasus", {"k": 1}), batch_size=3, limit=7)
    assert sorted(partial) == list(range(7)) and sorted(scorer.seen) == list(range(7))
    with open(path, "a") as f:
        f.write('{"index": 9, "hash": "abc", "res')  # the line being written when the run was killed
    scorer = CountingScorer()
    examples[2] = ScoringRow(2, examples[2].instruction, "", "changed output")  # edited row: scored again
    full = score_examples(examples, scorer, ScoreCache(path, "alpagasus", {"k": 1}), batch_size=3)
    assert sorted(scorer.seen) == [2] + list(range(7, 20))
    assert sorted(full) == list(range(20)) and full[2]["score"] == float(len("changed output") % 6)
    with pytest.raises(UserError, match="other settings"):
        ScoreCache(path, "alpagasus", {"k": 2})
    assert ScoreCache(path, "alpagasus", {"k": 2}, restart=True).done == {}


def test_to_example_keeps_rows_the_pipeline_rejects():
    assert to_scoring_row(0, {"instruction": "Do it.", "output": ""}) == ScoringRow(0, "Do it.", "", "")
    lima = to_scoring_row(1, {"conversations": ["Hi?", "Hello!", "Bye?", "Bye!"]})
    assert (lima.instruction, lima.output) == ("Hi?", "Hello!")


# ---- filtering rule -----------------------------------------------------------------------------------------------
def test_select_rows_rules():
    rows = [{"score_alpagasus": s} for s in [5.0, 4.5, 3.0, None, 4.9, 4.5, 2.0, 4.0]]
    kept, dropped = select_rows(rows, "alpagasus", min_score=4.5)
    assert kept == [0, 1, 4, 5] and dropped == {"below_min_score": [2, 6, 7], "unscored": [3]}
    kept, dropped = select_rows(rows, "alpagasus", top_fraction=0.25)  # round(0.25 * 8) = 2
    assert kept == [0, 4] and dropped["below_top_fraction"] == [1, 5, 7, 2, 6]
    kept, _ = select_rows(rows, "alpagasus", top_fraction=0.5)  # tie at 4.5: the earlier row wins
    assert kept == [0, 1, 4, 5]
    kept, dropped = select_rows(rows, "alpagasus", top_fraction=0.25, max_score=4.9)
    assert kept == [1, 4]
    assert dropped["above_max_score"] == [0]
    with pytest.raises(UserError, match="exactly one"):
        select_rows(rows, "alpagasus", min_score=4, top_fraction=0.1)
    with pytest.raises(UserError, match="score_ifd"):
        select_rows(rows, "ifd", min_score=1)
    flagged = [{"heuristics_pass": 1, "heuristics_flags": []}, {"heuristics_pass": 0, "heuristics_flags": ["refusal"]},
               {"heuristics_pass": 0, "heuristics_flags": ["too_short", "repeated_chars"]}]
    kept, dropped = select_rows(flagged, "heuristics")
    assert kept == [0] and dropped == {"refusal": [1], "too_short": [2], "repeated_chars": [2]}


# ---- Self-Instruct filters and parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize(("instruction", "reason"), [
    ("Give three tips for staying healthy.", None),
    ("Name three colors", None),  # 3 words is the minimum
    ("Summarize this", "too_few_words"),
    ("word " * 151, "too_many_words"),
    ("Describe the image below in detail.", "blacklisted_word"),
    ("Please go to the store and buy milk.", "blacklisted_word"),
    ("Draw a cat with ASCII characters.", "blacklisted_word"),
    ("Create a flowchart of the process.", "blacklisted_word"),
    ("Explain what a mapping function does.", None),  # whole words only: "mapping" is not "map"
    ("Write a program that sorts a list.", "asks_for_program"),
    ("- Explain photosynthesis briefly.", "starts_with_punctuation"),
    ("\"Explain photosynthesis briefly.\"", "starts_with_punctuation"),
    ("Émile asks: explain photosynthesis briefly.", "non_ascii_start"),
    ("", "empty_instruction"),
])
def test_instruction_rejection(instruction, reason):
    assert instruction_rejection(instruction) == reason


def test_filter_candidates_against_pool_and_batch(alpaca_rows):
    pool = [r["instruction"] for r in alpaca_rows]
    near_copy = pool[0].replace("Summarize", "Summarise")  # ROUGE-L 10/11 to the pool's first instruction
    candidates = [
        {"instruction": near_copy, "input": "", "output": "A song."},
        {"instruction": "Explain how a rainbow forms after a storm.", "input": "", "output": "Light refracts."},
        {"instruction": "Explain how a rainbow forms after the storm.", "input": "", "output": "Sunlight."},  # dup
        {"instruction": "List three uses of copper in industry.", "input": "", "output": ""},
        {"instruction": "Plot the temperature over a year.", "input": "", "output": "..."},
        {"instruction": "Translate the sentence into French.", "input": "I like tea.", "output": "J'aime le thé."},
    ]
    accepted, rejected = filter_candidates(candidates, pool)
    assert [c["instruction"] for c in accepted] == [candidates[1]["instruction"], candidates[5]["instruction"]]
    assert [reason for _, reason in rejected] == ["empty_output", "blacklisted_word", "similar_to_pool",
                                                  "similar_to_pool"]
    loose, _ = filter_candidates(candidates[:1], pool, InstructionFilter(rouge_threshold=0.95))
    assert len(loose) == 1


def test_parse_generated_tasks():
    text = ("### Task 4\nInstruction: Name a fruit that is yellow.\nInput: <noinput>\nOutput: A banana.\n\n"
            "### Task 5\nInstruction: Classify the animal.\nInput: Whale\nOutput: Mammal\n\n"
            "### Task 6\nGarbage without fields\n\n"
            "### Task 7\nInstruction: Write a short poem.\nInput: <noinput>\nOutput: Roses are")
    tasks = parse_generated_tasks(text, complete=False)  # cut off by the token limit: the last one goes
    assert tasks == [{"instruction": "Name a fruit that is yellow.", "input": "", "output": "A banana."},
                     {"instruction": "Classify the animal.", "input": "Whale", "output": "Mammal"}]
    assert len(parse_generated_tasks(text, complete=True)) == 3
    assert parse_generated_tasks("no tasks here") == []


def test_parse_backtranslated_instruction():
    assert parse_backtranslated_instruction(" Summarize the text.\n\nMore chatter") == "Summarize the text."
    assert parse_backtranslated_instruction("Instruction: \"How do I bake bread?\"") == "How do I bake bread?"
    assert parse_backtranslated_instruction("   ") == ""
