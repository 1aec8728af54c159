"""Every study recipe in scripts/studies/ runs end to end at a tiny size, so the recipes cannot rot.

Each recipe builds its data with the real tools from a small slice of the shared datasets (same layouts, a few rows),
trains a tiny model for a step or two per variant and evaluates it; the report says what the study is."""

import itertools
import json

import pytest

from helpers import ROOT, load_cached_script
from lit_gpt.data.prepared import load_prepared
from lit_gpt.utils import run_cli, space_separated_lists

pytestmark = pytest.mark.slow  # every study recipe end to end

RECIPES = sorted((ROOT / "scripts" / "studies").glob("*.yaml"))
SLICES = {"lima/train.jsonl": 80, "alpaca/alpaca_random_9k.json": 60, "alpagasus/alpaca_claude_t45.json": 40,
          "dolly/dolly_3k.jsonl": 40, "eval/sinstruct_test_set.jsonl": 12, "alpaca_gpt4/sample_999.json": 40}
IFEVAL = ("ifeval_prompt_loose", "ifeval_prompt_strict")
PAIRED = ("alpaca/alpaca_random_9k.json", "alpaca_gpt4/sample_999.json")  # study 6 pairs their answers


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
    # the 9k rows that answer the GPT-4 slice's instructions (12 of its 40), so that the two files make pairs
    davinci, gpt4 = (json.loads((root / "datasets" / name).read_text()) for name in PAIRED)
    wanted = {(r["instruction"], r["input"]) for r in gpt4}
    matched = [r for r in json.loads((shared_dir / "datasets" / PAIRED[0]).read_text())[SLICES[PAIRED[0]]:]
               if (r["instruction"], r["input"]) in wanted]
    (root / "datasets" / PAIRED[0]).write_text(json.dumps(davinci + matched))
    return root


def test_the_five_questions_and_the_preference_study_have_recipes():
    from lit_gpt.studies.recipe import load_recipe

    assert [r.name for r in RECIPES] == ["1_quality_vs_quantity.yaml", "2_judge_filtered.yaml", "3_merging.yaml",
                                         "4_ordering.yaml", "5_epochs.yaml", "6_preference_direction.yaml"]
    preference = load_recipe(RECIPES[-1])
    assert preference.compare["preference_loss"] == "dpo" and preference.compare["primary_metric"] in IFEVAL
    assert preference.compare["seeds"] == [1337, 1338, 1339] and preference.compare["aa_control"] is True
    assert preference.compare["base_row"] is True and preference.for_gpu().compare["ifeval_prompts"] == -1
    for path in RECIPES[:5]:  # what a reviewer needs declared before any run
        recipe = load_recipe(path)
        compare, full = recipe.compare, recipe.for_gpu()
        assert compare["primary_metric"] in ("ifeval_prompt_loose", "answer_nll"), path
        assert compare["seeds"] == [1337, 1338, 1339] and compare["aa_control"] is True, path
        assert compare["base_row"] is True and "reference_checkpoint_dir" in compare, path
        assert "gpt4" in compare["reference_sets"], path
        assert full.compare["ifeval_prompts"] == -1 and full.compare["ifeval_max_new_tokens"] == 1280, path
        assert full.settings["max_seq_length"] >= 1024, path  # >= 95% of the answers whole at the full size


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_at_a_tiny_size(recipe, tiny_checkpoint_dir, tiny_shared, tmp_path, capsys):
    from lit_gpt.studies.recipe import load_recipe

    checkpoint_dir = tiny_checkpoint_dir("smollm2", weights=True, block_size=256)
    small = {"rows": 8, "pool": 20, "rows_per_source": 10, "max_seq_length": 128, "prompt_style": "smollm2",
             "scorer_checkpoint_dir": str(checkpoint_dir), "token_budget": 300}
    settings = {k: v for k, v in small.items() if k in load_recipe(recipe).settings}
    out_dir = tmp_path / "out"
    # two seeds keep it quick; the A/A arm only where the study is smallest
    with_aa = recipe.stem in ("1_quality_vs_quantity", "2_judge_filtered", "6_preference_direction")
    argv = ["--recipe", str(recipe), "--checkpoint_dir", str(checkpoint_dir), "--shared_dir", str(tiny_shared),
            "--data_root", str(tmp_path / "data"), "--out_dir", str(out_dir), "--settings", json.dumps(settings),
            "--batch_size", "2", "--micro_batch_size", "2", "--ifeval_prompts", "2", "--ifeval_max_new_tokens", "4",
            "--eval_examples", "3", "--eval_batch_size", "2", "--seeds", "1", "2", "--aa_control", str(with_aa).lower(),
            "--reference_checkpoint_dir", str(checkpoint_dir)]
    if "max_iters" in load_recipe(recipe).compare:  # 4 and 5 train whole epochs, 1 a token budget instead
        argv += ["--max_iters", "2"]
    if recipe.stem == "6_preference_direction":  # 3 epochs of the ~8 pairs the slices make, 2 pairs a step
        argv += ["--epochs", "1"]
    script = load_cached_script("compare_datasets")
    run_cli(script.main, args=space_separated_lists(argv, script.LIST_FLAGS))
    comparison = json.loads((out_dir / "comparison.json").read_text())
    study = comparison["study"]
    assert study["recipe"] == str(recipe) and study["question"].endswith(load_recipe(recipe).question[-20:])
    assert all(command.startswith("python scripts/") for command in study["build"])
    assert study["settings"]["checkpoint_dir"] == str(checkpoint_dir)
    arms = [arm for arm in comparison["arms"] if arm["role"] in ("baseline", "arm", "aa_control")]
    assert [arm["role"] for arm in comparison["arms"][len(arms):]] == ["base", "reference"]
    assert len(arms) >= 2 + with_aa and (arms[-1]["role"] == "aa_control") == with_aa
    for arm in arms:
        assert [run["seed"] for run in arm["runs"]] == ([3, 4] if arm["role"] == "aa_control" else [1, 2])
        for run in arm["runs"]:
            evaluation = run["evaluation"]
            assert run["steps"] >= 1 and evaluation["ifeval"]["prompt_level_strict_acc"] is not None
            assert set(evaluation["losses"]) == {"held_out", *load_recipe(recipe).compare["reference_sets"]}
            assert 0 <= run["cut_share"] <= 1
        assert arm["contaminated"]["held_out"] == 0
    stats = comparison["statistics"]
    assert stats["primary_metric"] == load_recipe(recipe).compare["primary_metric"]
    assert [d["arm"] for d in stats["comparisons"]] == [arm["name"] for arm in arms if arm["role"] == "arm"]
    assert all(d["p_adjusted"] is not None and d["seeds_a"] == 2 for d in stats["comparisons"])
    report = (out_dir / "comparison.md").read_text()
    assert report.startswith("# " + load_recipe(recipe).question) and "Wall time" in report
    assert "Minimum detectable effect of this design" in report and ("A/A control: " in report) == with_aa
    assert "| IFEval answers ended % |" in report and "EOS rate" not in report  # no held-out prompts answered
    assert (out_dir / "comparison.png").stat().st_size > 0
    if recipe.stem == "1_quality_vs_quantity":  # equal tokens: LIMA's long answers get fewer steps
        assert "equal tokens, not equal examples" in report
        steps = {arm["name"]: arm["runs"][0]["steps"] for arm in arms}
        assert steps["lima"] <= steps["alpaca_9k-draw8"]
    if recipe.stem == "4_ordering":
        assert [a["order"] for a in arms] == ["shuffle", "by_source", "by_length_asc", "curriculum"]
    if recipe.stem == "6_preference_direction":  # the reversed arm: the same prompts, the answers swapped
        pairs = [load_prepared(arm["data_dir"], format="preference")[0] for arm in arms[:2]]
        assert [(p["chosen"], p["rejected"]) for p in pairs[0]] == [(p["rejected"], p["chosen"]) for p in pairs[1]]
        assert comparison["preference"]["loss"] == "dpo" and "preference pairs, dpo loss" in report
    if recipe.stem == "5_epochs":
        assert [a["epochs"] for a in arms] == [1, 3, 5]
        for arm in arms:
            for run in arm["runs"]:
                assert len(run["epoch_curve"]) == arm["epochs"]  # validated at every epoch's end
                best = min(run["epoch_curve"], key=lambda p: p["val_loss"])["step"]
                assert run["weights_from_step"] == best  # the best validation's weights were evaluated
