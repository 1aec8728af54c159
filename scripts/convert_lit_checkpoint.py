"""Converts one of our checkpoints (e.g. a fine-tuned one) back into a Hugging Face folder.

    python scripts/convert_lit_checkpoint.py --checkpoint_dir out/finetune/final --output_dir out/hf-model

Writes config.json, model.safetensors and copies the tokenizer files, so that
`transformers.AutoModelForCausalLM.from_pretrained(output_dir)` loads the same model.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.convert import convert_lit_checkpoint  # noqa: E402
from lit_gpt.utils import run_cli  # noqa: E402


def main(*, checkpoint_dir: Path, output_dir: Path) -> None:
    """Convert a lit checkpoint directory into an HF folder.

    Args:
        checkpoint_dir: a directory with lit_config.json, lit_model.pth and the tokenizer files
        output_dir: where the HF folder goes (created if needed; must differ from checkpoint_dir)
    """
    out = convert_lit_checkpoint(checkpoint_dir, output_dir)
    print(f"wrote {out}")


if __name__ == "__main__":
    run_cli(main)
