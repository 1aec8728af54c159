"""scripts/compare_datasets.py end to end on two tiny variants from real Alpaca rows.

The training loop (one run per seed), eval loss, EOS rate, a pairwise judge, the statistics, the tables and the plot;
the contamination warning; one-line errors for bad settings."""

import importlib.util
import itertools
import json
import os
import socket
from pathlib import Path

import pytest

from helpers import ROOT
from lit_gpt.eval.held_out import eval_rows
from lit_gpt.file_names import LOCK_FILE
from lit_gpt.data.mixing import mix
from lit_gpt.data.prepare import prepare
from lit_gpt.data.records import iter_records
from lit_gpt.studies.recipe import BuildStep
from lit_gpt.utils import UserError, run_cli, space_separated_lists

pytestmark = pytest.mark.slow  # real datasets prepared and evaluated end to end


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
            "--eval_examples", "4", "--max_new_tokens", "4", "--hyperparameters", '{"eval_interval": 2}',
            "--ifeval_prompts", "3", "--ifeval_max_new_tokens", "4", "--seeds", "5", "6", "--aa_control", "false",
            "--primary_metric", "ifeval_prompt_strict"]
    script = load_script()
    run_cli(script.main, args=space_separated_lists(argv, script.LIST_FLAGS))
    captured = capsys.readouterr()
    comparison = json.loads((out_dir / "comparison.json").read_text())
    clean, leaky = comparison["arms"]
    assert [clean["name"], leaky["name"]] == ["alpagasus", "alpaca_leaky"]
    for arm in (clean, leaky):
        assert [run["seed"] for run in arm["runs"]] == [5, 6]
        for run in arm["runs"]:
            evaluation = run["evaluation"]
            assert run["steps"] == 2 and (Path(run["run_dir"]) / "lit_model.pth.lora").is_file()
            assert run["run_dir"] == str(out_dir / arm["name"] / f"seed-{run['seed']}")
            assert 0 < evaluation["losses"]["held_out"]["token_nll"] < 20 and 0 <= evaluation["eos_rate"] <= 1
            assert len(evaluation["answers"]) == 3 and run["best_val_loss"] is not None
            ifeval = evaluation["ifeval"]
            assert len(ifeval["prompt_strict"]) == 3 and 0 <= ifeval["inst_level_loose_acc"] <= 1
    # the same hyperparameters for every run, the seed aside
    settings = [(out_dir / a["name"] / "seed-5" / "hyperparameters.yaml").read_text().split("\n")
                for a in (clean, leaky)]
    differing = [a for a, b in zip(*settings) if a != b]
    assert all(line.split(":")[0] in ("data_dir", "out_dir") for line in differing), differing
    seeds = [(out_dir / "alpagasus" / f"seed-{s}" / "hyperparameters.yaml").read_text().split("\n") for s in (5, 6)]
    assert [a.split(":")[0] for a, b in zip(*seeds) if a != b] == ["out_dir", "seed"]
    # contamination: the paraphrased held-out prompt is found in the leaky variant only, and warned about
    assert clean["contaminated"]["held_out"] == 0 and leaky["contaminated"]["held_out"] == 1
    assert "warning" in captured.err and str(variants["leaky"]) in captured.err
    # the judge compared each run of the second arm with the first arm's run of the same seed, in both orders
    assert comparison["judge"]["baseline"] == "alpagasus" and 0 <= leaky["judge"]["win_rate"] <= 1
    assert leaky["judge"]["wins"] + leaky["judge"]["ties"] + leaky["judge"]["losses"] == 6
    table = (out_dir / "comparison.md").read_text()
    assert "| arm |" in table and "| alpaca_leaky |" in table and "win rate vs alpagasus %" in table
    assert "**The claim: IFEval prompt-level strict accuracy, every arm against alpagasus**" in captured.out
    assert "No A/A control (--aa_control false)" in table
    assert (out_dir / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (d,) = comparison["statistics"]["comparisons"]
    assert d["arm"] == "alpaca_leaky" and d["items"] == 3 and d["seeds_a"] == d["seeds_b"] == 2
    assert d["low"] <= d["difference"] <= d["high"]
    # a second comparison into the same out_dir must not silently overwrite the runs
    with pytest.raises(UserError, match="--resume true"):
        script.main(checkpoint_dir=variants["checkpoint_dir"], data_dirs=[str(variants["clean"])], out_dir=out_dir,
                    max_iters=1, seeds=[5])


def test_bad_settings_are_one_line_errors(variants, tmp_path):
    script = load_script()
    with pytest.raises(UserError, match="not constants of finetune/lora.py"):
        script.main(checkpoint_dir=variants["checkpoint_dir"], data_dirs=[str(variants["clean"])],
                    out_dir=tmp_path, hyperparameters={"lerning_rate": 1})
    with pytest.raises(UserError, match="--order 'sideways' is not known"):
        script.main(checkpoint_dir=variants["checkpoint_dir"], data_dirs=[str(variants["clean"])],
                    out_dir=tmp_path, orders=["sideways"])


def test_a_recipe_is_checked_before_it_builds_anything(variants, tmp_path):
    script = load_script()
    recipe = tmp_path / "recipe.yaml"
    # the build step would fail (no such input): the bad compare settings must be reported first
    build = ["mix_datasets.py --inputs {data}/nowhere --destination_path {data}/built"]
    for compare, error in (({"hyperparameters": {"lerning_rate": 1}}, "not constants of finetune/lora.py"),
                           ({"eval_prompt": 3}, r"compare: \['eval_prompt'\] are not flags of compare_datasets.py")):
        recipe.write_text(json.dumps({"question": "Does it check first?", "build": build,
                                      "compare": {"data_dirs": ["{data}/built"], **compare}}))
        with pytest.raises(UserError, match=error):
            script.main(recipe=recipe, checkpoint_dir=variants["checkpoint_dir"], data_root=tmp_path / "data",
                        out_dir=tmp_path / "out")


def test_a_recipe_runs_only_dataset_tools_with_their_own_flags_under_its_data_root(variants, tmp_path):
    script = load_script()
    recipe = tmp_path / "recipe.yaml"
    for step, error in ((f"compare_datasets.py --recipe {recipe}", "must start with a script of scripts/ that recipes "
                                                                   "run: prepare_"),
                        ("mix_datasets.py --inputs {data}/a --destination_path {data}/b --config evil.yaml",
                         "build step 1 \\(mix_datasets.py\\): --config is not a flag a recipe may give "
                         "mix_datasets.py"),
                        ("mix_datasets.py --inp {data}/a --destination_path {data}/b", "--inp is not a flag"),
                        ("mix_datasets.py --inputs {data}/a --destination_path {data}/../b",
                         "--destination_path .*/data/../b lies outside the data root")):
        recipe.write_text(json.dumps({"question": "Is it closed?", "build": [step],
                                      "compare": {"data_dirs": ["{data}/b"]}}))
        with pytest.raises(UserError, match=error):
            script.main(recipe=recipe, checkpoint_dir=variants["checkpoint_dir"], data_root=tmp_path / "data",
                        out_dir=tmp_path / "out")
        assert not (tmp_path / "data").exists() and not (tmp_path / "b").exists()  # nothing ran
        assert not (tmp_path / "out").exists()  # the lock's folder, made for nothing, is gone again


def test_a_second_comparison_into_a_busy_out_dir_is_refused(variants, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a live process holds it
    with pytest.raises(UserError, match=f"{out}: another run is writing here \\(PID {os.getppid()} "):
        load_script().main(checkpoint_dir=variants["checkpoint_dir"], data_dirs=[str(variants["clean"])],
                           out_dir=out)
    with pytest.raises(UserError, match="--out_dir .* contains --data_dirs"):
        load_script().main(checkpoint_dir=variants["checkpoint_dir"], data_dirs=[str(variants["clean"])],
                           out_dir=variants["root"])


def test_a_steps_token_is_masked_in_its_errors(tiny_checkpoint_dir, tmp_path, capsys):
    """A build step runs through the scripts' parser: its --access_token (here one not shaped like a Hub token, which
    only the flag can tell) never shows in what jsonargparse prints for a bad flag value, nor in the step's error."""
    script = load_script()
    token = "my-private-token-0123"
    checkpoint_dir = tiny_checkpoint_dir("smollm2")
    for args, error in ((["--include_multiturn_conversations", "maybe"], "its command line was refused"),
                        (["--data_path", str(tmp_path / token)],
                         f"{tmp_path}/\\*\\*\\*: file not found \\(--data_path\\)")):
        step = BuildStep("prepare_lima.py", ["--access_token", token, *args, "--checkpoint_dir", str(checkpoint_dir),
                                             "--destination_path", str(tmp_path / "lima")])
        where = "recipe.yaml: build step 1 (prepare_lima.py)"
        with pytest.raises(UserError, match=error) as e:
            script.run_step(step, script.load_tool(step, where), where)
        out, err = capsys.readouterr()
        assert token not in str(e.value) + out + err
