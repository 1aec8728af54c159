"""scripts/quickstart.py: its bundled data teaches one checkable style, and the script runs end to end (tiny model).

The real run (SmolLM2-135M-Instruct, minutes) is not a test; see the README for its output."""

import importlib.util
import json
import subprocess
import sys
import tomllib

import pytest

from helpers import ROOT
from lit_gpt.utils import UserError

pytestmark = pytest.mark.slow  # the quickstart end to end

SCRIPT = ROOT / "scripts" / "quickstart.py"
RESOURCES = ROOT / "lit_gpt" / "resources"


def load_script():
    spec = importlib.util.spec_from_file_location("quickstart_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_jsonl(name):
    return [json.loads(line) for line in (RESOURCES / name).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def quickstart():
    return load_script()


def test_style_check(quickstart):
    assert quickstart.follows_taught_style("Short answer: Paris.\nWhy: It is the seat of government.")
    assert quickstart.follows_taught_style("  Short answer: Yes.\nWhy: Because.\n")
    assert not quickstart.follows_taught_style("The capital of France is Paris.")
    assert not quickstart.follows_taught_style("Short answer: Paris. Why: no line break.")
    assert not quickstart.follows_taught_style("Short answer: Paris.\n\nWhy: blank line between.")
    assert not quickstart.follows_taught_style("Sure! Short answer: Paris.\nWhy: not at the start.")
    assert not quickstart.follows_taught_style("Short answer:\nWhy: empty short answer.")


def test_bundled_data_teaches_one_style(quickstart, shared_dir):
    from lit_gpt.tokenizer import Tokenizer

    train, held_out = read_jsonl("quickstart.jsonl"), read_jsonl("quickstart_eval.jsonl")
    assert 75 <= len(train) <= 100 and 5 <= len(held_out) <= 10
    tokenizer = Tokenizer(shared_dir / "tokenizers" / "smollm2")
    for row in train + held_out:
        assert set(row) == {"instruction", "input", "output"}, row
        assert row["instruction"].strip() and isinstance(row["input"], str)
        assert quickstart.follows_taught_style(row["output"]), row["output"]
        short, why = row["output"].split("\n")  # exactly two lines: one sentence each
        assert short.startswith("Short answer: ") and why.startswith("Why: ")
        assert len(tokenizer.encode_ids(row["output"])) < 60, row["output"]  # short answers: fast training
    questions = [(r["instruction"].lower(), r["input"].lower()) for r in train]
    assert len(set(questions)) == len(questions), "duplicate training question"
    assert not {(r["instruction"].lower(), r["input"].lower()) for r in held_out} & set(questions), \
        "a held-out question is also a training question"
    train_answers = {r["output"] for r in train}
    assert not any(r["output"] in train_answers for r in held_out)


def test_bundled_data_is_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "resources/*" in pyproject["tool"]["setuptools"]["package-data"]["lit_gpt"]


@pytest.fixture
def tiny_checkpoint(tiny_checkpoint_dir):
    """A random tiny model with the real SmolLM2 tokenizer (and its chat template)."""
    return tiny_checkpoint_dir("smollm2", weights=True, block_size=256, tie_embeddings=True)


def run_quickstart(tmp_path, *args):
    return subprocess.run([sys.executable, str(SCRIPT), "--data_dir", str(tmp_path / "data"),
                           "--out_dir", str(tmp_path / "out"), *map(str, args)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_quickstart_runs_end_to_end(tmp_path, tiny_checkpoint):
    result = run_quickstart(tmp_path, "--checkpoint_dir", tiny_checkpoint, "--max_iters", 2, "--max_new_tokens", 4)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["prompt_style"] == "smollm2" and manifest["counts"]["train"] >= 75
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["steps"] == 2
    assert (tmp_path / "out" / "lit_model.pth.lora").is_file() and (tmp_path / "out" / "loss.png").is_file()
    assert "BEFORE (base model)" in out and "AFTER (LoRA fine-tuned)" in out
    for row in read_jsonl("quickstart_eval.jsonl"):  # every held-out question is shown
        assert f"Q: {row['instruction']}" in out
    assert "answers in the taught style" in out and "before 0/6" in out  # a random model has no style
    assert f"loss curve: {tmp_path / 'out' / 'loss.png'}" in out
    assert "total time:" in out
    assert not (tmp_path / "checkpoints").exists()  # nothing was downloaded for a given checkpoint


def test_quickstart_with_own_data(tmp_path, tiny_checkpoint, quickstart, capsys):
    data = tmp_path / "mine.csv"
    data.write_text("instruction,output\n" + "".join(f"What is {i} plus {i}?,{2 * i}\n" for i in range(40)))
    result = quickstart.main(data_path=data, checkpoint_dir=tiny_checkpoint, data_dir=tmp_path / "data",
                             out_dir=tmp_path / "out", max_iters=1, max_new_tokens=2)
    out = capsys.readouterr().out
    assert len(result["before"]) == len(result["after"]) == 2  # 5% of 40 rows held out
    assert all(q["instruction"].startswith("What is") for q in result["questions"])
    assert "Q: What is" in out
    assert "answers in the taught style" not in out and "style_after" not in result  # no known style in own data
    # the README promises that running it again works (and reuses the model and the prepared data)
    again = quickstart.main(data_path=data, checkpoint_dir=tiny_checkpoint, data_dir=tmp_path / "data",
                            out_dir=tmp_path / "out", max_iters=1, max_new_tokens=2)
    out = capsys.readouterr().out
    assert "already prepared" in out and f"(replacing the earlier run in {tmp_path / 'out'})" in out
    assert again["after"] == result["after"]  # the same run again: deterministic


def test_quickstart_user_errors(tmp_path, tiny_checkpoint, quickstart):
    result = run_quickstart(tmp_path, "--data_path", tmp_path / "missing.jsonl", "--checkpoint_dir", tiny_checkpoint)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "missing.jsonl" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(UserError, match="nowhere"):  # only the default model is fetched when missing
        quickstart.main(checkpoint_dir=tmp_path / "nowhere", data_dir=tmp_path / "data", out_dir=tmp_path / "out")
