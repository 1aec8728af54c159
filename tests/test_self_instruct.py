"""Self-Instruct and instruction backtranslation end to end with a tiny random model (its text is gibberish, so the
filtering pipeline is also checked on injected generations)."""

import importlib.util
import json

import pytest

import lit_gpt.quality.synthetic as quality
from lit_gpt.infer.answer import Answer
from lit_gpt.infer.load import load_model_for_inference
from lit_gpt.quality.judge import CURATION_PROMPT, Judge
from lit_gpt.quality.synthetic import (BacktranslateConfig, SelfInstructConfig, backtranslate, read_unlabelled,
                                       self_instruct)
from lit_gpt.utils import UserError


def load_script(root_dir, name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", root_dir / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint_dir):
    return tiny_checkpoint_dir("smollm2", weights=True, block_size=768)


@pytest.fixture(scope="module")
def parts(model_dir):
    return load_model_for_inference(model_dir, "cpu", "32-true")


@pytest.fixture(scope="module")
def alpaca_rows(shared_dir):
    return json.loads((shared_dir / "datasets/alpaca/alpaca_random_9k.json").read_text())[:50]


@pytest.fixture
def seed_file(tmp_path, alpaca_rows):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in alpaca_rows[:20]))
    return path


def test_self_instruct_script_end_to_end(root_dir, seed_file, model_dir, tmp_path):
    script = load_script(root_dir, "self_instruct")
    output = tmp_path / "generated.json"
    script.main(seed_tasks=seed_file, checkpoint_dir=model_dir, output=output, num_instructions=2, max_requests=2,
                max_new_tokens=16, top_p=None, device="cpu", precision="32-true")
    tasks = json.loads(output.read_text())
    manifest = json.loads((tmp_path / "generated.json.manifest.json").read_text())
    assert manifest["requests"] == 2 and manifest["accepted"] == len(tasks) <= 2
    assert manifest["settings"]["prompt_style"] == "smollm2" and manifest["seed_tasks_count"] == 20
    assert all(set(t) == {"instruction", "input", "output", "source"} for t in tasks)


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

    def fake_continue_ids(model, tokenizer, prompt_ids, max_new_tokens, **sampling):
        calls.append(tokenizer.decode(prompt_ids))
        text = CANNED[len(calls) - 1]
        return Answer(text, len(calls) == 1)  # the second generation ran into the token limit

    monkeypatch.setattr(quality, "continue_ids", fake_continue_ids)
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
    # the request shows the seeds in the task format, in SmolLM2's chat format, with the answer begun
    assert calls[0].count("### Task ") == 4 and "Instruction: " + seeds[0]["instruction"] in calls[0]
    assert "<|im_start|>user\n" in calls[0] and calls[0].endswith("<|im_start|>assistant\n### Task 4\nInstruction:")


def test_self_instruct_stops_at_target_and_rejects_bad_seeds(parts, alpaca_rows, monkeypatch, tmp_path, root_dir):
    model, tokenizer, style = parts
    monkeypatch.setattr(quality, "continue_ids", lambda *a, **k: Answer(CANNED[0], True))
    seeds = [{k: r[k] for k in ("instruction", "input", "output")} for r in alpaca_rows[:3]]
    tasks, stats = self_instruct(model, tokenizer, style, seeds, num_instructions=1)
    assert len(tasks) == 1 and stats["requests"] == 1
    with pytest.raises(UserError):
        self_instruct(model, tokenizer, style, [], num_instructions=1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "Hi there", "output": ""}) + "\n")
    with pytest.raises(UserError, match="bad.jsonl"):
        load_script(root_dir, "self_instruct").main(seed_tasks=bad, checkpoint_dir=tmp_path, output=tmp_path / "o.json")


def test_backtranslate_script_end_to_end(root_dir, model_dir, alpaca_rows, tmp_path):
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": r["output"]}) + "\n" for r in alpaca_rows[:5]))
    output = tmp_path / "bt.json"
    load_script(root_dir, "backtranslate").main(data_path=texts, checkpoint_dir=model_dir, output=output,
                                                min_score=3.0, max_new_tokens=8, device="cpu", precision="32-true")
    pairs = [json.loads(line) for line in (tmp_path / "bt.json.all.jsonl").read_text().splitlines()]
    kept = json.loads(output.read_text())
    manifest = json.loads((tmp_path / "bt.json.manifest.json").read_text())
    assert [p["output"] for p in pairs] == [r["output"] for r in alpaca_rows[:5]]
    scored = [p for p in pairs if p["instruction"]]
    assert all(1.0 <= p["score_curation"] <= 5.0 for p in scored)
    assert [k["output"] for k in kept] == [p["output"] for p in scored if p["score_curation"] >= 3.0]
    assert all(set(k) == {"instruction", "input", "output", "score_curation", "source"} for k in kept)
    counts = manifest["counts"]
    assert counts["texts"] == 5 and counts["kept"] == len(kept)
    assert counts["kept"] + counts["below_min_score"] + counts["empty_instruction"] + counts["unscored"] == 5


def test_backtranslate_parses_and_curates_injected_instructions(parts, monkeypatch):
    model, tokenizer, style = parts
    answers = iter([' "Explain how rainbows form."\n\nSure, here it is!', "   ", "Question: What is 2 + 2?"])
    prompts = []

    def fake_continue_ids(model, tokenizer, prompt_ids, *args, **kwargs):
        prompts.append(tokenizer.decode(prompt_ids))
        return Answer(next(answers), True)

    monkeypatch.setattr(quality, "continue_ids", fake_continue_ids)
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
    with pytest.raises(UserError, match="bad.jsonl: row 1"):
        read_unlabelled(bad)
    with pytest.raises(UserError, match="not found"):
        read_unlabelled(tmp_path / "missing.txt")
