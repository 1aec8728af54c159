"""scripts/evaluate.py end to end: a tiny checkpoint through IFEval (a few real prompts) and reference loss, the
files it writes; GPT-4's published IFEval responses scored through --responses; one-line errors."""

import json

import pytest

from helpers import assert_one_line_error, run_script


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint_dir):
    return tiny_checkpoint_dir("smollm2", weights=True, block_size=128)


@pytest.mark.slow
def test_ifeval_and_reference_loss_on_a_checkpoint(checkpoint, shared_dir, tmp_path, capsys):
    out_dir = tmp_path / "eval"
    code, out, err = run_script(capsys, "evaluate", "--checkpoint_dir", checkpoint, "--tasks", "ifeval reference_loss",
                                "--reference_data", shared_dir / "datasets/alpaca_gpt4/sample_999.json",
                                "--limit", "3", "--max_new_tokens", "6", "--batch_size", "2", "--out_dir", out_dir)
    assert code == 0, err
    results = json.loads((out_dir / "results.json").read_text())
    assert results["tasks"] == ["ifeval", "reference_loss"] and results["settings"]["limit"] == 3
    assert results["settings"]["prompt_lookup"] == 4  # greedy answers with draft tokens (the default)
    for metric in ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
                   "inst_level_loose_acc"):
        assert 0.0 <= results["ifeval"][metric] <= 1.0
    assert results["ifeval"]["prompts"] == 3 and "lm-eval" in results["versions"]
    ref = results["reference_loss"]
    assert ref["examples"] == 3 and ref["tokens"] > 0 and ref["perplexity"] > 1
    outputs = [json.loads(line) for line in (out_dir / "ifeval_responses.jsonl").read_text().splitlines()]
    assert len(outputs) == 3 and {"prompt", "response", "strict", "loose", "finished"} <= set(outputs[0])
    assert results["ifeval"]["cut_at_budget"] == sum(not o["finished"] for o in outputs)
    assert len((out_dir / "reference_loss.jsonl").read_text().splitlines()) == 3
    assert "| ifeval | prompt_level_strict_acc |" in (out_dir / "results.md").read_text()
    assert "prompt_level_strict_acc" in out


@pytest.mark.slow
def test_published_gpt4_responses_reproduce_the_papers_numbers(shared_dir, tmp_path, capsys):
    responses = shared_dir / "datasets/eval/ifeval/input_response_data_gpt4_20231107_145030.jsonl"
    code, out, err = run_script(capsys, "evaluate", "--responses", responses, "--out_dir", tmp_path / "gpt4")
    assert code == 0, err
    scores = json.loads((tmp_path / "gpt4" / "results.json").read_text())["ifeval"]
    paper = {"prompt_level_strict_acc": 76.89, "inst_level_strict_acc": 83.57, "prompt_level_loose_acc": 79.30,
             "inst_level_loose_acc": 85.37}
    for metric, published in paper.items():
        assert abs(100 * scores[metric] - published) <= 0.5, (metric, scores[metric])


def test_user_mistakes_are_one_line_errors(checkpoint, tmp_path, capsys):
    code, _, err = run_script(capsys, "evaluate", "--checkpoint_dir", checkpoint, "--tasks", "ifeval mmlu")
    assert_one_line_error(code, err, "--tasks", "choose from")
    code, _, err = run_script(capsys, "evaluate", "--checkpoint_dir", checkpoint, "--tasks", "reference_loss",
                              "--out_dir", tmp_path / "x")
    assert_one_line_error(code, err, "--reference_data")
    code, _, err = run_script(capsys, "evaluate", "--checkpoint_dir", checkpoint, "--ifeval_sample", "0",
                              "--out_dir", tmp_path / "z")
    assert_one_line_error(code, err, "--ifeval_sample 0")
    code, _, err = run_script(capsys, "evaluate", "--checkpoint_dir", checkpoint, "--prompt_lookup", "-2",
                              "--out_dir", tmp_path / "w")
    assert_one_line_error(code, err, "--prompt_lookup -2")
    assert not (tmp_path / "w").exists()
    missing = tmp_path / "nope.jsonl"
    code, _, err = run_script(capsys, "evaluate", "--responses", missing, "--out_dir", tmp_path / "y")
    assert_one_line_error(code, err, str(missing))


@pytest.mark.slow
def test_baseline_comparison_of_two_response_files(shared_dir, tmp_path, capsys):
    """--baseline: GPT-4's published responses against the same with 40 answers blanked: the blanked prompts that
    GPT-4 passed are the discordant ones, tested with the exact McNemar test; the baseline folder is left as it was."""
    responses = shared_dir / "datasets/eval/ifeval/input_response_data_gpt4_20231107_145030.jsonl"
    rows = [json.loads(line) for line in responses.read_text().splitlines()]
    blanked = tmp_path / "blanked.jsonl"
    blanked.write_text("".join(json.dumps({**row, "response": "" if i % 13 == 0 else row["response"]}) + "\n"
                               for i, row in enumerate(rows)))
    assert run_script(capsys, "evaluate", "--responses", responses, "--out_dir", tmp_path / "gpt4")[0] == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "gpt4").iterdir()}
    code, out, err = run_script(capsys, "evaluate", "--responses", blanked, "--out_dir", tmp_path / "blanked",
                                "--baseline", tmp_path / "gpt4")
    assert code == 0, err
    comparison = json.loads((tmp_path / "blanked" / "comparison.json").read_text())
    base = {r["prompt"]: all(r["strict"]) for r in map(json.loads, (tmp_path / "gpt4" / "ifeval_responses.jsonl")
                                                           .read_text().splitlines())}
    lost = sum(base[row["prompt"]] for i, row in enumerate(rows) if i % 13 == 0)
    strict = comparison["metrics"]["ifeval_prompt_strict"]
    assert strict["discordant"]["baseline_only"] >= lost - 2 and lost > 20  # a blank answer passes almost nothing
    assert strict["difference"] < 0 and strict["significant"] and strict["items"] == 541
    assert "reference_nll" not in comparison["metrics"] and "| ifeval_prompt_strict |" in out
    assert {p.name: p.read_bytes() for p in (tmp_path / "gpt4").iterdir()} == before

    code, _, err = run_script(capsys, "evaluate", "--responses", blanked, "--out_dir", tmp_path / "x",
                              "--baseline", tmp_path / "nowhere")
    assert_one_line_error(code, err, "--baseline", "nowhere", "results.json")
    assert not (tmp_path / "x").exists()
    code, _, err = run_script(capsys, "evaluate", "--responses", blanked, "--out_dir", tmp_path / "gpt4",
                              "--baseline", tmp_path / "gpt4")
    assert_one_line_error(code, err, "--baseline")
    assert {p.name: p.read_bytes() for p in (tmp_path / "gpt4").iterdir()} == before
