"""Generate text with a fully fine-tuned checkpoint from finetune/full.py, streaming it to stdout.

    python generate/full.py --checkpoint_dir out/full/alpaca --prompt "Name three primary colors."

The output directory of finetune/full.py is a complete checkpoint; the prompt is formatted in the style the run
trained with (prompt_style.json). Timings go to stderr, so stdout holds only the generated text.
"""

import importlib.util
import sys

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.infer.cli import generate_command
from lit_gpt.utils import run_cli

main = generate_command("full")

if __name__ == "__main__":
    run_cli(main)
