"""The one checkpoint format: a directory with lit_config.json + lit_model.pth + the tokenizer files."""

from pathlib import Path
from typing import Optional

import torch

from lit_gpt.config import Config
from lit_gpt.model import GPT
from lit_gpt.utils import UserError, load_state_dict

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json",
                   "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja")


def check_checkpoint_dir(checkpoint_dir: "str | Path", need_weights: bool = True) -> Path:
    """One clear line for the usual mistakes: wrong path, not converted yet."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise UserError(f"{checkpoint_dir}: checkpoint directory not found; download it with "
                        f"`python scripts/download.py --repo_id ORG/NAME` first")
    if need_weights and not (checkpoint_dir / "lit_model.pth").is_file():
        raise UserError(f"{checkpoint_dir}: no lit_model.pth; convert it with "
                        f"`python scripts/convert_hf_checkpoint.py --checkpoint_dir {checkpoint_dir}`")
    if need_weights and not (checkpoint_dir / "lit_config.json").is_file():
        raise UserError(f"{checkpoint_dir}: no lit_config.json; convert it again with scripts/convert_hf_checkpoint.py")
    return checkpoint_dir


def load_model(checkpoint_dir: "str | Path", device: "str | torch.device" = "cpu",
               dtype: Optional[torch.dtype] = None) -> GPT:
    """Builds the model on the meta device and assigns the memory-mapped weights: no second copy in RAM."""
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    config = Config.from_file(checkpoint_dir / "lit_config.json")
    state_dict = load_state_dict(checkpoint_dir / "lit_model.pth")
    with torch.device("meta"):
        model = GPT(config)
    load_weights(model, state_dict, source=checkpoint_dir / "lit_model.pth")
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)


def load_weights(model: GPT, state_dict: dict, source: "str | Path", strict: bool = True) -> None:
    if model.config.tie_embeddings:
        state_dict = {k: v for k, v in state_dict.items() if k != "lm_head.weight"}
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False, assign=True)
    except RuntimeError as e:
        raise UserError(f"{source}: weights do not fit the model config ({str(e).splitlines()[-1].strip()}); "
                        "the checkpoint and lit_config.json disagree, convert again") from None
    if model.config.tie_embeddings:
        model.lm_head.weight = model.wte.weight
        missing = [k for k in missing if k != "lm_head.weight"]
    if strict and (missing or unexpected):
        raise UserError(f"{source}: weights do not fit the model config (missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]}); the checkpoint and lit_config.json disagree, convert again")
