"""Converts one of our checkpoints (e.g. a fine-tuned one) back into a Hugging Face folder.

    python scripts/convert_lit_checkpoint.py --checkpoint_dir out/finetune/final --output_dir out/hf-model

Writes config.json, model.safetensors and copies the tokenizer files, so that
`transformers.AutoModelForCausalLM.from_pretrained(output_dir)` loads the same model.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.convert.hf import convert_lit_checkpoint
from lit_gpt.utils import check_output, output_lock, run_cli


def main(*, checkpoint_dir: Path, output_dir: Path) -> None:
    """Convert a lit checkpoint directory into an HF folder.

    Args:
        checkpoint_dir: a directory with lit_config.json, lit_model.pth and the tokenizer files
        output_dir: where the HF folder goes (created if needed; apart from checkpoint_dir)
    """
    check_output(output_dir, {"--checkpoint_dir": checkpoint_dir}, "--output_dir")
    with output_lock(output_dir, "--output_dir"):
        out = convert_lit_checkpoint(checkpoint_dir, output_dir)
    print(f"wrote {out}")


if __name__ == "__main__":
    run_cli(main)
