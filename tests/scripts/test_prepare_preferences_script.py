"""scripts/prepare_preferences.py end to end on small files in the published layouts (tests/fixtures/preferences/:
UltraFeedback binarized, Anthropic HH-RLHF, AlpacaFarm's two answers): counts, drops with reasons, the manifest's
format and fingerprint, and preference data kept apart from instruction data."""

import json

import pytest

from helpers import FIXTURES, assert_one_line_error, run_script
from lit_gpt.data.prepared import load_prepared
from lit_gpt.utils import UserError

PAIRS = FIXTURES / "preferences"


@pytest.fixture(scope="module")
def smollm2_dir(tiny_checkpoint_dir):
    return tiny_checkpoint_dir("smollm2", block_size=1024)


def prepare(capsys, destination, *args):
    code, out, err = run_script(capsys, "prepare_preferences", "--destination_path", destination,
                                "--test_split_fraction", 0, *args)
    assert code == 0, err
    return load_prepared(destination, format="preference"), out


@pytest.mark.parametrize("file, kept, dropped", [
    ("ultrafeedback_binarized.jsonl", 2, {"chosen and rejected are the same answer": 1,
                                          "chosen and rejected conversations differ before their answers": 1}),
    ("hh_rlhf.jsonl", 2, {"no prompt: no prompt column, and chosen and rejected share no '\\n\\nAssistant:' turn": 1}),
    ("alpaca_farm.json", 2, {"preference is not 1 or 2": 1}),
])
def test_each_layout_prepares_with_its_drops_counted(capsys, smollm2_dir, tmp_path, file, kept, dropped):
    (train, _, manifest), out = prepare(capsys, tmp_path, "--data_path", PAIRS / file, "--checkpoint_dir", smollm2_dir)
    assert manifest["format"] == "preference" and manifest["counts"]["dropped"] == dropped
    assert manifest["counts"]["train"] == len(train) == kept and manifest["trained_token_share"] > 0
    assert f"{kept} train + 0 test examples" in out
    for pair in train:
        assert len(pair["chosen_ids"]) == len(pair["chosen_mask"]) and pair["chosen_mask"].any()
        assert len(pair["rejected_ids"]) == len(pair["rejected_mask"]) and pair["rejected_mask"].any()


def test_the_pairs_and_their_metadata(capsys, smollm2_dir, tmp_path):
    (train, _, manifest), _ = prepare(capsys, tmp_path / "uf", "--data_path", PAIRS / "ultrafeedback_binarized.jsonl",
                                      "--checkpoint_dir", smollm2_dir)
    first = train[0]
    assert (first["prompt"][0]["content"], first["chosen"], first["rejected"]) == \
        ("Name a primary colour.", "Red is a primary colour.", "Green, obviously.")
    assert first["metadata"] == {"prompt_id": "a1", "score_chosen": 8.0, "score_rejected": 3.5}
    (train, _, manifest), _ = prepare(capsys, tmp_path / "hh", "--data_path", PAIRS / "hh_rlhf.jsonl",
                                      "--checkpoint_dir", smollm2_dir)
    assert manifest["counts"]["multi_turn"] == 1
    assert [m["content"] for m in train[1]["prompt"]] == ["Recommend a book.", "Which genre do you like?",
                                                          "Science fiction."]


def test_bad_rows_are_one_line_and_preference_data_is_not_instruction_data(capsys, smollm2_dir, tmp_path):
    path = PAIRS / "alpaca_farm.json"
    code, _, err = run_script(capsys, "prepare_preferences", "--data_path", path, "--checkpoint_dir", smollm2_dir,
                              "--destination_path", tmp_path / "strict", "--on_bad_row", "error")
    assert_one_line_error(code, err, f"{path}: row 3: preference is not 1 or 2")
    (_, _, manifest), _ = prepare(capsys, tmp_path / "farm", "--data_path", path, "--checkpoint_dir", smollm2_dir)
    with pytest.raises(UserError, match="holds preference data .*, not instructions"):
        load_prepared(tmp_path / "farm")  # e.g. finetune/lora.py's reader
    (_, out) = prepare(capsys, tmp_path / "farm", "--data_path", path, "--checkpoint_dir", smollm2_dir)
    assert "nothing to do" in out  # the fingerprint covers the format as every other setting
    code, _, err = run_script(capsys, "prepare_longform", "--data_path", FIXTURES / "longform_sample.json",
                              "--checkpoint_dir", smollm2_dir, "--destination_path", tmp_path / "sft")
    assert code == 0, err
    with pytest.raises(UserError, match="holds instructions data .*, not preference"):
        load_prepared(tmp_path / "sft", format="preference")
    assert json.loads((tmp_path / "sft" / "manifest.json").read_text()).get("format") is None


def test_two_answer_files_make_the_demo_pairs(capsys, smollm2_dir, tmp_path, shared_dir):
    # the README's demo: GPT-4's answers (chosen) and text-davinci-003's (rejected, Alpaca's own) to the same
    # Alpaca instructions, from ../shared/ as they are
    gpt4 = shared_dir / "datasets/alpaca_gpt4/sample_999.json"
    davinci = shared_dir / "datasets/alpaca/alpaca_random_9k.json"
    (train, _, manifest), out = prepare(capsys, tmp_path, "--data_path", gpt4, "--rejected_path", davinci,
                                        "--checkpoint_dir", smollm2_dir)
    assert manifest["counts"]["rows_in"] == 192  # the instructions (with their input) that both files answer
    assert manifest["counts"]["dropped"] == {"chosen and rejected are the same answer": 9}
    assert len(train) == 183 and [f["path"] for f in manifest["source_files"]] == [str(gpt4), str(davinci)]
    answers = {(r["instruction"], r["input"]): r["output"] for r in json.loads(gpt4.read_text())}
    first = train[0]
    assert first["chosen"] == answers[(first["prompt"][0]["content"], first["prompt"][0]["input"])]
    code, _, err = run_script(capsys, "prepare_preferences", "--rejected_path", davinci, "--checkpoint_dir",
                              smollm2_dir, "--destination_path", tmp_path / "none")
    assert_one_line_error(code, err, "--rejected_path goes with --data_path")
    # --reverse: the same pairs the other way round, in the same order and the same train/test split (a control arm)
    split = ("--test_split_fraction", 0.25, "--checkpoint_dir", smollm2_dir)
    (train, test, _), _ = prepare(capsys, tmp_path / "split", "--data_path", gpt4, "--rejected_path", davinci, *split)
    (reversed_train, reversed_test, reversed_manifest), _ = prepare(
        capsys, tmp_path / "reversed", "--data_path", gpt4, "--rejected_path", davinci, "--reverse", "true", *split)
    assert (len(train), len(test)) == (137, 46)  # the README's demo split
    for kept, turned in ((train, reversed_train), (test, reversed_test)):
        assert [(p["prompt"], p["chosen"], p["rejected"]) for p in kept] == \
            [(p["prompt"], p["rejected"], p["chosen"]) for p in turned]
    assert reversed_manifest["options"]["reverse"] is True and "reverse" not in manifest["options"]
    code, _, err = run_script(capsys, "prepare_preferences", "--data_path", gpt4, "--reverse", "true",
                              "--checkpoint_dir", smollm2_dir, "--destination_path", tmp_path / "none")
    assert_one_line_error(code, err, "--reverse true prefers --rejected_path's answers")
    assert not (tmp_path / "none").exists()


def test_judge_scores_pick_the_chosen_answer(capsys, smollm2_dir, tmp_path):
    # two sampled answers per instruction, each rated by a judge (score_dataset.py's score_alpagasus column): the
    # higher-rated one is chosen whichever file holds it; a tie or a missing rating drops the pair, counted
    first = [{"instruction": "Name a colour.", "output": "Blue.", "score_alpagasus": 4.5},
             {"instruction": "Add 2 and 2.", "output": "5", "score_alpagasus": 1.0},
             {"instruction": "Say hi.", "output": "Hi!", "score_alpagasus": 3.0},
             {"instruction": "Say bye.", "output": "Bye.", "score_alpagasus": None},
             {"instruction": "Only here.", "output": "x", "score_alpagasus": 5.0}]
    second = [{"instruction": "Add 2 and 2.", "output": "4", "score_alpagasus": 5.0},
              {"instruction": "Name a colour.", "output": "Colour.", "score_alpagasus": 2.0},
              {"instruction": "Say hi.", "output": "Hello.", "score_alpagasus": 3.0},
              {"instruction": "Say bye.", "output": "Goodbye.", "score_alpagasus": 2.0}]
    a, b = tmp_path / "sampled_1.json", tmp_path / "sampled_2.json"
    a.write_text(json.dumps(first))
    b.write_text(json.dumps(second))
    sources = {p: p.read_bytes() for p in (a, b)}
    (train, test, manifest), _ = prepare(capsys, tmp_path / "ranked", "--data_path", a, "--rejected_path", b,
                                         "--rank_by", "score_alpagasus", "--checkpoint_dir", smollm2_dir)
    pairs = {p["prompt"][0]["content"]: p for p in train + test}
    assert {k: (p["chosen"], p["rejected"]) for k, p in pairs.items()} == {
        "Name a colour.": ("Blue.", "Colour."), "Add 2 and 2.": ("4", "5")}
    assert pairs["Add 2 and 2."]["metadata"] == {"chosen_score_alpagasus": 5.0, "rejected_score_alpagasus": 1.0}
    assert manifest["counts"]["dropped"] == {"tied score_alpagasus": 1,
                                             "no numeric score_alpagasus in both answers": 1}
    assert manifest["options"]["rank_by"] == "score_alpagasus"
    assert {p: p.read_bytes() for p in (a, b)} == sources
    code, _, err = run_script(capsys, "prepare_preferences", "--data_path", a, "--rank_by", "score_alpagasus",
                              "--checkpoint_dir", smollm2_dir, "--destination_path", tmp_path / "none")
    assert_one_line_error(code, err, "--rank_by score_alpagasus", "--rejected_path")
    assert not (tmp_path / "none").exists()
