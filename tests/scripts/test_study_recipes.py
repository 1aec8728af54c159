"""Every study recipe in scripts/studies/ runs end to end at a tiny size, so the recipes cannot rot.

Each recipe builds its data with the real tools from a small slice of the shared datasets (same layouts, a few rows),
trains a tiny model for a step or two per variant and evaluates it; the report says what the study is."""

import itertools
import json

import pytest

from helpers import ROOT, load_cached_script
from lit_gpt.utils import run_cli, space_separated_lists

pytestmark = pytest.mark.slow  # every study recipe end to end

RECIPES = sorted((ROOT / "scripts" / "studies").glob("*.yaml"))
SLICES = {"lima/train.jsonl": 80, "alpaca/alpaca_random_9k.json": 60, "alpagasus/alpaca_claude_t45.json": 40,
          "dolly/dolly_3k.jsonl": 40, "eval/sinstruct_test_set.jsonl": 12}


@pytest.fixture(scope="module")
def tiny_shared(shared_dir, tmp_path_factory):
    """The first rows of each shared dataset the recipes read, in the same files and layouts."""
    root = tmp_path_factory.mktemp("shared")
    for name, rows in SLICES.items():
        source, target = shared_dir / "datasets" / name, root / "datasets" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".json"):
            target.write_text(json.dumps(json.loads(source.read_text())[:rows]))
        else:
            with source.open() as f:
                target.write_text("".join(itertools.islice(f, rows)))
    return root


def test_the_five_questions_have_recipes():
    assert [r.name for r in RECIPES] == ["1_quality_vs_quantity.yaml", "2_judge_filtered.yaml", "3_merging.yaml",
                                         "4_ordering.yaml", "5_epochs.yaml"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_at_a_tiny_size(recipe, tiny_checkpoint_dir, tiny_shared, tmp_path, capsys):
    from lit_gpt.studies.recipe import load_recipe

    checkpoint_dir = tiny_checkpoint_dir("smollm2", weights=True, block_size=256)
    small = {"rows": 8, "rows_per_source": 10, "max_seq_length": 128, "prompt_style": "smollm2",
             "scorer_checkpoint_dir": str(checkpoint_dir)}
    settings = {k: v for k, v in small.items() if k in load_recipe(recipe).settings}
    out_dir = tmp_path / "out"
    argv = ["--recipe", str(recipe), "--checkpoint_dir", str(checkpoint_dir), "--shared_dir", str(tiny_shared),
            "--data_root", str(tmp_path / "data"), "--out_dir", str(out_dir), "--settings", json.dumps(settings),
            "--batch_size", "2", "--micro_batch_size", "2", "--ifeval_prompts", "2",
            "--ifeval_max_new_tokens", "4", "--eval_examples", "3", "--eval_batch_size", "2"]
    if "max_iters" in load_recipe(recipe).compare:  # 4 and 5 train whole epochs instead
        argv += ["--max_iters", "2"]
    script = load_cached_script("compare_datasets")
    run_cli(script.main, args=space_separated_lists(argv, script.LIST_FLAGS))
    comparison = json.loads((out_dir / "comparison.json").read_text())
    study = comparison["study"]
    assert study["recipe"] == str(recipe) and study["question"].endswith(load_recipe(recipe).question[-20:])
    assert all(command.startswith("python scripts/") for command in study["build"])
    assert study["settings"]["checkpoint_dir"] == str(checkpoint_dir)
    rows = comparison["variants"]
    assert len(rows) >= 2
    for row in rows:
        assert row["steps"] >= 1 and row["ifeval"]["prompt_level_strict_acc"] is not None
        assert row["eval_loss"] > 0 and row["contaminated_prompts"] == 0
    for row in rows[1:]:  # every later variant against the first, with its interval
        assert set(row["vs_baseline"]) == {"ifeval_prompt_strict", "ifeval_prompt_loose", "answer_nll"}
    report = (out_dir / "comparison.md").read_text()
    assert report.startswith("# " + load_recipe(recipe).question) and "Wall time" in report
    assert "EOS rate" not in report  # no held-out prompts answered (eval_prompts 0): IFEval's "answers ended" instead
    assert "| IFEval answers ended |" in report
    for row in rows[1:]:  # each difference: significant, or how many items a difference of its size would need
        line = next(x for x in report.splitlines() if x.startswith(f"{row['variant']} vs {rows[0]['variant']}: "))
        assert "eval loss: " in line and "IFEval prompt-level strict: " in line
    assert (out_dir / "comparison.png").stat().st_size > 0
    if recipe.stem == "4_ordering":
        assert [r["order"] for r in rows] == ["shuffle", "by_source", "by_length_asc", "curriculum"]
    if recipe.stem == "5_epochs":
        assert [r["epochs"] for r in rows] == [1, 3, 5]
        assert [len(r["epoch_curve"]) for r in rows] == [1, 3, 5]  # validated at every epoch's end
        best = [min(r["epoch_curve"], key=lambda p: p["val_loss"])["step"] for r in rows]
        assert [r["weights_from_step"] for r in rows] == best  # the best validation's weights were evaluated
