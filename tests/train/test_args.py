"""lit_gpt/train/args.py: hyperparameter checks at the edge (and the LoRA flags' own)."""

import pytest

from lit_gpt.lora import LoRAConfig
from lit_gpt.train.args import TrainArgs, check_train_args
from lit_gpt.utils import UserError


def test_settings_that_cannot_be_meant_are_refused():
    with pytest.raises(UserError, match="--grad_clip -1.0: must be above 0"):
        check_train_args(TrainArgs(grad_clip=-1.0), "lora")
    with pytest.raises(UserError, match="--neftune_noise_alpha 0.0: must be above 0"):
        check_train_args(TrainArgs(neftune_noise_alpha=0.0), "lora")
    with pytest.raises(UserError, match="--lora_alpha 0: must be above 0"):
        LoRAConfig(alpha=0)
    with pytest.raises(UserError, match="--lora_r 0"):
        LoRAConfig(r=0)


def test_precision_choices_are_the_precision_modules():
    """One list of precisions: --precision offers every one that lit_gpt.precision accepts (16-true included)."""
    from typing import get_args

    from lit_gpt.precision import PRECISIONS
    from lit_gpt.train.args import hyperparameter_specs

    annotation = hyperparameter_specs()["precision"][0]
    assert get_args(get_args(annotation)[0]) == PRECISIONS


def test_dora_on_a_quantized_base_is_refused():
    from lit_gpt.train.args import typed_hyperparameters

    train, lora = typed_hyperparameters({"lora_variant": "rslora", "quantize": "bnb.nf4"}, "lora")
    assert lora.variant == "rslora" and train.quantize == "bnb.nf4"  # rsLoRA only rescales: QLoRA works
    with pytest.raises(UserError, match="--lora_variant dora with --quantize bnb.nf4: DoRA needs the base weights"):
        typed_hyperparameters({"lora_variant": "dora", "quantize": "bnb.nf4"}, "lora")


def test_preference_settings_per_method_and_loss():
    from lit_gpt.train.args import LOSS_BETAS, typed_preference_hyperparameters

    preference, train, lora = typed_preference_hyperparameters({"method": "full", "loss": "simpo", "lora_r": 4})
    assert lora is None and preference.loss_beta == LOSS_BETAS["simpo"] == 2.0  # the LoRA flags do not apply
    preference, train, lora = typed_preference_hyperparameters({"lora_r": 4, "beta": 0.3, "learning_rate": 1e-5})
    assert preference.method == "lora" and lora.r == 4 and preference.loss_beta == 0.3 and train.learning_rate == 1e-5
    refused = {"--quantize works only with --method lora": {"method": "full", "quantize": "bnb.nf4"},
               "--loss 'kto': choose from dpo, ipo, simpo, orpo": {"loss": "kto"},
               "--beta 0: must be above 0": {"beta": 0},
               "--neftune_noise_alpha with --loss dpo": {"neftune_noise_alpha": 5.0},
               "--order curriculum is not available for preference pairs": {"order": "curriculum"},
               "--method 'qlora': choose lora or full": {"method": "qlora"}}
    for message, values in refused.items():
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            typed_preference_hyperparameters(values)
