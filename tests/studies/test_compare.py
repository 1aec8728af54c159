"""lit_gpt/studies/compare.py: variant names; every setting is checked before any data is read, the variants train
with typed TrainArgs / LoRAConfig."""

import pytest

from lit_gpt.lora import LoRAConfig
from lit_gpt.studies.compare import StudySettings, make_variants, plan_comparison, study_training
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


def test_study_training_is_typed_and_records_what_the_study_sets():
    train, lora, chosen = study_training("lora", {"eval_interval": 50, "lora_r": 4, "learning_rate": 1e-3})
    # the study's own default first, then the given ones, in their order (the report prints this dict)
    assert chosen == {"sample_max_new_tokens": 0, "eval_interval": 50, "lora_r": 4, "learning_rate": 1e-3}
    assert list(chosen) == ["sample_max_new_tokens", "eval_interval", "lora_r", "learning_rate"]
    assert train == TrainArgs(sample_max_new_tokens=0, eval_interval=50, learning_rate=1e-3)
    assert lora == LoRAConfig(r=4)
    train, lora, _ = study_training("full", {})
    assert lora is None and train.sample_max_new_tokens == 0
    with pytest.raises(UserError, match="not constants of finetune/full.py"):
        study_training("full", {"lora_r": 4})
    with pytest.raises(UserError, match="use --orders instead"):
        study_training("lora", {"order": "by_length_asc"})


def test_every_setting_is_checked_before_any_data_is_read(tiny_checkpoint_dir, tmp_path):
    checkpoint_dir = tiny_checkpoint_dir("smollm2", weights=True)
    missing = [tmp_path / "not_prepared_yet"]  # a recipe builds its data after the plan is checked
    settings = StudySettings(out_dir=tmp_path / "out", orders=["shuffle", "by_length_asc"])
    plan = plan_comparison(checkpoint_dir, missing, settings, {"max_iters": 2})
    assert [v.name for v in plan.variants] == ["not_prepared_yet-shuffle", "not_prepared_yet-by_length_asc"]
    assert plan.train.max_iters == 2 and plan.lora == LoRAConfig()
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
