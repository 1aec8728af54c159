"""Comparing dataset variants: end to end on two tiny variants from real Alpaca rows (the training loop, eval loss,
EOS rate, a pairwise judge, the table and the plot), contamination warning, eval-file layouts, the judge's win-rate
arithmetic with position-biased fake judges, variant naming.
"""

import importlib.util
import itertools
import json

import pytest

from conftest import ROOT
from lit_gpt.compare import PAIRWISE_PROMPT, eval_rows, make_variants, pairwise_preference, win_rate
from lit_gpt.data.mixing import mix
from lit_gpt.data.prepare import prepare
from lit_gpt.data.records import iter_records
from lit_gpt.utils import UserError, run_cli, space_separated_lists


def load_script():
    spec = importlib.util.spec_from_file_location("compare_datasets_script", ROOT / "scripts" / "compare_datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def variants(tiny_checkpoint_dir, shared_dir, tmp_path_factory):
    """Two tiny variants of 24 real rows: AlpaGasus-kept Alpaca rows, and random Alpaca rows plus one training row
    that paraphrases a held-out Self-Instruct prompt (a contamination the comparison must report)."""
    checkpoint_dir = tiny_checkpoint_dir("smollm2", weights=True, block_size=256)
    root = tmp_path_factory.mktemp("compare")
    datasets = shared_dir / "datasets"
    dirs = {}
    for name, path in (("alpagasus", datasets / "alpagasus" / "alpaca_claude_t45.json"),
                       ("alpaca", datasets / "alpaca" / "alpaca_random_9k.json")):
        prepare(itertools.islice(iter_records(path), 24), name=name, source_files=[path], checkpoint_dir=checkpoint_dir,
                destination_path=root / name, test_split_fraction=0.2, max_seq_length=64)
        dirs[name] = root / name
    held_out = eval_rows(datasets / "eval" / "sinstruct_test_set.jsonl")
    leak = root / "leak.jsonl"
    assert held_out[10]["instruction"] == "Come up with some search queries on google about coding stuff."
    leak.write_text(json.dumps({"instruction": "Please come up with a few search queries on google about coding.",
                                "input": "", "output": "python list sort; git undo commit"}) + "\n")
    mix([dirs["alpaca"], leak], root / "alpaca_leaky", test_split_fraction=0.0)
    return {"checkpoint_dir": checkpoint_dir, "clean": dirs["alpagasus"], "leaky": root / "alpaca_leaky",
            "eval_path": datasets / "eval" / "sinstruct_test_set.jsonl", "root": root}


def test_compare_end_to_end(variants, tmp_path, capsys):
    out_dir = tmp_path / "compare"
    argv = ["--checkpoint_dir", str(variants["checkpoint_dir"]), "--data_dirs", str(variants["clean"]),
            str(variants["leaky"]), "--eval_path", str(variants["eval_path"]), "--judge_checkpoint_dir",
            str(variants["checkpoint_dir"]), "--out_dir", str(out_dir), "--max_iters", "2", "--batch_size", "4",
            "--micro_batch_size", "4", "--learning_rate", "0.01", "--warmup_steps", "0", "--eval_prompts", "3",
            "--eval_examples", "4", "--max_new_tokens", "4", "--hyperparameters", '{"eval_interval": 2}']
    script = load_script()
    run_cli(script.main, args=space_separated_lists(argv, script.LIST_FLAGS))
    captured = capsys.readouterr()
    comparison = json.loads((out_dir / "comparison.json").read_text())
    clean, leaky = comparison["variants"]
    assert [clean["variant"], leaky["variant"]] == ["alpagasus", "alpaca_leaky"]
    for row in (clean, leaky):
        assert row["steps"] == 2 and (out_dir / row["variant"] / "lit_model.pth.lora").is_file()
        assert 0 < row["eval_loss"] < 20 and 0 <= row["eos_rate"] <= 1 and len(row["answers"]) == 3
        assert row["best_val_loss"] is not None
    # the same hyperparameters for both runs
    settings = [(out_dir / r["variant"] / "hyperparameters.yaml").read_text().split("\n") for r in (clean, leaky)]
    differing = [a for a, b in zip(*settings) if a != b]
    assert all(line.split(":")[0] in ("data_dir", "out_dir") for line in differing), differing
    # contamination: the paraphrased held-out prompt is found in the leaky variant only, and warned about
    assert clean["contaminated_prompts"] == 0 and leaky["contaminated_prompts"] == 1
    assert "warning" in captured.err and str(variants["leaky"]) in captured.err
    # the judge compared the second variant with the first in both orders
    assert comparison["judge"]["baseline"] == "alpagasus" and 0 <= leaky["win_rate"] <= 1
    assert leaky["wins"] + leaky["ties"] + leaky["losses"] == 3
    table = (out_dir / "comparison.md").read_text()
    assert "| variant |" in table and "| alpaca_leaky |" in table and "win rate vs alpagasus" in table
    assert "| variant |" in captured.out
    assert (out_dir / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second comparison into the same out_dir must not silently overwrite the runs
    with pytest.raises(UserError, match="--resume true"):
        script.main(checkpoint_dir=variants["checkpoint_dir"], data_dirs=[str(variants["clean"])], out_dir=out_dir,
                    max_iters=1)


def test_bad_settings_are_one_line_errors(variants, tmp_path):
    script = load_script()
    with pytest.raises(UserError, match="not constants of finetune/lora.py"):
        script.main(checkpoint_dir=variants["checkpoint_dir"], data_dirs=[str(variants["clean"])],
                    out_dir=tmp_path, hyperparameters={"lerning_rate": 1})
    with pytest.raises(UserError, match="--order 'sideways' is not known"):
        script.main(checkpoint_dir=variants["checkpoint_dir"], data_dirs=[str(variants["clean"])],
                    out_dir=tmp_path, orders=["sideways"])


def test_eval_file_layouts(shared_dir):
    eval_dir = shared_dir / "datasets" / "eval"
    sinstruct = eval_rows(eval_dir / "sinstruct_test_set.jsonl")
    assert len(sinstruct) == 252 and all(r["instruction"] and r["output"] for r in sinstruct)
    assert any(r["input"] for r in sinstruct)
    vicuna = eval_rows(eval_dir / "vicuna_test_set.jsonl")
    assert len(vicuna) == 80 and vicuna[0] == {"instruction": "How can I improve my time management skills?",
                                                "input": "", "output": None}
    mt_bench = eval_rows(eval_dir / "mt_bench_questions.jsonl")
    assert len(mt_bench) == 80 and mt_bench[0]["instruction"].startswith("Compose an engaging travel blog post")


class FakeJudge:
    """Scores 1 ("response 1 is better") .. 2 ("response 2") by a rule on the two responses."""

    def __init__(self, rule):
        self.rule, self.requests = rule, []

    def score(self, examples):
        results = []
        for example in examples:
            first, second = example.output.split("\n\n[Response 2]\n")
            first = first.removeprefix("[Response 1]\n")
            self.requests.append(PAIRWISE_PROMPT.format(example.instruction, example.input, example.output))
            results.append({"score": self.rule(first, second)})
        return results


def test_win_rate_in_both_orders():
    prompts = [{"instruction": f"q{i}", "input": ""} for i in range(4)]
    baseline = ["short", "short", "a long answer", "x"]
    variant = ["a long answer", "a longer answer", "short", "x"]
    # a judge that always picks the first position: both orders cancel, every prompt is a tie
    biased = win_rate(pairwise_preference(FakeJudge(lambda a, b: 1.0), prompts, baseline, variant))
    assert (biased["wins"], biased["ties"], biased["losses"]) == (0, 4, 0) and biased["win_rate"] == 0.5
    assert biased["order_consistent"] == 0
    # a judge that prefers the longer answer wherever it stands
    judge = FakeJudge(lambda a, b: 2.0 if len(b) > len(a) else 1.0 if len(a) > len(b) else 1.5)
    fair = win_rate(pairwise_preference(judge, prompts, baseline, variant))
    assert (fair["wins"], fair["ties"], fair["losses"]) == (2, 1, 1) and fair["win_rate"] == 2.5 / 4
    assert len(judge.requests) == 8 and "[Instruction]\nq0" in judge.requests[0]


def test_variant_names():
    names = [v.name for v in make_variants(["data/a", "data/b"], ["shuffle"], [1])]
    assert names == ["a", "b"]
    variants = make_variants(["data/a"], ["shuffle", "as_given"], [1, 3])
    assert [(v.name, v.order, v.epochs) for v in variants] == [
        ("a-shuffle-1ep", "shuffle", 1), ("a-shuffle-3ep", "shuffle", 3),
        ("a-as_given-1ep", "as_given", 1), ("a-as_given-3ep", "as_given", 3)]
    assert [v.name for v in make_variants(["x/data", "y/data"], ["shuffle"], [1])] == ["data-1", "data-2"]
