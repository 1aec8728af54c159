"""The one checkpoint format: a directory with lit_config.json + lit_model.pth + the tokenizer files."""

import hashlib
import json
from pathlib import Path
from typing import Optional

import torch

from lit_gpt.config import Config
from lit_gpt.file_names import LIT_CONFIG_FILE, LIT_WEIGHTS_FILE, LORA_WEIGHTS_FILE, TOKENIZER_FILES
from lit_gpt.model import GPT
from lit_gpt.prompts.styles import PromptStyle, save_prompt_style
from lit_gpt.utils import UserError, atomic_torch_save, check_writable_dir, copy_file, load_state_dict

FINGERPRINT_BLOCKS = 64  # 1 MiB blocks of lit_model.pth read for its fingerprint, evenly spaced
FINGERPRINT_METHOD = f"sha256 of the config, the size of lit_model.pth and {FINGERPRINT_BLOCKS} evenly spaced MiB of it"


def check_checkpoint_dir(checkpoint_dir: "str | Path | None", need_weights: bool = True,
                         tokenizer_only: bool = False) -> Path:
    """One clear line for the usual mistakes: no --checkpoint_dir, wrong path, not converted yet. need_weights=False:
    an unconverted download is enough (conversion); tokenizer_only: its tokenizer is (data preparation)."""
    if checkpoint_dir is None:
        why = ": tokenization is model-specific" if tokenizer_only else ""
        raise UserError(f"--checkpoint_dir is required{why} "
                        "(e.g. --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct)")
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        how = "(--tokenizer_only is enough for data)" if tokenizer_only else "first"
        raise UserError(f"{checkpoint_dir}: checkpoint directory not found; download it with "
                        f"`python scripts/download.py --repo_id ORG/NAME` {how}")
    need_weights = need_weights and not tokenizer_only
    if need_weights and not (checkpoint_dir / LIT_WEIGHTS_FILE).is_file():
        if (checkpoint_dir / LORA_WEIGHTS_FILE).is_file():  # finetune/lora.py's out_dir: the LoRA tensors only
            merged = checkpoint_dir / "merged"
            raise UserError(f"{checkpoint_dir}: a LoRA run ({LORA_WEIGHTS_FILE}), not a complete checkpoint; merge it "
                            f"into its base first with `python scripts/merge_lora.py --lora_path {checkpoint_dir} "
                            f"--out_dir {merged}` and use {merged}")
        raise UserError(f"{checkpoint_dir}: no lit_model.pth; convert it with "
                        f"`python scripts/convert_hf_checkpoint.py --checkpoint_dir {checkpoint_dir}`")
    if need_weights and not (checkpoint_dir / LIT_CONFIG_FILE).is_file():
        raise UserError(f"{checkpoint_dir}: no lit_config.json; convert it again with scripts/convert_hf_checkpoint.py")
    return checkpoint_dir


def checkpoint_fingerprint(checkpoint_dir: "str | Path") -> str:
    """16 hex digits that tell a checkpoint's weights from other weights of the same config (FINGERPRINT_METHOD).
    Not the whole file's hash: that reads every byte, seconds to minutes per load of a 7B model; this reads at most
    64 MiB. The blocks are spread over the whole file, so a change that reaches every layer (a full fine-tune, a
    merged LoRA, another dtype or conversion) changes them; a file below 64 MiB is hashed whole."""
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    weights = checkpoint_dir / LIT_WEIGHTS_FILE
    size = weights.stat().st_size
    block = 1 << 20
    config = Config.from_file(checkpoint_dir / LIT_CONFIG_FILE).to_dict()  # its values, not the file's spelling
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    h.update(str(size).encode())
    with open(weights, "rb") as f:
        if size <= FINGERPRINT_BLOCKS * block:
            h.update(f.read())
        else:
            for i in range(FINGERPRINT_BLOCKS):
                f.seek((size - block) * i // (FINGERPRINT_BLOCKS - 1))
                h.update(f.read(block))
    return h.hexdigest()[:16]


def load_model(checkpoint_dir: "str | Path", device: "str | torch.device" = "cpu",
               dtype: Optional[torch.dtype] = None) -> GPT:
    """Builds the model on the meta device and assigns the memory-mapped weights: no second copy in RAM. The
    low-level build (training mode, the given dtype, else the stored one) that training and conversions use;
    inference loads through `lit_gpt.infer.load.load`."""
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    config = Config.from_file(checkpoint_dir / LIT_CONFIG_FILE)
    state_dict = load_state_dict(checkpoint_dir / LIT_WEIGHTS_FILE)
    with torch.device("meta"):
        model = GPT(config)
    load_weights(model, state_dict, source=checkpoint_dir / LIT_WEIGHTS_FILE)
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)


def load_weights(model: GPT, state_dict: dict, source: "str | Path", strict: bool = True) -> None:
    """Assigns the tensors of `state_dict` to `model` (no copy: memory-mapped weights stay mapped). A tied head
    missing from the file is filled from wte.weight by GPT's load hook."""
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False, assign=True)
    except RuntimeError as e:
        raise UserError(f"{source}: weights do not fit the model config ({str(e).splitlines()[-1].strip()}); "
                        "the checkpoint and lit_config.json disagree, convert again") from None
    if model.config.tie_embeddings:  # assign=True gave the head a Parameter of its own: tie it again
        model.lm_head.weight = model.wte.weight
    if strict and (missing or unexpected):
        raise UserError(f"{source}: weights do not fit the model config (missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]}); the checkpoint and lit_config.json disagree, convert again")


def copy_tokenizer_files(source_dir: "str | Path", out_dir: "str | Path", remove_others: bool = False) -> list[str]:
    """Copies the tokenizer files of source_dir into out_dir (each atomically); returns their names. With
    remove_others, tokenizer files in out_dir that source_dir lacks are deleted: left from another model, they would
    be read as this model's tokenizer."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    copied = []
    for name in TOKENIZER_FILES:
        if (source_dir / name).is_file():
            copy_file(source_dir / name, out_dir / name)
            copied.append(name)
        elif remove_others:
            (out_dir / name).unlink(missing_ok=True)
    return copied


def save_checkpoint(out_dir: "str | Path", config: Config, state_dict: dict, tokenizer_dir: "str | Path",
                    prompt_style: "str | PromptStyle") -> Path:
    """A complete checkpoint directory: lit_model.pth, the tokenizer files, prompt_style.json and lit_config.json.
    Each file is written atomically; lit_config.json goes last (and an old one first), so an interrupted save never
    leaves a directory that loads as a checkpoint with mismatched files."""
    out_dir = check_writable_dir(out_dir)
    (out_dir / LIT_CONFIG_FILE).unlink(missing_ok=True)
    if config.tie_embeddings:  # the head is the embedding; the file keeps one copy
        state_dict = {k: v for k, v in state_dict.items() if k != "lm_head.weight"}
    atomic_torch_save(state_dict, out_dir / LIT_WEIGHTS_FILE)
    copy_tokenizer_files(tokenizer_dir, out_dir, remove_others=True)
    save_prompt_style(prompt_style, out_dir)
    config.save(out_dir / LIT_CONFIG_FILE)
    return out_dir
