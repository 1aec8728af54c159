"""scripts/inspect_data.py, the data doctor: per-source report, PNG histogram, --show, exit 1 on defects."""

import itertools
import json
import shutil

import pytest
import torch

from helpers import assert_one_line_error, run_script
from lit_gpt.data.prepare import prepare
from lit_gpt.data.records import iter_records
from lit_gpt.data.tokenize import IGNORE_INDEX


@pytest.fixture(scope="module")
def llama_dir(tiny_checkpoint_dir):
    return tiny_checkpoint_dir("llama-2", block_size=512)


@pytest.fixture(scope="module")
def prepared(shared_dir, llama_dir, tmp_path_factory):
    """40 Alpaca rows (one of them twice) and 6 LIMA conversations (some multi-turn, some truncated at 512 tokens)."""
    alpaca = shared_dir / "datasets/alpaca/alpaca_random_9k.json"
    lima = shared_dir / "datasets/lima/train.jsonl"
    rows = [(w, {**r, "source": "alpaca"}) for w, r in itertools.islice(iter_records(alpaca), 40)]
    rows.append(rows[0])
    multi_turn = [(w, r) for w, r in iter_records(lima) if len(r["conversations"]) > 2][:3]
    rows += [(w, {**r, "source": "lima"}) for w, r in [*itertools.islice(iter_records(lima), 3), *multi_turn]]
    out = tmp_path_factory.mktemp("prepared")
    prepare(rows, name="mix", source_files=[alpaca, lima], checkpoint_dir=llama_dir, destination_path=out,
            test_split_fraction=0.1)
    return out


def test_clean_data_report(capsys, prepared):
    code, out, err = run_script(capsys, "inspect_data", "--data_dir", prepared)
    assert code == 0, err
    manifest = json.loads((prepared / "manifest.json").read_text())
    lines = out.splitlines()
    alpaca_row = next(line for line in lines if line.startswith("alpaca "))
    assert alpaca_row.split()[1] == str(manifest["sources"]["alpaca"])
    lima_row = next(line for line in lines if line.startswith("lima "))
    assert lima_row.split()[1] == str(manifest["sources"]["lima"]) == "6"
    truncated = int(lima_row.split()[6])
    assert truncated == manifest["counts"]["truncated"] > 0
    assert int(alpaca_row.split()[7]) == 1  # the duplicated row, both times in train (in test too: a defect)
    assert alpaca_row.split()[8] == lima_row.split()[8] == "0"  # defects per source
    # the (all) row: the manifest's counts and statistics, which prepare took from the same examples
    every, counts, lengths = next(line for line in lines if line.startswith("(all) ")).split(), manifest["counts"], \
        manifest["token_lengths"]
    assert int(every[1]) == counts["train"] + counts["test"] == counts["rows_out"]
    assert [int(v) for v in every[2:5]] == [lengths["p50"], lengths["p99"], lengths["max"]]
    assert every[5] == f"{manifest['trained_token_share']:.1%}" and int(every[6]) == counts["truncated"]
    assert "token lengths, lima:" in out and "token lengths, all sources:" in out and "no defects found" in out
    assert (prepared / "token_lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_marks_trained_tokens(capsys, prepared):
    code, out, _ = run_script(capsys, "inspect_data", "--data_dir", prepared, "--show", 2,
                              "--plot", prepared / "other.png")
    assert code == 0
    shown = out.split("--- ")[1:]
    assert len(shown) == 2
    first = shown[0].split("\n", 1)[1]  # below the header line with its legend
    assert "[[" in first and first.rstrip().endswith("</s>]]")  # the answer and its EOS are trained
    assert first.index("### Response:\n") < first.index("[[")  # the prompt is not
    assert "\033[" not in out
    code, out, _ = run_script(capsys, "inspect_data", "--data_dir", prepared, "--show", 1, "--color", "true",
                              "--plot", prepared / "other.png")
    assert code == 0 and "\033[1;32m" in out and "\033[2m" in out and "[[" not in out


def corrupt(prepared, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    train = torch.load(data / "train.pt", weights_only=True)
    bos, eos = 1, 2
    no_eos = train[0]
    no_eos["labels"][-1] = IGNORE_INDEX  # the model would never learn to stop
    doubled = train[1]
    doubled["input_ids"] = torch.cat([torch.tensor([bos]), doubled["input_ids"]])
    doubled["labels"] = torch.cat([torch.tensor([IGNORE_INDEX]), doubled["labels"]])
    empty = train[2]
    empty["labels"] = torch.where(empty["input_ids"] == eos, empty["labels"], IGNORE_INDEX)
    wrong = train[3]
    first_trained = int((wrong["labels"] != IGNORE_INDEX).nonzero()[0])
    wrong["labels"][first_trained] += 1  # a label that is not the next input token
    torch.save(train, data / "train.pt")
    return data, [e["id"] for e in train[:4]]


def test_plot_into_a_folder_is_one_line(capsys, prepared, tmp_path):
    code, _, err = run_script(capsys, "inspect_data", "--data_dir", prepared, "--plot", tmp_path)
    assert_one_line_error(code, err, f"{tmp_path}: is a directory, expected a file; choose another --plot")


def test_defects_exit_1(capsys, prepared, tmp_path):
    data, ids = corrupt(prepared, tmp_path)
    code, out, err = run_script(capsys, "inspect_data", "--data_dir", data)
    line = assert_one_line_error(code, err, str(data), "1 trained span lacks EOS", "1 doubled BOS", "1 empty response",
                                 "1 labels differ from input_ids")
    assert "no defects found" not in out
    all_sources = next(line for line in out.splitlines() if line.startswith("(all)"))
    assert all_sources.split()[8] == "4"  # examples with a defect
    for example_id in ids:
        assert f"id={example_id}" in out
    assert line.startswith("error: ")


def test_test_examples_also_in_train_are_a_defect(capsys, prepared, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    train = torch.load(data / "train.pt", weights_only=True)
    test = torch.load(data / "test.pt", weights_only=True)
    torch.save(test + [train[5]], data / "test.pt")
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["counts"]["test"] += 1
    (data / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run_script(capsys, "inspect_data", "--data_dir", data)
    assert_one_line_error(code, err, f"{data}: defects that would silently hurt training: 1 test examples also in "
                          "train", "remove the rows that are in the source twice")
    assert "no defects found" not in out
    assert f"test[{len(test)}] id={train[5]['id']}" in out
    all_sources = next(line for line in out.splitlines() if line.startswith("(all)"))
    assert all_sources.split()[8] == "1"


def test_stale_data_and_missing_tokenizer(capsys, prepared, tiny_checkpoint_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    code, _, err = run_script(capsys, "inspect_data", "--data_dir", data, "--checkpoint_dir",
                              tiny_checkpoint_dir("smollm2"))
    assert_one_line_error(code, err, "prepared with another tokenizer")
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["tokenizer_dir"] = str(tmp_path / "deleted")
    manifest["counts"]["train"] += 1
    (data / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_script(capsys, "inspect_data", "--data_dir", data, "--show", 1)
    assert_one_line_error(code, err, "the tokenizer the data was prepared with is gone; pass --checkpoint_dir")
    code, _, err = run_script(capsys, "inspect_data", "--data_dir", data)
    assert_one_line_error(code, err, "1 files do not match the manifest")
    code, _, err = run_script(capsys, "inspect_data", "--data_dir", tmp_path / "nothing")
    assert_one_line_error(code, err, "no train.pt")
