"""Generate text from a converted checkpoint, streaming it to stdout as it is sampled.

    python generate/base.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct \\
        --prompt "What is the capital of France?" --temperature 0

The prompt is wrapped in the checkpoint's prompt style (prompt_style.json, else its chat template) or the one
--prompt_style names; `--prompt_style plain` continues the raw text (BOS, where the tokenizer uses one, then the
prompt exactly as given: --prompt $'Q: What is the capital of France?\\nA:'). Generation stops at the tokenizer's
stop ids and the style's stop strings.
Timings go to stderr, so stdout holds only the generated text.
"""

import importlib.util
import sys

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.infer.cli import generate_command
from lit_gpt.utils import run_cli


main = generate_command("base")

if __name__ == "__main__":
    run_cli(main)
