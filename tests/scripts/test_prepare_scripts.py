"""scripts/prepare_*.py end to end on the real dataset samples in shared/ and small files in tests/fixtures/.

Counts, sources, bad input as one-line errors, reuse of an up-to-date preparation, the gated LIMA download against
the loopback stand-in Hub, and Parquet, Arrow and Hub datasets (--dataset_id, served by the stand-in to the real
`datasets` library) preparing exactly as the same rows in JSON. The files in tests/fixtures/ are in the published
layouts.

The scripts run in-process through the same `run_cli` entry point as on the command line (SystemExit and stderr
included); a few runs go through a real subprocess to prove the command line itself.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fake_hub import FakeHub
from helpers import FIXTURES, ROOT, assert_one_line_error, check_manifest_is_the_data, check_prepared, run_script
from lit_gpt.data.prepared import load_prepared
from lit_gpt.tokenizer import Tokenizer

TOKEN = "hf_TestTokenLimaAccess0123456789"


@pytest.fixture(scope="module")
def block_sizes() -> dict:
    """Longer than conftest's, for smollm2_dir and llama_dir here: the real samples' long rows."""
    return {"smollm2": 1024, "llama-2": 4096}


# ---- real dataset samples ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lima_multi_turn_llama2_chat(capsys, shared_dir, llama_dir, tmp_path):
    code, out, err = run_script(capsys, "prepare_lima", "--data_path", shared_dir / "datasets/lima/train.jsonl",
                                "--checkpoint_dir", llama_dir, "--destination_path", tmp_path,
                                "--include_multiturn_conversations", "true", "--prompt_style", "llama2-chat")
    assert code == 0, err
    train, test, manifest = load_prepared(tmp_path, Tokenizer(llama_dir))
    counts = manifest["counts"]
    assert counts["rows_in"] == 1029 and counts["train"] + counts["test"] == 1029 and counts["dropped"] == {}
    assert counts["multi_turn"] == 29 and manifest["options"] == {"include_multiturn_conversations": True}
    assert manifest["max_seq_length"] == 4096 and manifest["prompt_style"] == "llama2-chat"
    assert f"{counts['train']} train + {counts['test']} test examples from 1029 rows" in out
    check_prepared(train + test, Tokenizer(llama_dir), manifest)
    turns = max((e for e in train + test if e.get("messages")), key=lambda e: len(e["messages"]))
    bos = Tokenizer(llama_dir).bos_id
    assert turns["input_ids"].tolist().count(bos) == len(turns["messages"]) // 2  # <s> before every [INST]


@pytest.mark.slow
def test_dolly_categories_become_sources(capsys, shared_dir, smollm2_dir, tmp_path):
    path = shared_dir / "datasets/dolly/dolly_3k.jsonl"
    code, out, err = run_script(capsys, "prepare_dolly", "--data_path", path, "--checkpoint_dir", smollm2_dir,
                                "--destination_path", tmp_path)
    assert code == 0, err
    train, test, manifest = load_prepared(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert manifest["counts"]["rows_in"] == len(rows) == 2996
    categories = {r["category"] for r in rows}
    assert set(manifest["sources"]) == categories and len(categories) == 8
    assert sum(manifest["sources"].values()) == len(train) + len(test)
    by_id = {e["id"]: e for e in train + test}
    first = by_id["dolly-1"]
    assert (first["instruction"], first["input"], first["output"], first["source"]) == \
        (rows[0]["instruction"], rows[0]["context"], rows[0]["response"], rows[0]["category"])
    assert manifest["prompt_style"] == "smollm2"  # the instruct tokenizer's own chat format
    check_prepared(train + test, Tokenizer(smollm2_dir), manifest)


@pytest.mark.slow
def test_alpaca_gpt4_sample(capsys, shared_dir, smollm2_dir, tmp_path):
    path = shared_dir / "datasets/alpaca_gpt4/sample_999.json"
    code, _, err = run_script(capsys, "prepare_alpaca", "--data_path", path, "--checkpoint_dir", smollm2_dir,
                              "--destination_path", tmp_path, "--prompt_style", "alpaca", "--test_split_fraction", 0.1)
    assert code == 0, err
    train, test, manifest = load_prepared(tmp_path)
    rows = json.loads(path.read_text())
    usable = [r for r in rows if r["output"].strip()]
    assert manifest["counts"]["rows_in"] == len(rows) and len(train) + len(test) == len(usable)
    assert len(test) == round(len(usable) * 0.1) and manifest["sources"] == {"alpaca": len(usable)}
    check_prepared(train + test, Tokenizer(smollm2_dir), manifest)


# ---- fixtures in the published layouts -----------------------------------------------------------------------------
def prepare_without_test_split(capsys, script: str, destination: Path, *args) -> tuple[list, dict]:
    """(train examples, manifest) of `script *args` run with --test_split_fraction 0 into `destination`."""
    code, _, err = run_script(capsys, script, *args, "--destination_path", destination, "--test_split_fraction", 0)
    assert code == 0, err
    train, test, manifest = load_prepared(destination)
    assert test == []
    return train, manifest


def test_longform(capsys, smollm2_dir, tmp_path):
    train, manifest = prepare_without_test_split(capsys, "prepare_longform", tmp_path, "--data_path",
                                                 FIXTURES / "longform_sample.json", "--checkpoint_dir", smollm2_dir)
    assert manifest["counts"]["dropped"] == {"empty output": 1} and len(train) == 5
    assert set(manifest["sources"]) == {"Wikipedia", "WikiHow", "StackExchange", "Enron", "C4"}
    first = train[0]
    assert first["instruction"].startswith("Write a short paragraph") and first["metadata"] == {"subset": "wikipedia"}


def test_flan_subsets(capsys, smollm2_dir, tmp_path):
    train, manifest = prepare_without_test_split(capsys, "prepare_flan", tmp_path, "--data_path", FIXTURES / "flan",
                                                 "--checkpoint_dir", smollm2_dir,
                                                 "--subsets", "aeslc_10templates,cosmos_qa_10templates")
    assert manifest["sources"] == {"aeslc_10templates": 3, "cosmos_qa_10templates": 3}
    assert manifest["options"] == {"subsets": ["aeslc_10templates", "cosmos_qa_10templates"]}
    assert train[0]["output"] == "Revised training schedule"
    code, _, err = run_script(capsys, "prepare_flan", "--data_path", FIXTURES / "flan", "--checkpoint_dir", smollm2_dir,
                              "--destination_path", tmp_path / "x", "--subsets", "aeslc_10templates,nope")
    assert_one_line_error(code, err, str(FIXTURES / "flan"), "nope_train.jsonl")
    code, _, err = run_script(capsys, "prepare_flan", "--checkpoint_dir", smollm2_dir)
    assert_one_line_error(code, err, "--subsets is required")


def test_oasst_best_ranked_threads(capsys, smollm2_dir, tmp_path):
    path = FIXTURES / "oasst_messages.jsonl"
    train, manifest = prepare_without_test_split(capsys, "prepare_oasst", tmp_path, "--data_path", path,
                                                 "--checkpoint_dir", smollm2_dir)
    assert manifest["counts"]["rows_in"] == 3  # English trees; the German one is filtered out
    assert manifest["counts"]["dropped"] == {"conversation has no assistant answer": 1}
    thread = next(e for e in train if e["id"] == "t1")
    assert [m["content"] for m in thread["messages"]] == [
        "How do I boil an egg?",
        "Lower the egg into boiling water, cook it for 9 minutes for a firm yolk, then cool it in cold water.",
        "And for a soft yolk?", "About six minutes."]  # rank 0 at every step, the deleted reply skipped
    assert next(e for e in train if e["id"] == "t3")["output"] == "Red, yellow and blue."
    assert thread["metadata"] == {"lang": "en"}
    code, _, err = run_script(capsys, "prepare_oasst", "--data_path", path, "--checkpoint_dir", smollm2_dir,
                              "--destination_path", tmp_path / "all", "--languages", "en,de")
    assert code == 0, err
    assert load_prepared(tmp_path / "all")[2]["counts"]["rows_in"] == 4


def test_csv_quoted_newlines_any_column_order_metadata(capsys, smollm2_dir, tmp_path):
    path = FIXTURES / "instructions.csv"
    train, manifest = prepare_without_test_split(capsys, "prepare_csv", tmp_path, "--csv_dir", path,
                                                 "--checkpoint_dir", smollm2_dir)
    assert manifest["counts"]["dropped"] == {"empty output": 1}
    assert manifest["dropped_rows"] == [{"where": f"{path}: row 4 (line 7)", "reason": "empty output"}]
    poem = next(e for e in train if e["metadata"]["category"] == "poetry")
    assert poem["output"] == 'Line one\nline two, with a comma\nand "quotes"'
    assert poem["instruction"] == "Write a two-line poem, please." and poem["input"] == ""
    assert next(e for e in train if e["metadata"]["category"] == "math")["input"] == "Answer with a digit."
    code, _, err = run_script(capsys, "prepare_csv", "--csv_dir", path, "--checkpoint_dir", smollm2_dir,
                              "--destination_path", tmp_path / "strict", "--on_bad_row", "error")
    assert_one_line_error(code, err, f"{path}: row 4 (line 7): empty output")
    assert not (tmp_path / "strict").exists()


def test_json_column_mapping(capsys, smollm2_dir, tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "Largest planet?", "answer": "Jupiter.", "topic": "space"}\n'
                    '{"question": "Boiling point of water at sea level?", "answer": "100 degrees Celsius."}\n')
    train, manifest = prepare_without_test_split(capsys, "prepare_json", tmp_path / "out", "--data_path", path,
                                                 "--checkpoint_dir", smollm2_dir,
                                                 "--columns", '{"instruction": "question", "output": "answer"}')
    assert manifest["name"] == "qa" and manifest["sources"] == {"qa": 2}
    assert (train[0]["instruction"], train[0]["output"], train[0]["metadata"]) == \
        ("Largest planet?", "Jupiter.", {"topic": "space"})


# ---- bad input: one line naming file and row, exit 1, nothing written --------------------------------------------
BAD_INPUTS = {
    "malformed csv": ("prepare_csv", "--csv_dir", "bad.csv", 'instruction,output\nq,"a"b\n',
                      ["bad.csv: row 1 (line 2): malformed CSV"]),
    "unclosed quote": ("prepare_csv", "--csv_dir", "open.csv", 'instruction,output\nq,a\nq2,"never closed\n',
                       ["open.csv: row 2 (line 3): malformed CSV"]),
    "no output column": ("prepare_csv", "--csv_dir", "cols.csv", "instruction,answer\nq,a\n",
                         ["cols.csv", "no 'output' column (found: 'instruction', 'answer')"]),
    "no instruction field": ("prepare_json", "--data_path", "rows.jsonl", '{"prompt": "q", "output": "a"}\n',
                             ["rows.jsonl: row 1 has no 'instruction' field"]),
    "empty output": ("prepare_json", "--data_path", "empty_out.json",
                     '[{"instruction": "q", "output": "a"}, {"instruction": "q2", "output": " "}]',
                     ["empty_out.json: row 2: empty output", "--on_bad_row skip"]),
    "not utf-8": ("prepare_json", "--data_path", "latin1.jsonl",
                  '{"instruction": "q", "output": "a"}\n{"instruction": "caf\xe9", "output": "b"}\n'.encode("latin-1"),
                  ["latin1.jsonl:2: not valid UTF-8", "save the file as UTF-8"]),
    "malformed json line": ("prepare_lima", "--data_path", "train.jsonl",
                            '{"conversations": ["q", "a"]}\n{"conversations": ["q", \n',
                            ["train.jsonl:2: not valid JSON"]),
    "empty file": ("prepare_alpaca", "--data_path", "alpaca.json", "", ["alpaca.json: the file is empty"]),
}


def test_missing_source_file_names_the_flag_the_script_takes(capsys, smollm2_dir, tmp_path):
    code, _, err = run_script(capsys, "prepare_csv", "--csv_dir", tmp_path / "nope.csv", "--checkpoint_dir",
                              smollm2_dir, "--destination_path", tmp_path / "out")
    assert_one_line_error(code, err, "nope.csv: file not found (--csv_dir)")
    code, _, err = run_script(capsys, "prepare_json", "--data_path", tmp_path / "qa.jsonl", "--checkpoint_dir",
                              smollm2_dir, "--columns", '{"instruction": "question", "output": "answr"}')
    assert_one_line_error(code, err, "qa.jsonl: file not found (--data_path)")
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    code, _, err = run_script(capsys, "prepare_json", "--data_path", tmp_path / "qa.jsonl", "--checkpoint_dir",
                              smollm2_dir, "--columns", '{"instruction": "question", "output": "answr"}',
                              "--destination_path", tmp_path / "out")
    assert_one_line_error(code, err, "no 'answr' field to use as 'output'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_error(capsys, smollm2_dir, tmp_path, case):
    script, flag, name, content, fragments = BAD_INPUTS[case]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    extra = ["--on_bad_row", "error"] if case == "empty output" else []
    code, _, err = run_script(capsys, script, flag, path, "--checkpoint_dir", smollm2_dir,
                              "--destination_path", tmp_path / "out", *extra)
    line = assert_one_line_error(code, err, *fragments)
    assert str(tmp_path) in line  # the full path of the file
    assert not (tmp_path / "out").exists()


def test_checkpoint_without_tokenizer(capsys, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "a.csv").write_text("instruction,output\nq,a\n")
    code, _, err = run_script(capsys, "prepare_csv", "--csv_dir", tmp_path / "a.csv",
                              "--checkpoint_dir", tmp_path / "model", "--destination_path", tmp_path / "out")
    assert_one_line_error(code, err, str(tmp_path / "model"), "no tokenizer.model or tokenizer.json")
    code, _, err = run_script(capsys, "prepare_csv", "--csv_dir", tmp_path / "a.csv")
    assert_one_line_error(code, err, "--checkpoint_dir is required")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_command_line_error_in_a_real_process(smollm2_dir, tmp_path):
    (tmp_path / "bad.csv").write_text('instruction,output\nq,"a"b\n')
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_csv.py"), "--csv_dir",
                           str(tmp_path / "bad.csv"), "--checkpoint_dir", str(smollm2_dir),
                           "--destination_path", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, f"{tmp_path / 'bad.csv'}: row 1 (line 2): malformed CSV")
    assert proc.returncode == 1 and not (tmp_path / "out").exists()


# ---- reuse and rebuild ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_rerun_is_a_no_op_until_tokenizer_template_or_input_change(capsys, shared_dir, smollm2_dir, llama_dir,
                                                                    tmp_path):
    rows = json.loads((shared_dir / "datasets/alpaca/alpaca_random_9k.json").read_text())[:40]
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(rows))
    out = tmp_path / "out"

    def prepare(*args):
        code, stdout, err = run_script(capsys, "prepare_alpaca", "--data_path", data, "--destination_path", out, *args)
        assert code == 0, err
        return stdout, json.loads((out / "manifest.json").read_text()), (out / "train.pt").stat().st_mtime_ns

    stdout, first, mtime = prepare("--checkpoint_dir", smollm2_dir)
    assert "40 rows" in stdout
    stdout, again, mtime_again = prepare("--checkpoint_dir", smollm2_dir)
    assert "nothing to do" in stdout and again == first and mtime_again == mtime
    stdout, plain, _ = prepare("--checkpoint_dir", smollm2_dir, "--prompt_style", "plain")
    assert "nothing to do" not in stdout and plain["prompt_style"] == "plain"
    assert plain["fingerprint"] != first["fingerprint"]
    stdout, llama, _ = prepare("--checkpoint_dir", llama_dir, "--prompt_style", "plain")
    assert "nothing to do" not in stdout and llama["tokenizer_fingerprint"] != plain["tokenizer_fingerprint"]
    load_prepared(out, Tokenizer(llama_dir))  # the data now matches the new tokenizer
    stdout, _, _ = prepare("--checkpoint_dir", llama_dir, "--prompt_style", "plain")
    assert "nothing to do" in stdout
    data.write_text(json.dumps(rows[:30]))
    stdout, changed, _ = prepare("--checkpoint_dir", llama_dir, "--prompt_style", "plain")
    assert "nothing to do" not in stdout and changed["counts"]["rows_in"] == 30
    stdout, _, _ = prepare("--checkpoint_dir", llama_dir, "--prompt_style", "plain", "--max_seq_length", 256)
    assert "nothing to do" not in stdout
    stdout, _, _ = prepare("--checkpoint_dir", llama_dir, "--prompt_style", "plain", "--max_seq_length", 256,
                           "--force", "true")
    assert "nothing to do" not in stdout


# ---- the gated LIMA download -------------------------------------------------------------------------------------
LIMA_ROWS = [{"conversations": ["What is 2+2?", "4."], "source": "stackexchange"},
             {"conversations": ["Name a prime.", "7.", "Another?", "11."], "source": "multi_turn"},
             {"conversations": ["Say hi.", "Hi!"], "source": "wikihow"}]


def hub_env(endpoint: str, tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "HUGGING_FACE_HUB_TOKEN"}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    env.update(extra)
    return env


@pytest.mark.slow
def test_lima_download_from_the_hub(smollm2_dir, tmp_path):
    lima = "".join(json.dumps(row) + "\n" for row in LIMA_ROWS)
    with FakeHub(valid_tokens=(TOKEN,)) as hub:
        hub.add_repo("GAIR/lima", {"train.jsonl": lima}, repo_type="dataset", gated=True, allowed_tokens={TOKEN})
        command = [sys.executable, str(ROOT / "scripts" / "prepare_lima.py"), "--checkpoint_dir", str(smollm2_dir),
                   "--test_split_fraction", "0"]
        # both runs at once: each pays the interpreter start-up, not one after the other
        without = subprocess.Popen([*command, "--destination_path", str(tmp_path / "denied")], text=True,
                                   env=hub_env(hub.url, tmp_path / "a"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with_token = subprocess.Popen([*command, "--destination_path", str(tmp_path / "lima")], text=True,
                                      env=hub_env(hub.url, tmp_path / "b", HF_TOKEN=TOKEN), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        denied_out, denied_err = without.communicate(timeout=180)
        out, err = with_token.communicate(timeout=180)
    assert_one_line_error(without.returncode, denied_err, "GAIR/lima: gated dataset", "HF_TOKEN")
    assert with_token.returncode == 0, err
    train, _, manifest = load_prepared(tmp_path / "lima")
    assert manifest["counts"]["rows_in"] == 3 and manifest["counts"]["multi_turn"] == 0  # first exchanges only
    assert {e["source"] for e in train} == {"stackexchange", "multi_turn", "wikihow"}
    assert Path(manifest["source_files"][0]["path"]).is_relative_to(tmp_path / "lima" / "source")  # cached there
    for text in (out, err, denied_out, denied_err, (tmp_path / "lima" / "manifest.json").read_text()):
        assert TOKEN not in text


# ---- Parquet, Arrow and Hub datasets (read with datasets) -----------------------------------------------------------
@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """datasets' cache (local Parquet files are converted into it) in tmp_path, not ~/.cache/huggingface."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")


def assert_same_prepared(expected: Path, actual: Path) -> None:
    train, test, manifest = load_prepared(expected)
    other_train, other_test, other_manifest = load_prepared(actual)
    assert manifest["counts"] == other_manifest["counts"]
    for examples, others in ((train, other_train), (test, other_test)):
        assert len(examples) == len(others)
        for example, other in zip(examples, others):
            assert example.keys() == other.keys()
            for key, value in example.items():
                assert torch.equal(value, other[key]) if isinstance(value, torch.Tensor) else value == other[key], key


@pytest.mark.slow
def test_parquet_arrow_and_hub_dataset_prepare_like_json(capsys, shared_dir, smollm2_dir, tmp_path, datasets_cache):
    import datasets

    rows = json.loads((shared_dir / "datasets/alpaca/alpaca_random_9k.json").read_text())[:30]
    for i, row in enumerate(rows[::3]):  # metadata some rows have: null in the other rows' Parquet columns
        row.update(topic=f"topic {i % 2}", rating=i, tags=["a", "b"][: i % 3])
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    dataset = datasets.Dataset.from_list(rows)
    dataset.to_parquet(str(tmp_path / "rows.parquet"))
    dataset.save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "saved" / "data-00000-of-00001.arrow").rename(tmp_path / "rows.arrow")
    settings = ["--checkpoint_dir", str(smollm2_dir), "--test_split_fraction", "0.2"]
    with FakeHub() as hub:
        hub.add_repo("org/rows", {"data/train-00000-of-00001.parquet": (tmp_path / "rows.parquet").read_bytes(),
                                  "README.md": "# rows"}, repo_type="dataset")
        command = [sys.executable, str(ROOT / "scripts" / "prepare_json.py"), *settings]

        def start(name: str, *args: str) -> subprocess.Popen:  # all at once: each pays the interpreter start-up
            return subprocess.Popen([*command, "--destination_path", str(tmp_path / name), *args], text=True,
                                    env=hub_env(hub.url, tmp_path / name), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)

        runs = {"hub": start("hub", "--dataset_id", "org/rows"),
                "no split": start("no_split", "--dataset_id", "org/rows", "--split", "validation"),
                "no dataset": start("no_dataset", "--dataset_id", "org/nope")}
        for suffix in ("json", "parquet", "arrow"):
            code, _, err = run_script(capsys, "prepare_json", "--data_path", tmp_path / f"rows.{suffix}",
                                      "--destination_path", tmp_path / suffix, *settings)
            assert code == 0, err
        outputs = {name: proc.communicate(timeout=300) for name, proc in runs.items()}
        results = {name: (proc.returncode, *outputs[name]) for name, proc in runs.items()}
    code, out, err = results["hub"]
    assert code == 0, err
    for name in ("parquet", "arrow", "hub"):
        assert_same_prepared(tmp_path / "json", tmp_path / name)
    manifest = load_prepared(tmp_path / "hub")[2]
    assert manifest["name"] == "rows" and manifest["options"] == {
        "columns": {}, "format": None, "dataset_id": "org/rows", "subset": None, "split": "train", "revision": None}
    assert Path(manifest["source_files"][0]["path"]).is_relative_to(tmp_path / "hub" / "hf_home")  # datasets' cache
    assert_one_line_error(*results["no split"][::2], "org/rows: no split 'validation' (--split); the dataset has: train")
    assert_one_line_error(*results["no dataset"][::2], "org/nope: no such dataset repository on the Hub")
    assert not any((tmp_path / name / "manifest.json").exists() for name in ("no_split", "no_dataset"))


@pytest.mark.parametrize("script, sample, args", [
    ("prepare_dolly", "dolly/dolly_3k.jsonl", []),
    ("prepare_lima", "lima/train.jsonl", ["--include_multiturn_conversations", "true"]),
    ("prepare_oasst", "oasst_messages.jsonl", ["--languages", "all"]),
])
@pytest.mark.slow
def test_the_dataset_scripts_read_parquet_like_their_jsonl(capsys, shared_dir, smollm2_dir, tmp_path, datasets_cache,
                                                            script, sample, args):
    import datasets

    path = FIXTURES / sample if (FIXTURES / sample).is_file() else shared_dir / "datasets" / sample
    rows = [json.loads(line) for line in path.read_text().splitlines()[:60]]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "rows.parquet"))
    for suffix in ("jsonl", "parquet"):
        code, _, err = run_script(capsys, script, "--data_path", tmp_path / f"rows.{suffix}", "--checkpoint_dir",
                                  smollm2_dir, "--destination_path", tmp_path / suffix, *args)
        assert code == 0, err
    assert_same_prepared(tmp_path / "jsonl", tmp_path / "parquet")


def test_parquet_column_mapping_and_errors(capsys, smollm2_dir, tmp_path, datasets_cache):
    import datasets

    rows = [{"question": "Largest planet?", "answer": "Jupiter.", "topic": "space"},
            {"question": "Boiling point of water at sea level?", "answer": "100 degrees Celsius.", "topic": None}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "qa.parquet"))
    args = ["--data_path", tmp_path / "qa.parquet", "--checkpoint_dir", smollm2_dir, "--test_split_fraction", 0]
    code, _, err = run_script(capsys, "prepare_json", *args, "--destination_path", tmp_path / "out",
                              "--columns", '{"instruction": "question", "output": "answer"}')
    assert code == 0, err
    train, _, manifest = load_prepared(tmp_path / "out")
    assert manifest["name"] == "qa" and manifest["sources"] == {"qa": 2}
    assert [(e["instruction"], e["output"], e.get("metadata")) for e in train] == [
        ("Largest planet?", "Jupiter.", {"topic": "space"}),
        ("Boiling point of water at sea level?", "100 degrees Celsius.", None)]
    code, _, err = run_script(capsys, "prepare_json", *args, "--destination_path", tmp_path / "typo",
                              "--columns", '{"instruction": "question", "output": "answr"}')
    assert_one_line_error(code, err, f"{tmp_path / 'qa.parquet'}: no column(s) 'answr' named in --columns "
                          "(its columns: question, answer, topic)")
    code, _, err = run_script(capsys, "prepare_json", *args, "--destination_path", tmp_path / "unmapped")
    assert_one_line_error(code, err, "no 'instruction' column (found: 'question', 'answer', 'topic')")
    code, _, err = run_script(capsys, "prepare_json", *args, "--split", "test")
    assert_one_line_error(code, err, "--split go(es) with --dataset_id")
    assert not (tmp_path / "typo").exists() and not (tmp_path / "unmapped").exists()


# ---- every prepare script: its manifest and summary line are the data it wrote -------------------------------------
def _head(path, rows: int, tmp_path) -> "Path":
    """The first rows of a shared dataset, in its own layout (JSON list or JSONL)."""
    if path.suffix == ".json":
        rows_of = json.loads(path.read_text())[:rows]
        out = tmp_path / path.name
        out.write_text(json.dumps(rows_of))
        return out
    out = tmp_path / path.name
    out.write_text("".join(path.read_text().splitlines(keepends=True)[:rows]))
    return out


SCRIPT_INPUTS = {  # script -> (its input's flags, given tmp_path and the shared dir)
    "prepare_alpaca": lambda tmp, shared: ["--data_path", _head(shared / "datasets/alpaca/alpaca_random_9k.json", 60,
                                                                  tmp)],
    "prepare_dolly": lambda tmp, shared: ["--data_path", _head(shared / "datasets/dolly/dolly_3k.jsonl", 60, tmp)],
    "prepare_lima": lambda tmp, shared: ["--data_path", _head(shared / "datasets/lima/train.jsonl", 40, tmp),
                                         "--include_multiturn_conversations", "true"],
    "prepare_json": lambda tmp, shared: ["--data_path", _head(shared / "datasets/alpaca_gpt4/sample_999.json", 60,
                                                                tmp)],
    "prepare_csv": lambda tmp, shared: ["--csv_dir", FIXTURES / "instructions.csv"],
    "prepare_longform": lambda tmp, shared: ["--data_path", FIXTURES / "longform_sample.json"],
    "prepare_flan": lambda tmp, shared: ["--data_path", FIXTURES / "flan", "--subsets",
                                         "aeslc_10templates,cosmos_qa_10templates"],
    "prepare_oasst": lambda tmp, shared: ["--data_path", FIXTURES / "oasst_messages.jsonl"],
    "prepare_natural_instructions": lambda tmp, shared: ["--data_path", FIXTURES / "natural_instructions"],
    "prepare_p3": lambda tmp, shared: ["--data_path", FIXTURES / "p3", "--subsets", "*"],
    "prepare_preferences": lambda tmp, shared: ["--data_path", FIXTURES / "preferences" / "hh_rlhf.jsonl"],
}


@pytest.mark.parametrize("script", SCRIPT_INPUTS)
def test_each_scripts_manifest_and_summary_line_are_its_data(capsys, shared_dir, smollm2_dir, tmp_path, script):
    out = tmp_path / "out"
    code, stdout, err = run_script(capsys, script, *SCRIPT_INPUTS[script](tmp_path, shared_dir), "--checkpoint_dir",
                                   smollm2_dir, "--destination_path", out, "--max_seq_length", 160,
                                   "--test_split_fraction", 0.2)
    assert code == 0, err
    format = "preference" if script == "prepare_preferences" else "instructions"
    manifest = check_manifest_is_the_data(out, stdout, format)
    assert manifest["counts"]["rows_out"] > 0
