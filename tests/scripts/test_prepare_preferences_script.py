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
