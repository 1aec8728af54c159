"""The one way to load a model for inference: `load(checkpoint_dir, lora_path, device, precision)` gives the model
(eval mode, on the device, in the dtype --precision asks for there), its tokenizer and the prompt style it was
trained with, as a `Loaded`.

A checkpoint dir (a converted base, a merged LoRA, a finetune/full.py output) loads as it is. A LoRA fine-tune
(`lora_path`) is merged into its base first (`lit_gpt.lora_merge`: as fast as the base model); the base is the one
recorded beside the LoRA file, or `checkpoint_dir` when given. The training loop builds its (un-merged) model with
the low-level `lit_gpt.checkpoint.load_model` instead.
"""

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from lit_gpt.checkpoint import load_model
from lit_gpt.config import Config
from lit_gpt.file_names import LIT_WEIGHTS_FILE, LORA_WEIGHTS_FILE
from lit_gpt.lora_merge import find_lora, lora_prompt_style, merged_model
from lit_gpt.model import GPT
from lit_gpt.precision import device_and_dtype
from lit_gpt.prompts.styles import PromptStyle, get_prompt_style, load_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError

# the --device and --precision flags of the scripts that load a model to write data (`with_flags`; pass them to `load`)
LOAD_FLAGS = [("device", Optional[str], None, "cpu, cuda, ...; default cuda when available"),
              ("precision", Optional[str], None, "32-true, bf16-true or 16-true")]


@dataclass
class Loaded:
    model: GPT  # eval mode, on the device, in the dtype
    tokenizer: Tokenizer
    style: PromptStyle  # the prompt style it was trained with, or the one `load` was asked for
    checkpoint_dir: Path  # the checkpoint; for a LoRA fine-tune, its base
    lora_path: Optional[Path]  # the LoRA weights merged into the base, None for a plain checkpoint
    description: str  # what was loaded, for printing and reports
    seconds: float  # how long loading took

    @property
    def device(self) -> torch.device:
        return self.model.wte.weight.device

    def print_summary(self, style: Optional[PromptStyle] = None) -> None:
        """One stderr line: what was loaded, in which prompt style (default: its own), how fast, dtype and device."""
        print(f"Loaded {self.description} (prompt style {(style or self.style).name}) in {self.seconds:.1f} s "
              f"({self.model.wte.weight.dtype}, {self.device})", file=sys.stderr)


def load(checkpoint_dir: "str | Path | None" = None, lora_path: "str | Path | None" = None,
         device: "str | torch.device | None" = None, precision: Optional[str] = None, force: bool = False,
         prompt_style: "str | PromptStyle | None" = None) -> Loaded:
    """A checkpoint, or a LoRA fine-tune merged into its base (`checkpoint_dir` overrides the recorded base), on
    `device` (default: cuda when available) in the dtype `precision` asks for there (default: the machine's).
    `force`: merge the LoRA weights even into a base whose weights differ from the ones they were trained on.
    `prompt_style`: prompt in this style rather than the one it was trained with. Either is checked against the
    tokenizer and the model's vocabulary before the weights load (`PromptStyle.check_tokenizer`)."""
    device, dtype = device_and_dtype(device, precision)
    started = time.perf_counter()
    chosen = get_prompt_style(prompt_style) if prompt_style is not None else None
    if lora_path is not None:
        lora = find_lora(lora_path, checkpoint_dir, force=force)
        style = chosen or lora_prompt_style(lora)
        tokenizer = _checked_tokenizer(lora.base_dir, style)
        model = merged_model(lora).to(device=device, dtype=dtype)  # merged in the base's dtype, then cast
        return Loaded(model, tokenizer, style, lora.base_dir, lora.path, lora.describe(), time.perf_counter() - started)
    if checkpoint_dir is None:
        raise UserError("pass --checkpoint_dir (a checkpoint directory) or --lora_path (LoRA weights)")
    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / LIT_WEIGHTS_FILE).is_file() and (checkpoint_dir / LORA_WEIGHTS_FILE).is_file():
        raise UserError(f"{checkpoint_dir}: holds LoRA weights ({LORA_WEIGHTS_FILE}), not a full model; use "
                        f"generate/lora.py --lora_path {checkpoint_dir / LORA_WEIGHTS_FILE}")
    style = chosen or load_prompt_style(checkpoint_dir)
    tokenizer = _checked_tokenizer(checkpoint_dir, style)
    model = load_model(checkpoint_dir, device=device, dtype=dtype).eval()
    return Loaded(model, tokenizer, style, checkpoint_dir, None, str(checkpoint_dir), time.perf_counter() - started)


def _checked_tokenizer(checkpoint_dir: Path, style: PromptStyle) -> Tokenizer:
    """The checkpoint's tokenizer, refused when the style cannot prompt with it or its special ids do not fit the
    model's embedding (a traceback mid-generation, or an answer that never stops, otherwise)."""
    tokenizer = Tokenizer(checkpoint_dir)
    style.check_tokenizer(tokenizer, Config.from_checkpoint(checkpoint_dir).vocab_size)
    return tokenizer
