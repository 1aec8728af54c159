"""Converts a downloaded Hugging Face checkpoint into ours: writes lit_model.pth and lit_config.json beside its files.

    python scripts/convert_hf_checkpoint.py --checkpoint_dir checkpoints/EleutherAI/pythia-70m [--dtype bfloat16]

Reads model.safetensors or pytorch_model.bin, sharded or not, one tensor at a time: peak memory stays near one shard.
The tokenizer files stay where they are; the directory is then a complete checkpoint for the other scripts.
"""

import importlib.util
import sys
from pathlib import Path
from typing import Literal, Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.checkpoint import check_checkpoint_dir
from lit_gpt.convert.hf import convert_hf_checkpoint
from lit_gpt.utils import output_lock, run_cli


def main(
    *,
    checkpoint_dir: Path,
    model_name: Optional[str] = None,
    dtype: Optional[Literal["float32", "bfloat16", "float16"]] = None,
) -> None:
    """Convert an HF checkpoint directory in place.

    Args:
        checkpoint_dir: the downloaded HF checkpoint (config.json + weights + tokenizer files)
        model_name: a registered model name to use instead of deriving the config from config.json
        dtype: cast the weights; default keeps the checkpoint's dtype
    """
    check_checkpoint_dir(checkpoint_dir, need_weights=False)  # it exists (the lock would create it)
    with output_lock(checkpoint_dir, "--checkpoint_dir"):  # in place: one conversion at a time
        path = convert_hf_checkpoint(checkpoint_dir, model_name=model_name, dtype=dtype)
    print(f"wrote {path} and {path.with_name('lit_config.json')}")


if __name__ == "__main__":
    run_cli(main)
