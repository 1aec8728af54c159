"""generate/answers.py: a dataset's instructions answered in order (the answers of lit_gpt's answer_prompts), usable
as the rejected side of self-play preference pairs; bad rows and an output onto the input are one-line errors."""

import json

import pytest

from helpers import assert_one_line_error, run_script

pytestmark = pytest.mark.slow  # a model generates


ANSWERS = "../generate/answers"  # run_script loads scripts/<name>.py
LOWERCASE_ANSWER = "this answer is written in plain english words and all of them are in lowercase"


@pytest.fixture
def instructions(tmp_path, alpaca_rows):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(alpaca_rows[:6]))
    return path


def test_answers_in_order_as_answer_prompts_and_as_rejected_pairs(capsys, tmp_path, instructions, alpaca_rows,
                                                                   model_dir):
    from lit_gpt.infer.answer import answer_prompts
    from lit_gpt.infer.load import load

    output = tmp_path / "answers.json"
    code, _, err = run_script(capsys, ANSWERS, "--data_path", instructions, "--checkpoint_dir", model_dir,
                              "--output", output, "--max_new_tokens", "6", "--batch_size", "4", "--device", "cpu",
                              "--precision", "32-true")
    assert code == 0, err
    rows = json.loads(output.read_text())
    loaded = load(model_dir, device="cpu", precision="32-true")
    expected = answer_prompts(loaded.model, loaded.tokenizer, loaded.style, alpaca_rows[:6], 6)
    assert [(r["instruction"], r["input"]) for r in rows] == [(r["instruction"], r["input"]) for r in alpaca_rows[:6]]
    assert [r["output"] for r in rows] == [a.text for a in expected]
    assert [r["finished"] for r in rows] == [a.finished for a in expected]
    assert f"wrote 6 answers to {output}" in err

    # SPIN: the dataset's answers chosen, the model's rejected (empty answers are dropped as bad rows)
    code, _, err = run_script(capsys, "prepare_preferences", "--data_path", instructions, "--rejected_path", output,
                              "--checkpoint_dir", model_dir, "--destination_path", tmp_path / "pairs",
                              "--test_split_fraction", "0")
    assert code == 0, err
    manifest = json.loads((tmp_path / "pairs" / "manifest.json").read_text())
    assert manifest["counts"]["rows_in"] == 6
    assert manifest["counts"]["rows_out"] == sum(bool(r["output"].strip()) and r["output"] != a["output"]
                                             for r, a in zip(rows, alpaca_rows))


def test_a_row_without_instruction_and_an_output_onto_the_input_are_one_line(capsys, tmp_path, instructions,
                                                                             model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "Say hi."}) + "\n" + json.dumps({"text": "no instruction"}) + "\n")
    output = tmp_path / "out.json"
    code, _, err = run_script(capsys, ANSWERS, "--data_path", bad, "--checkpoint_dir", model_dir, "--output", output)
    assert_one_line_error(code, err, str(bad), "instruction")
    assert not output.exists()

    before = instructions.read_bytes()
    code, _, err = run_script(capsys, ANSWERS, "--data_path", instructions, "--checkpoint_dir", model_dir,
                              "--output", instructions)
    assert_one_line_error(code, err, "--output", "--data_path")
    assert instructions.read_bytes() == before


def test_two_sampled_answers_ranked_by_a_judge_make_pairs(capsys, tmp_path, instructions, model_dir):
    """The README's judge-ranked pairs: two sampled answers per instruction (two seeds), each rated by a judge
    checkpoint (score_dataset.py --method alpagasus), the higher-rated one chosen (prepare_preferences --rank_by)."""
    common = ["--data_path", instructions, "--checkpoint_dir", model_dir, "--max_new_tokens", "8", "--temperature",
              "1.0", "--device", "cpu", "--precision", "32-true"]
    for seed in (1, 2):
        code, _, err = run_script(capsys, ANSWERS, *common, "--seed", seed, "--output", tmp_path / f"s{seed}.json")
        assert code == 0, err
        code, _, err = run_script(capsys, "score_dataset", "--data_path", tmp_path / f"s{seed}.json", "--method",
                                  "alpagasus", "--judge_checkpoint_dir", model_dir, "--device", "cpu",
                                  "--precision", "32-true")
        assert code == 0, err
    scored = [json.loads((tmp_path / f"s{seed}.scored.json").read_text()) for seed in (1, 2)]
    assert [r["output"] for r in scored[0]] != [r["output"] for r in scored[1]]  # two samples, not one answer twice
    train = ranked_pairs(capsys, tmp_path, model_dir, "score_alpagasus")
    for pair in train:
        scores = pair["metadata"]
        assert scores["chosen_score_alpagasus"] > scores["rejected_score_alpagasus"]
        first, second = (next(r for r in rows if r["instruction"] == pair["prompt"][0]["content"]) for rows in scored)
        better = first if first["score_alpagasus"] > second["score_alpagasus"] else second
        assert pair["chosen"] == better["output"]


def test_two_sampled_answers_ranked_by_constraint_checks_make_pairs(capsys, tmp_path, instructions, model_dir):
    """The README's checker-ranked pairs: constraints added to the instructions (add_constraints.py), two sampled
    answers that keep the rows' constraints (answers.py), each scored by the share it follows (score_dataset.py
    --method constraints), the better one chosen (prepare_preferences --rank_by score_constraints)."""
    constrained = tmp_path / "constrained.json"
    code, _, err = run_script(capsys, "add_constraints", "--data_path", instructions, "--output", constrained,
                              "--count", "2", "--seed", "3")
    assert code == 0 and "wrote 6 rows with 2 constraint(s) each" in err, err
    rows = json.loads(constrained.read_text())
    common = ["--data_path", constrained, "--checkpoint_dir", model_dir, "--max_new_tokens", "8", "--temperature",
              "1.0", "--device", "cpu", "--precision", "32-true"]
    for seed in (1, 2):
        code, _, err = run_script(capsys, ANSWERS, *common, "--seed", seed, "--output", tmp_path / f"s{seed}.json")
        assert code == 0, err
        answers = json.loads((tmp_path / f"s{seed}.json").read_text())
        assert [a["constraints"] for a in answers] == [r["constraints"] for r in rows]
        # the tiny model's answers follow little: make one row of each file follow all of its checks or none
        answers[0]["output"] = (LOWERCASE_ANSWER if seed == 1 else "Capitals, And Commas, Here")
        answers[0]["constraints"] = [{"id": "change_case:english_lowercase", "kwargs": {}},
                                     {"id": "punctuation:no_comma", "kwargs": {}}]
        (tmp_path / f"s{seed}.json").write_text(json.dumps(answers))
        code, _, err = run_script(capsys, "score_dataset", "--data_path", tmp_path / f"s{seed}.json", "--method",
                                  "constraints")
        assert code == 0, err
    scored = [json.loads((tmp_path / f"s{seed}.scored.json").read_text()) for seed in (1, 2)]
    assert scored[0][0]["score_constraints"] == 1.0 and scored[1][0]["score_constraints"] == 0.0
    assert all(r["score_constraints"] in (0.0, 0.5, 1.0) for rows_ in scored for r in rows_)
    train = ranked_pairs(capsys, tmp_path, model_dir, "score_constraints")
    first = next(p for p in train if p["prompt"][0]["content"] == rows[0]["instruction"])
    assert first["chosen"] == LOWERCASE_ANSWER
    for pair in train:
        assert pair["metadata"]["chosen_score_constraints"] > pair["metadata"]["rejected_score_constraints"]


def ranked_pairs(capsys, tmp_path, model_dir, rank_by: str) -> list:
    """The training pairs prepare_preferences.py makes of s1.scored.json and s2.scored.json, ranked by `rank_by`."""
    from lit_gpt.data.prepared import load_prepared

    code, _, err = run_script(capsys, "prepare_preferences", "--data_path", tmp_path / "s1.scored.json",
                              "--rejected_path", tmp_path / "s2.scored.json", "--rank_by", rank_by,
                              "--checkpoint_dir", model_dir, "--destination_path", tmp_path / "pairs",
                              "--test_split_fraction", "0")
    assert code == 0, err
    train, _, manifest = load_prepared(tmp_path / "pairs", format="preference")
    assert train and manifest["counts"]["rows_in"] == 6
    return train
