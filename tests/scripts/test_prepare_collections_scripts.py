"""scripts/prepare_natural_instructions.py and scripts/prepare_p3.py end to end on small files in the real layouts.

tests/fixtures/natural_instructions/ is a natural-instructions checkout in miniature (tasks/<task>.json with
Definition, Positive/Negative Examples and Instances; splits/default/train_tasks.txt and test_tasks.txt: two training
tasks, one held-out task). tests/fixtures/p3/ holds three P3 subset folders (a plain one, one with answer_choices, a
rank-classification *_score_eval one with is_correct), their rows with P3's columns; the Parquet layouts of the Hub
are made from them in the tests.
"""

import json
import shutil
import subprocess
import sys

import pytest

from fake_hub import FakeHub
from helpers import FIXTURES, ROOT, assert_one_line_error, check_prepared, hub_env, run_script
from lit_gpt.data.prepared import load_prepared
from lit_gpt.tokenizer import Tokenizer

NI = FIXTURES / "natural_instructions"
P3 = FIXTURES / "p3"
QUOREF = "task001_quoref_question_generation"
SQUAD = "task002_squad_answer_generation"
JFLEG = "task1557_jfleg_answer_generation"


@pytest.fixture(scope="module")
def smollm2_dir(tiny_checkpoint_dir):
    return tiny_checkpoint_dir("smollm2", block_size=1024)


def prepared(capsys, script, destination, *args):
    code, out, err = run_script(capsys, script, "--destination_path", destination, "--test_split_fraction", 0, *args)
    assert code == 0, err
    train, _, manifest = load_prepared(destination)
    return train, manifest, out


def task_file(name: str) -> dict:
    return json.loads((NI / "tasks" / f"{name}.json").read_text())


# ---- Super-NaturalInstructions -------------------------------------------------------------------------------------
def test_natural_instructions_training_tasks_with_definition_and_examples(capsys, smollm2_dir, tmp_path):
    train, manifest, _ = prepared(capsys, "prepare_natural_instructions", tmp_path, "--data_path", NI,
                                  "--checkpoint_dir", smollm2_dir)
    assert manifest["sources"] == {QUOREF: 3, SQUAD: 2}  # the official training tasks; task1557 is held out
    assert manifest["counts"]["dropped"] == {"empty output": 1}  # task002's instance with no reference output
    assert manifest["dropped_rows"] == [{"where": f"{NI / 'tasks' / SQUAD}.json: instance 2", "reason": "empty output"}]
    assert manifest["options"] == {"tasks": [], "task_split": "train", "max_instances_per_task": 100,
                                   "num_pos_examples": 2}
    task = task_file(QUOREF)
    examples = task["Positive Examples"]
    by_id = {e["id"]: e for e in train}
    second = by_id["task001-0a1c"]
    assert second["instruction"] == (
        f"{task['Definition'][0]}\n\n"
        f"Example 1\nInput: {examples[0]['input']}\nOutput: {examples[0]['output']}\n\n"
        f"Example 2\nInput: {examples[1]['input']}\nOutput: {examples[1]['output']}")
    assert (second["input"], second["output"]) == (task["Instances"][1]["input"], "Who led the orchestra?")
    assert second["source"] == QUOREF and second["metadata"] == {"category": "Question Generation"}
    check_prepared(train, Tokenizer(smollm2_dir), manifest)


def test_natural_instructions_task_selection_and_limits(capsys, smollm2_dir, tmp_path):
    train, manifest, _ = prepared(capsys, "prepare_natural_instructions", tmp_path / "test", "--data_path", NI,
                                  "--checkpoint_dir", smollm2_dir, "--task_split", "test", "--tasks", "task1*")
    assert manifest["sources"] == {JFLEG: 2} and manifest["options"]["tasks"] == ["task1*"]
    train, manifest, _ = prepared(capsys, "prepare_natural_instructions", tmp_path / "few", "--data_path", NI,
                                  "--checkpoint_dir", smollm2_dir, "--tasks", "task001_*",
                                  "--max_instances_per_task", 2, "--num_pos_examples", 0)
    assert manifest["counts"]["rows_in"] == 2 and {e["instruction"] for e in train} == \
        {task_file(QUOREF)["Definition"][0]}
    assert [e["id"] for e in train] == sorted(e["id"] for e in train)  # the sample keeps the file's order
    # a folder of task files without splits/ beside it: every task
    shutil.copytree(NI / "tasks", tmp_path / "copy" / "tasks")
    _, manifest, _ = prepared(capsys, "prepare_natural_instructions", tmp_path / "all", "--data_path",
                              tmp_path / "copy", "--checkpoint_dir", smollm2_dir)
    assert set(manifest["sources"]) == {QUOREF, SQUAD, JFLEG} and manifest["options"]["task_split"] == "all"


def test_natural_instructions_mistakes_are_one_line(capsys, smollm2_dir, tmp_path):
    args = ["--checkpoint_dir", smollm2_dir, "--destination_path", tmp_path / "out"]
    code, _, err = run_script(capsys, "prepare_natural_instructions", "--data_path", NI, "--tasks", JFLEG, *args)
    assert_one_line_error(code, err, f"{NI / 'tasks'} (train tasks): no task matches {JFLEG!r}")
    code, _, err = run_script(capsys, "prepare_natural_instructions", "--data_path", NI, "--on_bad_row", "error",
                              "--tasks", SQUAD, *args)
    assert_one_line_error(code, err, f"{NI / 'tasks' / SQUAD}.json: instance 2: empty output")
    code, _, err = run_script(capsys, "prepare_natural_instructions", *args)
    assert_one_line_error(code, err, "--data_path is required", "allenai/natural-instructions")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "task9_x.json").write_text('{"Definition": ["Do it."], "Instances": [')
    code, _, err = run_script(capsys, "prepare_natural_instructions", "--data_path", tmp_path / "bad", *args)
    assert_one_line_error(code, err, f"{tmp_path / 'bad' / 'task9_x.json'}:1: not valid JSON")
    (tmp_path / "bad" / "task9_x.json").write_text('{"Definition": [], "Instances": [{"input": "a", "output": ["b"]}]}')
    code, _, err = run_script(capsys, "prepare_natural_instructions", "--data_path", tmp_path / "bad", *args)
    assert_one_line_error(code, err, "task9_x.json: the task has no 'Definition' text")
    code, _, err = run_script(capsys, "prepare_natural_instructions", "--data_path", tmp_path / "bad",
                              "--task_split", "test", *args)
    assert_one_line_error(code, err, "test_tasks.txt: no official split file (--task_split test)")
    assert not (tmp_path / "out").exists()


# ---- P3 ------------------------------------------------------------------------------------------------------------
P3_SUBSETS = {"ag_news_classify_question_first": 2, "super_glue_boolq_yes_no_question": 3,
              "super_glue_copa_best_option_score_eval": 1}


def test_p3_subsets_by_pattern(capsys, smollm2_dir, tmp_path):
    train, manifest, out = prepared(capsys, "prepare_p3", tmp_path, "--data_path", P3, "--checkpoint_dir", smollm2_dir,
                                    "--subsets", "super_glue_*,ag_news_classify_question_first")
    # COPA's wrong answer choice is counted with the rows read and the dropped ones: the counts add up to the files'
    files = [P3 / subset / "train.jsonl" for subset in P3_SUBSETS]
    counts = manifest["counts"]
    assert manifest["sources"] == P3_SUBSETS and counts["rows_in"] == sum(len(f.read_text().splitlines()) for f in files)
    assert counts["dropped"] == {"answer choice not the correct one (is_correct false)": 1, "empty output": 1}
    assert counts["rows_in"] == counts["rows_out"] + sum(counts["dropped"].values())
    assert "1 answer choice not the correct one" in out  # the summary line, from the same counts
    assert manifest["options"] == {"subsets": ["ag_news_classify_question_first", "super_glue_*"]}
    rows = [json.loads(line) for line in (P3 / "super_glue_boolq_yes_no_question" / "train.jsonl").open()]
    boolq = [e for e in train if e["source"] == "super_glue_boolq_yes_no_question"]
    assert boolq[0]["instruction"] == rows[0]["inputs_pretokenized"] and boolq[0]["output"] == "No"  # was "\nNo"
    assert boolq[0]["metadata"] == {"answer_choices": '["No", "Yes"]'}  # token ids dropped
    copa = next(e for e in train if e["source"] == "super_glue_copa_best_option_score_eval")
    assert copa["output"] == "He dropped a hammer on his foot." and set(copa["metadata"]) == {"answer_choices"}
    check_prepared(train, Tokenizer(smollm2_dir), manifest)


def test_p3_mistakes_are_one_line(capsys, smollm2_dir, tmp_path):
    args = ["--checkpoint_dir", smollm2_dir, "--destination_path", tmp_path / "out"]
    code, _, err = run_script(capsys, "prepare_p3", "--data_path", P3, "--subsets", "glue_*", *args)
    assert_one_line_error(code, err, f"{P3}: no P3 subset matches 'glue_*'")
    code, _, err = run_script(capsys, "prepare_p3", "--data_path", P3, *args)
    assert_one_line_error(code, err, "--subsets is required with a folder as --data_path")
    code, _, err = run_script(capsys, "prepare_p3", "--subsets", "super_glue_*", *args)
    assert_one_line_error(code, err, "glob patterns in --subsets", "pass --data_path")
    code, _, err = run_script(capsys, "prepare_p3", "--subsets", "ag_news", "--dataset_id", "bigscience/P3", *args)
    assert_one_line_error(code, err, "pass --subset NAME with --dataset_id")
    (tmp_path / "flan" / "train").mkdir(parents=True)
    shutil.copy(FIXTURES / "flan" / "aeslc_10templates_train.jsonl", tmp_path / "flan" / "train" / "rows.jsonl")
    code, _, err = run_script(capsys, "prepare_p3", "--data_path", tmp_path, "--subsets", "flan", *args)
    assert_one_line_error(code, err, f"{tmp_path / 'flan' / 'train' / 'rows.jsonl'}:1: not a P3 row")
    (tmp_path / "old" / "ag_news").mkdir(parents=True)
    (tmp_path / "old" / "ag_news" / "train.tfrecord-00000-of-00001").write_bytes(b"\0")
    code, _, err = run_script(capsys, "prepare_p3", "--data_path", tmp_path / "old", "--subsets", "ag_news", *args)
    assert_one_line_error(code, err, "no train file", "TFRecord files are not read")
    code, _, err = run_script(capsys, "prepare_p3", "--data_path", P3, "--subsets", "ag_news_classify_question_first",
                              "--on_bad_row", "error", *args)
    assert_one_line_error(code, err, f"{P3 / 'ag_news_classify_question_first' / 'train.jsonl'}:3: empty output")
    assert not (tmp_path / "out").exists()


def hub_layouts(root, datasets) -> dict:
    """The fixture subsets as Parquet: the Hub's main branch layout for two, refs/convert/parquet's for the third."""
    files = {}
    for i, subset in enumerate(P3_SUBSETS):
        rows = [json.loads(line) for line in (P3 / subset / "train.jsonl").open()]
        name = f"{subset}/train/0000.parquet" if i == 2 else f"{subset}/train-00000-of-00001.parquet"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(rows).to_parquet(str(root / name))
        files[name] = (root / name).read_bytes()
    return files


@pytest.mark.slow
def test_p3_parquet_layouts_and_download_prepare_like_jsonl(capsys, smollm2_dir, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    files = hub_layouts(tmp_path / "P3" / "data", datasets)
    main_branch = [subset for subset in P3_SUBSETS if f"{subset}/train-00000-of-00001.parquet" in files]
    settings = ["--checkpoint_dir", str(smollm2_dir), "--test_split_fraction", "0"]
    command = [sys.executable, str(ROOT / "scripts" / "prepare_p3.py"), *settings]
    with FakeHub() as hub:
        hub.add_repo("bigscience/P3", {**files, "README.md": "# P3"}, repo_type="dataset")

        def start(name: str, subsets: list) -> subprocess.Popen:  # both at once: each pays the interpreter start-up
            return subprocess.Popen([*command, "--subsets", ",".join(subsets), "--destination_path",
                                     str(tmp_path / name)], text=True, env=hub_env(hub.url, tmp_path / name),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        downloads = {"hub": start("hub", main_branch), "missing": start("missing", list(P3_SUBSETS))}
        expected, _, _ = prepared(capsys, "prepare_p3", tmp_path / "jsonl", "--data_path", P3, "--subsets",
                                  ",".join(P3_SUBSETS), *settings)
        parquet, manifest, _ = prepared(capsys, "prepare_p3", tmp_path / "parquet", "--data_path", tmp_path / "P3",
                                        "--subsets", "*", *settings)
        results = {name: (proc.communicate(timeout=300), proc.returncode) for name, proc in downloads.items()}

    def texts(examples):
        return [(e["source"], e["instruction"], e["output"], e.get("metadata")) for e in examples]

    assert manifest["sources"] == P3_SUBSETS and texts(parquet) == texts(expected)
    (_, err), code = results["hub"]
    assert code == 0, err
    assert texts(load_prepared(tmp_path / "hub")[0]) == [t for t in texts(expected) if t[0] in main_branch]
    (_, err), code = results["missing"]  # the third subset's file is where refs/convert/parquet keeps it
    assert_one_line_error(code, err, "bigscience/P3: the dataset has no file "
                          "super_glue_copa_best_option_score_eval/train-00000-of-00001.parquet")
