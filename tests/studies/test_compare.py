"""lit_gpt/studies/compare.py: variant names; every setting is checked before any data is read, the variants train
with typed TrainArgs / LoRAConfig, one run per seed, the A/A arm with other seeds; and a tiny study end to end, whose
report makes only the claims its statistics allow."""

import json

import pytest

from helpers import CAPITALS, SHARED, metrics_rows, prepare_slice
from lit_gpt.data.prepare import prepare
from lit_gpt.data.preferences import PREFERENCES
from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.records import iter_records
from lit_gpt.lora import LoRAConfig
from lit_gpt.studies.compare import budget_steps, compare, make_variants, plan_comparison, study_training
from lit_gpt.studies.settings import StudySettings
from lit_gpt.train.args import TrainArgs
from lit_gpt.utils import UserError


def test_variant_names():
    names = [v.name for v in make_variants(["data/a", "data/b"], ["shuffle"], [1])]
    assert names == ["a", "b"]
    variants = make_variants(["data/a"], ["shuffle", "as_given"], [1, 3])
    assert [(v.name, v.order, v.epochs) for v in variants] == [
        ("a-shuffle-1ep", "shuffle", 1), ("a-shuffle-3ep", "shuffle", 3),
        ("a-as_given-1ep", "as_given", 1), ("a-as_given-3ep", "as_given", 3)]
    assert [v.name for v in make_variants(["x/data", "y/data"], ["shuffle"], [1])] == ["data-1", "data-2"]
    drawn = make_variants(["data/alpaca", "data/lima", "data/alpaca"], ["shuffle"], [None], [1000, 0, 0])
    assert [(v.name, v.draw_rows, v.role) for v in drawn] == [("alpaca-draw1000", 1000, "baseline"),
                                                              ("lima", None, "arm"), ("alpaca", None, "arm")]
    with pytest.raises(UserError, match="--draw_rows has 1 values for 2 data dirs"):
        make_variants(["data/a", "data/b"], ["shuffle"], [None], [10])


def test_study_training_is_typed_and_records_what_the_study_sets():
    train, lora, chosen, preference = study_training("lora", {"eval_interval": 50, "lora_r": 4,
                                                             "learning_rate": 1e-3})
    # the study's own default first, then the given ones, in their order (the report prints this dict)
    assert chosen == {"sample_max_new_tokens": 0, "eval_interval": 50, "lora_r": 4, "learning_rate": 1e-3}
    assert list(chosen) == ["sample_max_new_tokens", "eval_interval", "lora_r", "learning_rate"]
    assert train == TrainArgs(sample_max_new_tokens=0, eval_interval=50, learning_rate=1e-3)
    assert lora == LoRAConfig(r=4) and preference is None
    train, lora, _, _ = study_training("full", {})
    assert lora is None and train.sample_max_new_tokens == 0
    with pytest.raises(UserError, match="not constants of finetune/full.py"):
        study_training("full", {"lora_r": 4})
    with pytest.raises(UserError, match="use --orders instead"):
        study_training("lora", {"order": "by_length_asc"})
    with pytest.raises(UserError, match="'seed' is set per run: use --seeds"):
        study_training("lora", {"seed": 3})


def test_a_token_budget_is_equal_tokens():
    short, long = [{"input_ids": [0] * 50}] * 4, [{"input_ids": [0] * 200}] * 4
    assert budget_steps(8000, 8, short) == 20 and budget_steps(8000, 8, long) == 5
    assert budget_steps(10, 8, long) == 1  # at least one step


def test_every_setting_is_checked_before_any_data_is_read(tiny_checkpoint_dir, tmp_path):
    checkpoint_dir = tiny_checkpoint_dir("smollm2", weights=True)
    missing = [tmp_path / "not_prepared_yet"]  # a recipe builds its data after the plan is checked
    settings = StudySettings(out_dir=tmp_path / "out", orders=["shuffle", "by_length_asc"], seeds=[7, 9])
    plan = plan_comparison(checkpoint_dir, missing, settings, {"max_iters": 2})
    assert [(v.name, v.role, v.seeds) for v in plan.variants] == [
        ("not_prepared_yet-shuffle", "baseline", [7, 9]), ("not_prepared_yet-by_length_asc", "arm", [7, 9]),
        ("not_prepared_yet-shuffle-aa", "aa_control", [10, 11])]  # the A/A arm: the baseline, other seeds
    assert plan.train.max_iters == 2 and plan.lora == LoRAConfig()
    no_aa = plan_comparison(checkpoint_dir, missing, StudySettings(aa_control=False))
    assert [v.role for v in no_aa.variants] == ["baseline"] and no_aa.variants[0].seeds == [1337, 1338, 1339]
    with pytest.raises(UserError, match="--token_budget sets every run's steps"):
        plan_comparison(checkpoint_dir, missing, StudySettings(token_budget=1000), {"max_iters": 2})
    with pytest.raises(UserError, match="--reference_checkpoint_dir"):
        plan_comparison(checkpoint_dir, missing, StudySettings(reference_checkpoint_dir=tmp_path / "nothing"))
    with pytest.raises(UserError, match="--reference_sets gpt4: .*: no such file"):
        compare(plan_comparison(checkpoint_dir, missing, StudySettings(reference_sets={"gpt4": tmp_path / "no.json"})))
    with pytest.raises(UserError, match="lerning_rate"):
        plan_comparison(checkpoint_dir, missing, hyperparameters={"lerning_rate": 1})
    with pytest.raises(UserError, match="--grad_clip"):
        plan_comparison(checkpoint_dir, missing, hyperparameters={"grad_clip": -1.0})
    with pytest.raises(UserError, match="--judge_checkpoint_dir"):
        plan_comparison(checkpoint_dir, missing, StudySettings(judge_checkpoint_dir=tmp_path / "no_judge"))
    with pytest.raises(UserError, match="--eval_prompts"):
        StudySettings(eval_prompts=-1)
    with pytest.raises(UserError, match="--method 'qlora'"):
        StudySettings(method="qlora")
    with pytest.raises(UserError, match="--seeds \\[1, 1\\]: give one or more different seeds"):
        StudySettings(seeds=[1, 1])
    with pytest.raises(UserError, match="IFEval is off"):
        StudySettings(primary_metric="ifeval_prompt_loose")
    with pytest.raises(UserError, match="answer_nll:lima"):
        StudySettings(primary_metric="answer_nll:lima")


@pytest.mark.slow  # nine tiny runs trained and evaluated
def test_a_tiny_study_reports_its_claims(tiny_checkpoint_dir, shared_dir, tmp_path):
    checkpoint_dir = tiny_checkpoint_dir("smollm2", weights=True, block_size=256)
    datasets = shared_dir / "datasets"
    alpaca = prepare_slice(datasets / "alpaca/alpaca_random_9k.json", "alpaca", checkpoint_dir, tmp_path / "alpaca",
                           30, max_seq_length=64)
    kept = prepare_slice(datasets / "alpagasus/alpaca_claude_t45.json", "alpagasus", checkpoint_dir,
                         tmp_path / "alpagasus", 12, max_seq_length=64)
    settings = StudySettings(
        out_dir=tmp_path / "out", seeds=[1, 2, 3], primary_metric="ifeval_prompt_loose", draw_rows=[10, 0],
        eval_path=datasets / "eval/sinstruct_test_set.jsonl", eval_examples=4, eval_prompts=0, ifeval_prompts=6,
        ifeval_max_new_tokens=4, eval_batch_size=6, base_row=True,
        reference_sets={"gpt4": datasets / "alpaca_gpt4/sample_999.json"})
    hyperparameters = {"max_iters": 2, "batch_size": 2, "micro_batch_size": 2, "eval_interval": 100, "eval_iters": 1}
    comparison = compare(plan_comparison(checkpoint_dir, [alpaca, kept], settings, hyperparameters))
    arms = {arm["name"]: arm for arm in comparison["arms"]}
    assert list(arms) == ["alpaca-draw10", "alpagasus", "alpaca-draw10-aa", "base (untrained)"]
    assert [r["seed"] for r in arms["alpaca-draw10-aa"]["runs"]] == [4, 5, 6]
    draws = [run["data_dir"] for run in arms["alpaca-draw10"]["runs"]]  # each seed draws its own 10 rows
    assert [run["train_examples"] for run in arms["alpaca-draw10"]["runs"]] == [10, 10, 10] and len(set(draws)) == 3
    run = arms["alpagasus"]["runs"][0]
    assert set(run["evaluation"]["losses"]) == {"held_out", "gpt4"} and len(run["evaluation"]["ifeval"]["echo"]) == 6
    losses = run["evaluation"]["losses"]["gpt4"]
    assert losses["tokens_no_eos"] == losses["tokens"] - losses["answers"]  # one end-of-turn token per answer
    stats = comparison["statistics"]
    assert [d["arm"] for d in stats["comparisons"]] == ["alpagasus"] and stats["aa_control"]["seeds_b"] == 3
    report = (settings.out_dir / "comparison.md").read_text()
    assert "the method calls it not significant, as it must." in report
    header, _, baseline, *_ = [line.split(" | ") for line in report.splitlines() if line.startswith("| ")][:3]
    assert header[2] == "ifeval_prompt_loose (%; mean ± seed SD)" and " ± " in baseline[2]
    assert "difference from alpaca-draw10 [95% interval]" in header and "min. detectable effect" in header
    assert "with 3 seed(s) per arm on 6 of IFEval's 541 prompts (a reduced size" in report
    assert json.loads((settings.out_dir / "comparison.json").read_text())["seeds"] == [1, 2, 3]
    # a restart reuses every finished run and its evaluation
    stored = settings.out_dir / "alpagasus" / "seed-1" / "study_evaluation.json"
    written = stored.stat().st_mtime_ns
    again = compare(plan_comparison(checkpoint_dir, [alpaca, kept], StudySettings(**{**settings.__dict__,
                                                                                      "resume": True}),
                                    hyperparameters))
    assert again["statistics"] == stats and stored.stat().st_mtime_ns == written


def prepare_pairs(rows: list, name: str, checkpoint_dir, tmp_path):
    source = tmp_path / f"{name}.jsonl"
    source.write_text("\n".join(json.dumps(row) for row in rows))
    prepare(iter_records(source), name=name, source_files=[source], checkpoint_dir=checkpoint_dir,
            destination_path=tmp_path / name, test_split_fraction=0.25, example_format=PREFERENCES)
    return tmp_path / name


def test_a_preference_study_is_checked_before_it_runs(tiny_checkpoint_dir, tmp_path):
    checkpoint_dir = tiny_checkpoint_dir("smollm2", weights=True)
    with pytest.raises(UserError, match="--preference_loss 'kto': choose from dpo, ipo, simpo, orpo"):
        StudySettings(preference_loss="kto")
    with pytest.raises(UserError, match="--draw_rows is for instruction data"):
        StudySettings(preference_loss="dpo", draw_rows=[10])
    settings = StudySettings(preference_loss="ipo", out_dir=tmp_path / "out")
    plan = plan_comparison(checkpoint_dir, [tmp_path / "pairs"], settings, {"beta": 0.3, "max_iters": 2})
    assert (plan.preference.loss, plan.preference.beta, plan.preference.method) == ("ipo", 0.3, "lora")
    assert plan.train.max_iters == 2 and plan.hyperparameters == {"sample_max_new_tokens": 0, "beta": 0.3,
                                                                  "max_iters": 2}
    with pytest.raises(UserError, match="set the preference loss with --preference_loss"):
        plan_comparison(checkpoint_dir, [tmp_path / "pairs"], settings, {"loss": "dpo"})
    assert plan_comparison(checkpoint_dir, [tmp_path / "pairs"], settings, {"packing": True}).train.packing
    with pytest.raises(UserError, match="--orders curriculum is not available for preference pairs"):
        StudySettings(preference_loss="dpo", orders=["shuffle", "curriculum"])
    with pytest.raises(UserError, match="beta"):  # a preference setting is no constant of finetune/lora.py
        plan_comparison(checkpoint_dir, [tmp_path / "pairs"], StudySettings(out_dir=tmp_path / "out"), {"beta": 0.3})
    sft = prepare_slice(SHARED / "datasets/alpaca/alpaca_random_9k.json", "alpaca", checkpoint_dir,
                        tmp_path / "alpaca", 8, max_seq_length=64)
    with pytest.raises(UserError, match="holds instructions data .* not preference"):
        compare(plan_comparison(checkpoint_dir, [sft], settings, {"max_iters": 1}))


@pytest.mark.slow  # six tiny preference runs trained and evaluated
def test_a_tiny_preference_study(tiny_checkpoint_dir, tmp_path):
    """Which direction of a preference teaches what: the same pairs, and the same pairs swapped, each trained with
    DPO (2 seeds, and the A/A arm), scored on the held-out pairs' chosen answers."""
    checkpoint_dir = tiny_checkpoint_dir("smollm2", weights=True, block_size=64)
    rows = [{"prompt": f"What is the capital of {country}?", "chosen": f"The capital of {country} is {city}.",
             "rejected": "I do not know."} for country, city in CAPITALS]
    full = prepare_pairs(rows, "full_answers", checkpoint_dir, tmp_path)
    swapped = prepare_pairs([{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows], "idk",
                            checkpoint_dir, tmp_path)
    settings = StudySettings(out_dir=tmp_path / "out", seeds=[1, 2], preference_loss="dpo", eval_examples=4,
                             eval_prompts=0)
    hyperparameters = {"max_iters": 2, "batch_size": 4, "micro_batch_size": 2, "learning_rate": 1e-2,
                       "eval_interval": 100, "eval_iters": 1}
    comparison = compare(plan_comparison(checkpoint_dir, [full, swapped], settings, hyperparameters))
    arms = {arm["name"]: arm for arm in comparison["arms"]}
    assert list(arms) == ["full_answers", "idk", "full_answers-aa"]
    run = arms["full_answers"]["runs"][0]
    pairs = load_prepared(full, format="preference")[0]
    both_rows = sum(2 * len(p["prompt_ids"]) + len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in pairs)
    assert run["train_examples"] == len(pairs) and run["tokens_read"] == round(2 * 4 * both_rows / len(pairs))
    rows_logged = metrics_rows(tmp_path / "out" / "full_answers" / "seed-1")
    assert any(r.get("train_accuracy") for r in rows_logged)  # trained by the preference objective
    assert comparison["preference"]["loss"] == "dpo" and "union of the variants' test sets" in comparison["eval_set"]
    assert run["evaluation"]["losses"]["held_out"]["answers"] == 4  # the held-out pairs' chosen answers
    stats = comparison["statistics"]
    assert [d["arm"] for d in stats["comparisons"]] == ["idk"] and stats["aa_control"]["seeds_b"] == 2
    report = (settings.out_dir / "comparison.md").read_text()
    assert "preference pairs, dpo loss (lora; beta the loss default), finetune/dpo.py's loop" in report
