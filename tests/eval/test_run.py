"""lit_gpt/eval/run.py: one evaluation run on a tiny checkpoint with the real SmolLM2 tokenizer (IFEval on a two-prompt
file, reference loss on prepared data and on a raw JSON file), the files it writes and the numbers in them, the
markdown table, answers scored from a response file, and the flag mistakes it refuses. The script around it:
scripts/test_evaluate_script.py."""

import json
import platform
from importlib.metadata import version

import pytest

from lit_gpt.checkpoint import load_model
from lit_gpt.data.prepared import load_prepared
from lit_gpt.eval import ifeval
from lit_gpt.eval.reference_loss import reference_loss
from lit_gpt.eval.run import (EvalReport, check_task_inputs, evaluate, markdown_table, parse_tasks, reference_examples,
                              score_responses_file, versions, write_report)
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError

IFEVAL_PROMPTS = [
    {"key": 1, "prompt": "Describe the sea without using commas.", "instruction_id_list": ["punctuation:no_comma"],
     "kwargs": [{}]},
    {"key": 2, "prompt": "What colour is the sky? Answer in lowercase only.",
     "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def ifeval_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("ifeval") / "input_data.jsonl", IFEVAL_PROMPTS)


@pytest.fixture(scope="module")
def model_and_tokenizer(checkpoint):
    return load_model(checkpoint).eval(), Tokenizer(checkpoint)


# ---- flags ---------------------------------------------------------------------------------------------------------
def test_parse_tasks():
    assert parse_tasks("ifeval, reference_loss") == parse_tasks("ifeval reference_loss") == ["ifeval", "reference_loss"]
    assert parse_tasks(["harness", ""]) == ["harness"]
    with pytest.raises(UserError, match=r'^--tasks ifeval mmlu: choose from ifeval, reference_loss, harness \(e\.g\. '
                                        r'--tasks "ifeval reference_loss"\)$'):
        parse_tasks("ifeval mmlu")
    with pytest.raises(UserError, match=r"^--tasks \(none\): choose from"):
        parse_tasks(" , ")


def test_check_task_inputs(tmp_path):
    check_task_inputs(["ifeval"], None, ())
    check_task_inputs(["reference_loss", "harness"], tmp_path, ["arc_easy"])
    with pytest.raises(UserError, match="^--tasks reference_loss needs --reference_data: a prepared dataset dir or a "
                                        "JSON/JSONL file"):
        check_task_inputs(["reference_loss"], None, ())
    with pytest.raises(UserError, match=f"^--reference_data {tmp_path / 'nope.json'}: no such file or directory$"):
        check_task_inputs(["ifeval"], tmp_path / "nope.json", ())
    with pytest.raises(UserError, match=r'^--tasks harness needs --harness_tasks \(e\.g\. "arc_easy hellaswag"\)$'):
        check_task_inputs(["harness"], None, [])


def test_versions_name_the_packages_that_shape_the_scores():
    found = versions()
    assert found["python"] == platform.python_version()
    assert found["torch"] == version("torch") and found["lm-eval"] == version("lm-eval")


# ---- the report ----------------------------------------------------------------------------------------------------
REPORT = EvalReport(
    model="checkpoints/tiny", prompt_style="chatml", tasks=["ifeval", "reference_loss", "harness"],
    settings={"limit": 3, "batch_size": 2, "ifeval_path": None, "harness_tasks": ["arc_easy"], "greedy": True},
    versions={"python": "3.12.0"},
    ifeval={"prompt_level_strict_acc": 1 / 3, "inst_level_strict_acc": 0.5, "prompt_level_loose_acc": 2 / 3,
            "inst_level_loose_acc": 0.75, "prompts": 3, "cut_at_budget": 1},
    reference_loss={"mean_nll": 1.234567, "perplexity": 3.43695, "tokens": 40, "examples": 3},
    harness={"arc_easy": {"acc,none": 0.5, "acc_stderr,none": 0.25, "alias": "arc_easy"}},
    seconds={"ifeval": 1.5, "reference_loss": 0.2})


def test_markdown_table():
    assert markdown_table(REPORT) == (
        "# Evaluation of checkpoints/tiny\n\n"
        "prompt style `chatml`; settings: limit=3, batch_size=2, harness_tasks=['arc_easy'], greedy=True\n\n"
        "| task | metric | value |\n|---|---|---|\n"
        "| ifeval | prompt_level_strict_acc | 33.33 |\n| ifeval | inst_level_strict_acc | 50.00 |\n"
        "| ifeval | prompt_level_loose_acc | 66.67 |\n| ifeval | inst_level_loose_acc | 75.00 |\n"
        "| ifeval | prompts | 3 |\n| ifeval | answers cut at the token budget | 1 |\n"
        "| reference_loss | mean NLL (nats/token) | 1.2346 |\n| reference_loss | perplexity | 3.437 |\n"
        "| reference_loss | answers / tokens | 3 / 40 |\n"
        "| arc_easy | acc,none | 0.5000 |\n| arc_easy | acc_stderr,none | 0.2500 |\n\n"  # not the alias text
        "wall time: ifeval 1.5 s, reference_loss 0.2 s\n")


def test_write_report(tmp_path):
    write_report(tmp_path, REPORT)
    assert json.loads((tmp_path / "results.json").read_text()) == REPORT.to_dict()
    assert (tmp_path / "results.md").read_text() == markdown_table(REPORT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]  # no temporary files left


# ---- reference answers ---------------------------------------------------------------------------------------------
def test_reference_examples_of_prepared_data(capitals_data, model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    _, test, _ = load_prepared(capitals_data, tokenizer)
    examples = reference_examples(capitals_data, tokenizer, get_prompt_style("chatml"), 256)
    assert [e["id"] for e in examples] == [e["id"] for e in test] and len(examples) == 2
    assert len(reference_examples(capitals_data, tokenizer, get_prompt_style("chatml"), 256, limit=1)) == 1
    with pytest.raises(UserError, match="prepared with prompt style 'chatml', the model uses 'smollm2'; prepare it "
                                        "again with --prompt_style smollm2, or pass the raw file"):
        reference_examples(capitals_data, tokenizer, get_prompt_style("smollm2"), 256)


def test_reference_examples_of_a_raw_file(shared_dir, model_and_tokenizer, tmp_path):
    _, tokenizer = model_and_tokenizer
    path = shared_dir / "datasets/alpaca_gpt4/sample_999.json"
    rows = json.loads(path.read_text())
    examples = reference_examples(path, tokenizer, get_prompt_style("smollm2"), 256, limit=3)
    assert [(e["id"], e["source"], e["instruction"]) for e in examples] == \
        [(f"ref-{i}", "reference", rows[i]["instruction"]) for i in range(3)]
    for example in examples:  # the answer and its end token are scored, the prompt is not
        trained = example["labels"][example["labels"] != -100]
        assert tokenizer.decode(trained).startswith(rows[int(example["id"][4:])]["output"][:20])
        assert int(trained[-1]) == tokenizer.token_to_id("<|im_end|>") and example["labels"][0] == -100
    write_jsonl(tmp_path / "questions.jsonl", [{"instruction": "Why is the sky blue?"}])
    with pytest.raises(UserError, match=r"questions\.jsonl: no row has a reference answer \(output/response/answer\)"):
        reference_examples(tmp_path / "questions.jsonl", tokenizer, get_prompt_style("smollm2"), 256)


# ---- a run -------------------------------------------------------------------------------------------------------
def test_reference_loss_run_writes_the_per_answer_losses(model_and_tokenizer, capitals_data, tmp_path):
    model, tokenizer = model_and_tokenizer
    style = get_prompt_style("chatml")
    report = evaluate(model, tokenizer, style, "tiny", ["reference_loss"], tmp_path / "eval",
                      reference_data=capitals_data, batch_size=1)
    expected = reference_loss(model, reference_examples(capitals_data, tokenizer, style, 256), micro_batch_size=1)
    assert report.reference_loss == {"mean_nll": expected.mean_nll, "perplexity": expected.perplexity,
                                     "tokens": expected.tokens, "examples": 2}
    lines = read_jsonl(tmp_path / "eval" / "reference_loss.jsonl")
    assert [(line["nll"], line["tokens"]) for line in lines] == list(zip(expected.per_example_nll,
                                                                         expected.per_example_tokens))
    assert lines[0]["instruction"].startswith("What is the capital of")
    assert (report.ifeval, report.harness, report.prompt_style, report.tasks) == (None, None, "chatml",
                                                                                 ["reference_loss"])
    assert report.settings["reference_data"] == str(capitals_data) and report.settings["dtype"] == "torch.float32"
    assert json.loads((tmp_path / "eval" / "results.json").read_text()) == report.to_dict()


def test_ifeval_run_answers_and_scores_every_prompt(model_and_tokenizer, ifeval_file, tmp_path):
    model, tokenizer = model_and_tokenizer
    report = evaluate(model, tokenizer, get_prompt_style("smollm2"), "tiny", ["ifeval"], tmp_path / "eval",
                      ifeval_path=ifeval_file, max_new_tokens=4, batch_size=2)
    rows = read_jsonl(tmp_path / "eval" / "ifeval_responses.jsonl")
    assert [(r["key"], r["prompt"], r["instruction_id_list"]) for r in rows] == \
        [(p["key"], p["prompt"], p["instruction_id_list"]) for p in IFEVAL_PROMPTS]
    result = ifeval.score(ifeval.load_prompts(ifeval_file), [r["response"] for r in rows])
    assert [r["strict"] for r in rows] == result.strict_verdicts and [r["loose"] for r in rows] == result.loose_verdicts
    assert report.ifeval["prompts"] == 2 and report.ifeval["cut_at_budget"] == sum(not r["finished"] for r in rows)
    assert {m: report.ifeval[m] for m in ifeval.METRICS} == result.metrics
    assert report.settings["max_new_tokens"] == 4 and report.settings["greedy"] is True
    assert "| ifeval | prompts | 2 |" in (tmp_path / "eval" / "results.md").read_text()


def test_a_declared_ifeval_sample_is_the_same_random_prompts_for_every_model(model_and_tokenizer, shared_dir,
                                                                             tmp_path, monkeypatch):
    """--ifeval_sample N: N of the 541 prompts drawn with a fixed seed, in file order, recorded in the settings;
    not the first N (their instruction types are not a sample of the benchmark's)."""
    import lit_gpt.eval.run as run_module

    model, tokenizer = model_and_tokenizer
    every = ifeval.load_prompts()
    asked = []
    monkeypatch.setattr(run_module, "run_ifeval", lambda model, tokenizer, style, prompts, *args: asked.append(
        [p.key for p in prompts]) or ([], ifeval.score(prompts, [""] * len(prompts))))
    for _ in range(2):
        report = evaluate(model, tokenizer, get_prompt_style("smollm2"), "tiny", ["ifeval"], tmp_path / "eval",
                          ifeval_sample=20)
    assert asked[0] == asked[1] and len(asked[0]) == 20 and asked[0] != [p.key for p in every[:20]]
    positions = [[p.key for p in every].index(key) for key in asked[0]]
    assert positions == sorted(positions) and report.settings["ifeval_sample"] == 20


def test_responses_from_elsewhere_are_scored(ifeval_file, tmp_path):
    responses = write_jsonl(tmp_path / "responses.jsonl", [
        {"prompt": IFEVAL_PROMPTS[1]["prompt"], "response": "The sky is Blue."},  # not lowercase
        {"prompt": IFEVAL_PROMPTS[0]["prompt"], "response": "the sea is calm and wide"},  # no comma
    ])
    report = score_responses_file(responses, tmp_path / "eval", ifeval_path=ifeval_file)
    assert (report.model, report.prompt_style, report.tasks) == (str(responses), "(responses given)", ["ifeval"])
    assert report.ifeval["prompt_level_strict_acc"] == 0.5 and report.ifeval["prompts"] == 2
    rows = read_jsonl(tmp_path / "eval" / "ifeval_responses.jsonl")
    assert [(r["key"], r["response"], r["strict"]) for r in rows] == [(1, "the sea is calm and wide", [True]),
                                                                      (2, "The sky is Blue.", [False])]
    assert "finished" not in rows[0]  # unknown for answers generated elsewhere
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["ifeval"]["prompts"] == 2


def test_a_run_missing_its_inputs_fails_before_writing(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(UserError, match="--tasks reference_loss needs --reference_data"):
        evaluate(model, tokenizer, get_prompt_style("chatml"), "tiny", ["reference_loss"], tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
