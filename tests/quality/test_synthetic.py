"""lit_gpt/quality/synthetic.py: Self-Instruct and instruction backtranslation, their filters and parsers.

The tiny random model's text is gibberish, so the filtering pipeline is also checked on injected generations."""

import json

import pytest

import lit_gpt.quality.synthetic as quality
from helpers import load_script
from lit_gpt.infer.answer import Answer
from lit_gpt.infer.load import load
from lit_gpt.quality.judge import CURATION_PROMPT, Judge
from lit_gpt.quality.synthetic import (BacktranslateConfig, InstructionFilter, SelfInstructConfig, backtranslate,
                                       filter_candidates, instruction_rejection, parse_backtranslated_instruction,
                                       parse_generated_tasks, read_unlabelled, self_instruct)
from lit_gpt.utils import UserError


# ---- Self-Instruct filters and parsing -------------------------------------------------------------------------------
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


# ---- Self-Instruct and backtranslation on injected generations -------------------------------------------------------
@pytest.fixture(scope="module")
def parts(model_dir):
    loaded = load(model_dir, device="cpu", precision="32-true")
    return loaded.model, loaded.tokenizer, loaded.style


CANNED = [
    # request 1: one good task, one naming a picture, one near-copy of a seed, one good with input
    " Give two reasons why people keep journals.\nInput: <noinput>\nOutput: Memory and reflection.\n\n"
    "### Task 5\nInstruction: Describe the picture of a sunset.\nInput: <noinput>\nOutput: Orange sky.\n\n"
    "### Task 6\nInstruction: Summarise the lyrics of Ed Sheeran's song 'Shape of You'?\nInput: <noinput>\n"
    "Output: A love song.\n\n"
    "### Task 7\nInstruction: Convert the temperature to Fahrenheit.\nInput: 25 degrees Celsius\nOutput: 77 F",
    # request 2 (the model repeats the pre-filled label): a rephrasing of an accepted task, a good one, and a task
    # cut off by the token limit
    "\nInstruction: Give two reasons why people keep a journal.\nInput: <noinput>\nOutput: Memory.\n\n"
    "### Task 5\nInstruction: Suggest a name for a bakery that sells bagels.\nInput: <noinput>\n"
    "Output: Hole Lotta Bagels\n\n"
    "### Task 6\nInstruction: Explain why the sky looks blue during the",
]


def test_self_instruct_filters_injected_generations(parts, alpaca_rows, monkeypatch):
    model, tokenizer, style = parts
    calls = []

    def fake_continue_batch(model, tokenizer, prompts, max_new_tokens, **sampling):
        calls.append([tokenizer.decode(ids) for ids in prompts])
        return [Answer(CANNED[0], True), Answer(CANNED[1], False)][:len(prompts)]  # the 2nd ran into the limit

    monkeypatch.setattr(quality, "continue_batch", fake_continue_batch)
    seeds = [{k: r[k] for k in ("instruction", "input", "output")} for r in alpaca_rows[:3]]
    tasks, stats = self_instruct(model, tokenizer, style, seeds, num_instructions=10,
                                 config=SelfInstructConfig(num_prompt_tasks=3, max_requests=2))
    assert [t["instruction"] for t in tasks] == ["Give two reasons why people keep journals.",
                                                 "Convert the temperature to Fahrenheit.",
                                                 "Suggest a name for a bakery that sells bagels."]
    assert tasks[1] == {"instruction": "Convert the temperature to Fahrenheit.", "input": "25 degrees Celsius",
                        "output": "77 F"}
    assert stats == {"requests": 2, "parsed": 6, "accepted": 3,
                     "rejected": {"blacklisted_word": 1, "similar_to_pool": 2}}
    assert [len(c) for c in calls] == [2]  # both requests generated together
    # the request shows the seeds in the task format, in SmolLM2's chat format, with the answer begun
    first = calls[0][0]
    assert first.count("### Task ") == 4 and "Instruction: " + seeds[0]["instruction"] in first
    assert "<|im_start|>user\n" in first and first.endswith("<|im_start|>assistant\n### Task 4\nInstruction:")


def test_self_instruct_stops_at_target_and_rejects_bad_seeds(parts, alpaca_rows, monkeypatch, tmp_path, root_dir):
    model, tokenizer, style = parts
    monkeypatch.setattr(quality, "continue_batch",
                        lambda model, tokenizer, prompts, *a, **k: [Answer(CANNED[0], True)] * len(prompts))
    seeds = [{k: r[k] for k in ("instruction", "input", "output")} for r in alpaca_rows[:3]]
    tasks, stats = self_instruct(model, tokenizer, style, seeds, num_instructions=1)
    assert len(tasks) == 1 and stats["requests"] == 1  # one request can bring the one task: no more are generated
    with pytest.raises(UserError):
        self_instruct(model, tokenizer, style, [], num_instructions=1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "Hi there", "output": ""}) + "\n")
    with pytest.raises(UserError, match="bad.jsonl"):
        load_script(root_dir, "self_instruct").main(seed_tasks=bad, checkpoint_dir=tmp_path, output=tmp_path / "o.json")


def test_backtranslate_parses_and_curates_injected_instructions(parts, monkeypatch):
    model, tokenizer, style = parts
    answers = iter([' "Explain how rainbows form."\n\nSure, here it is!', "   ", "Question: What is 2 + 2?"])
    prompts = []

    def fake_continue_batch(model, tokenizer, batch, *args, **kwargs):
        prompts.extend(tokenizer.decode(ids) for ids in batch)
        return [Answer(next(answers), True) for _ in batch]

    monkeypatch.setattr(quality, "continue_batch", fake_continue_batch)
    texts = ["Sunlight is refracted and reflected in raindrops.", "Some text.", "4"]
    curator = Judge(model, tokenizer, style, rating=CURATION_PROMPT)
    pairs, stats = backtranslate(model, tokenizer, style, texts, curator, BacktranslateConfig(min_score=1.0))
    assert [p["instruction"] for p in pairs] == ["Explain how rainbows form.", "", "What is 2 + 2?"]
    assert [p["kept"] for p in pairs] == [True, False, True]  # every score on 1-5 is >= 1; no instruction, no pair
    assert pairs[1]["score_curation"] is None
    assert stats == {"texts": 3, "empty_instruction": 1, "below_min_score": 0, "unscored": 0, "kept": 2}
    assert "[Text]\nSunlight is refracted" in prompts[0] and prompts[0].endswith("assistant\nInstruction:")


def test_read_unlabelled(tmp_path):
    txt = tmp_path / "texts.txt"
    txt.write_text("First document,\nwith two lines.\n\n\nSecond document.\n")
    assert read_unlabelled(txt) == ["First document,\nwith two lines.", "Second document."]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"content": "A"}) + "\n" + json.dumps({"text": "B", "meta": 1}) + "\n")
    assert read_unlabelled(rows) == ["A", "B"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"title": "no text"}) + "\n")
    with pytest.raises(UserError, match="bad.jsonl:1: none of the fields"):
        read_unlabelled(bad)
    with pytest.raises(UserError, match="not found"):
        read_unlabelled(tmp_path / "missing.txt")
