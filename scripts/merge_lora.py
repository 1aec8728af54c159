"""Merge LoRA weights into their base model and write a complete checkpoint directory.

    python scripts/merge_lora.py --lora_path out/lora/alpaca/lit_model.pth.lora --out_dir out/lora/alpaca/merged

The result (lit_config.json, lit_model.pth with the LoRA updates folded in, the tokenizer files and the
prompt_style.json the run trained with) works like any checkpoint: generate/base.py, generate/chat.py,
scripts/convert_lit_checkpoint.py. The weights keep the base checkpoint's dtype. Every file is written atomically.
"""

import importlib.util
import sys
import time
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.lora_merge import find_lora, save_merged_checkpoint
from lit_gpt.utils import run_cli


def main(*, lora_path: Path, out_dir: Path, checkpoint_dir: Optional[Path] = None, overwrite: bool = False,
         force: bool = False) -> None:
    """Merge LoRA weights into the base checkpoint.

    Args:
        lora_path: lit_model.pth.lora written by finetune/lora.py (or its output directory)
        out_dir: where the merged checkpoint goes (a new directory, not the base checkpoint or the LoRA run's)
        checkpoint_dir: the base checkpoint (default: the one recorded in hyperparameters.yaml beside the LoRA file)
        overwrite: replace a checkpoint already in out_dir (e.g. an earlier merge)
        force: merge even into a base whose weights differ from the ones the LoRA weights were trained on
    """
    t0 = time.perf_counter()
    lora = find_lora(lora_path, checkpoint_dir, force=force)
    save_merged_checkpoint(lora, out_dir, overwrite)
    print(f"merged {lora.path} (r={lora.config.r}, {', '.join(lora.config.targets)}) into {lora.base_dir}: wrote "
          f"{out_dir} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    run_cli(main)
