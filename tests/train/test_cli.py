"""lit_gpt/train/cli.py: a finetune script's constants become its CLI's parameters; a misspelled one is refused."""

import inspect
from pathlib import Path

import pytest

from lit_gpt.train.cli import script_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny training steps: see conftest.one_thread


def test_a_misspelled_constant_is_refused():
    def main(*, checkpoint_dir: Path, **hyperparameters):
        """Args:
        checkpoint_dir: x
        """

    cli = script_cli(main, {"learning_rate": 1e-3, "lora_r": 4, "__file__": "my.py"})
    assert list(inspect.signature(cli).parameters) == ["checkpoint_dir", "learning_rate", "lora_r"]
    with pytest.raises(TypeError, match="learnig_rate"):
        script_cli(main, {"learnig_rate": 1e-3, "__file__": "my.py"})
