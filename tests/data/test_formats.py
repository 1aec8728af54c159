"""lit_gpt/data/formats.py: name patterns, Super-NaturalInstructions instructions and instance sampling, P3 rows and
subset files. The scripts that use them run end to end in tests/scripts/test_prepare_collections_scripts.py."""

import json

import pytest

from lit_gpt.data.formats import (natural_instructions_records, p3_record, p3_subset_files, select_names,
                                  task_instruction)
from lit_gpt.data.records import Source
from lit_gpt.utils import UserError

TASK = {"Definition": ["Translate the sentence into French."],
        "Positive Examples": [{"input": " Hello. ", "output": "Bonjour.", "explanation": "A greeting."}],
        "Instances": [{"id": f"t-{i}", "input": f"Sentence {i}.", "output": [f"Phrase {i}.", "other"]}
                      for i in range(10)]}


def test_select_names_keeps_the_given_order_and_rejects_a_pattern_that_matches_nothing():
    names = ["task002_b", "task001_a", "task120_c"]
    assert select_names(names, [], "task", "tasks/") == names
    assert select_names(names, ["task1*", "task002_b", "task*_b"], "task", "tasks/") == ["task002_b", "task120_c"]
    with pytest.raises(UserError, match=r"tasks/: no task matches 'task3\*' \(3 tasks there"):
        select_names(names, ["task1*", "task3*"], "task", "tasks/")


def test_task_instruction_definition_then_up_to_k_positive_examples():
    assert task_instruction(TASK, 0, "t.json") == "Translate the sentence into French."
    assert task_instruction(TASK, 3, "t.json") == \
        "Translate the sentence into French.\n\nExample 1\nInput: Hello.\nOutput: Bonjour."  # only one there
    assert task_instruction({**TASK, "Definition": "Say it in French."}, 0, "t.json") == "Say it in French."
    with pytest.raises(UserError, match="t.json: the task has no 'Definition' text"):
        task_instruction({**TASK, "Definition": [" "]}, 0, "t.json")
    with pytest.raises(UserError, match="t.json: positive example 1 has no input and output text"):
        task_instruction({**TASK, "Positive Examples": [{"input": "x"}]}, 1, "t.json")


def test_instances_are_a_seeded_sample_in_file_order_with_the_first_output(tmp_path):
    path = tmp_path / "task7_translation.json"
    path.write_text(json.dumps(TASK))
    records = list(natural_instructions_records(Source((path,)), max_instances_per_task=4))
    assert records == list(natural_instructions_records(Source((path,)), max_instances_per_task=4))
    numbers = [int(record["id"].split("-")[1]) for _, record in records]
    assert len(numbers) == 4 and numbers == sorted(numbers) and numbers != [0, 1, 2, 3]
    where, record = records[0]
    assert where == f"{path}: instance {numbers[0] + 1}"
    assert record == {"instruction": "Translate the sentence into French.", "input": f"Sentence {numbers[0]}.",
                      "output": f"Phrase {numbers[0]}.", "source": "task7_translation", "id": f"t-{numbers[0]}"}
    assert len(list(natural_instructions_records(Source((path,))))) == 10


def test_p3_row_texts_stripped_token_ids_dropped_wrong_choices_skipped():
    row = {"inputs": [1, 2], "inputs_pretokenized": "Is it? ", "targets": [3], "targets_pretokenized": "\nYes",
           "answer_choices": ["No", "Yes"], "idx": [0, 1], "weight": 1.0, "is_correct": True}
    assert p3_record(row, "boolq", "f:1") == {"instruction": "Is it?", "output": "Yes", "source": "boolq",
                                              "answer_choices": ["No", "Yes"]}
    assert p3_record({**row, "is_correct": False}, "boolq", "f:1") is None
    assert p3_record({"inputs_pretokenized": "Is it?"}, "boolq", "f:1")["output"] is None  # normalize: missing output
    with pytest.raises(UserError, match="f:1: not a P3 row"):
        p3_record({"instruction": "q", "output": "a"}, "boolq", "f:1")


def test_p3_subset_files_in_the_hub_layouts(tmp_path):
    for name in ("data/a_p1/train-00000-of-00002.parquet", "data/a_p1/train-00001-of-00002.parquet",
                 "data/a_p1/validation-00000-of-00001.parquet", "data/b_p2/train/0000.parquet",
                 "data/b_p2/info.train.json", "data/c_p3/train.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    found = [str(p.relative_to(tmp_path / "data")) for p in p3_subset_files(tmp_path, ["a_*", "b_p2"])]
    assert found == ["a_p1/train-00000-of-00002.parquet", "a_p1/train-00001-of-00002.parquet",
                     "b_p2/train/0000.parquet"]
