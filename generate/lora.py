"""Generate text with LoRA weights from finetune/lora.py, streaming it to stdout as it is sampled.

    python generate/lora.py --lora_path out/lora/alpaca/lit_model.pth.lora --prompt "Name three primary colors."

The LoRA settings (lora_config.json), the prompt style the run trained with (prompt_style.json) and the base
checkpoint (hyperparameters.yaml) are read from beside the LoRA file; --checkpoint_dir overrides the base checkpoint.
The LoRA updates are merged into the base weights first, so generation is as fast as with the base model; the
timings go to stderr and stdout holds only the generated text.
"""

import importlib.util
import sys

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.infer.cli import generate_command
from lit_gpt.utils import run_cli

main = generate_command("lora")

if __name__ == "__main__":
    run_cli(main)
