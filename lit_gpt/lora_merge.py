"""A LoRA fine-tune on disk, merged into its base: finding and checking its files (`find_lora`), folding the updates
into the base weights (`merge`, `merged_model`) and writing the result as a checkpoint (`save_merged_checkpoint`).

A LoRA run of finetune/lora.py leaves `lit_model.pth.lora` beside `lora_config.json` (r, alpha, targets, variant),
`prompt_style.json`, the base model's `lit_config.json`, `hyperparameters.yaml` (which records the base
`checkpoint_dir`) and `base_fingerprint.json` (which base weights: `BaseFingerprint`), so the LoRA file alone says how
to rebuild the model: `find_lora(path)` reads all of it and refuses a base with other weights.
Inference loads a LoRA fine-tune through `lit_gpt.infer.load.load`, which merges it here.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import yaml

from lit_gpt.checkpoint import (FINGERPRINT_METHOD, check_checkpoint_dir, checkpoint_fingerprint, load_model,
                                load_weights, save_checkpoint)
from lit_gpt.config import Config
from lit_gpt.file_names import (BASE_FINGERPRINT_FILE, HYPERPARAMETERS_FILE, LIT_CONFIG_FILE, LIT_WEIGHTS_FILE,
                                LORA_CONFIG_FILE, LORA_WEIGHTS_FILE, MERGED_LORA_FILE, PROMPT_STYLE_FILE)
from lit_gpt.lora import LORA_TENSOR_NAMES, LoRAConfig, LoRALinear, load_lora_weights, lora_state_dict
from lit_gpt.model import GPT
from lit_gpt.prompts.styles import PromptStyle, load_prompt_style
from lit_gpt.utils import (UserError, atomic_write_json, check_output, file_sha256, load_state_dict, log,
                           output_lock)


@dataclass
class LoRAFinetune:
    path: Path  # lit_model.pth.lora
    config: LoRAConfig  # from the lora_config.json beside it
    base_dir: Path  # the base checkpoint it was trained on

    @property
    def directory(self) -> Path:
        return self.path.parent

    def describe(self) -> str:
        variant = "" if self.config.variant == "lora" else f"{self.config.variant}, "
        return f"{self.base_dir} + {self.path} ({variant}r={self.config.r}, {', '.join(self.config.targets)})"


@dataclass
class BaseFingerprint:
    """base_fingerprint.json in a LoRA run: the base weights it was trained on (`checkpoint_fingerprint`)."""
    fingerprint: str
    checkpoint_dir: str  # where the base was, for messages
    method: str = FINGERPRINT_METHOD

    @classmethod
    def of(cls, checkpoint_dir: "str | Path") -> "BaseFingerprint":
        return cls(checkpoint_fingerprint(checkpoint_dir), str(Path(checkpoint_dir).resolve()))

    def save(self, directory: "str | Path") -> None:
        atomic_write_json(Path(directory) / BASE_FINGERPRINT_FILE, asdict(self))

    @classmethod
    def recorded(cls, directory: "str | Path") -> "Optional[BaseFingerprint]":
        """The record in `directory`, or None for a run from before they were written (or a damaged one)."""
        try:
            return cls(**json.loads((Path(directory) / BASE_FINGERPRINT_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None


# ---- finding a LoRA fine-tune and its base, checked to belong together ---------------------------------------------
def recorded_base_checkpoint(directory: Path) -> Optional[Path]:
    """The base checkpoint_dir that finetune/lora.py recorded in hyperparameters.yaml, or None."""
    path = directory / HYPERPARAMETERS_FILE
    if not path.is_file():
        return None
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid YAML ({type(e).__name__}); pass --checkpoint_dir explicitly") from None
    value = settings.get("checkpoint_dir") if isinstance(settings, dict) else None
    return Path(value) if value else None


def find_lora(lora_path: "str | Path", checkpoint_dir: "str | Path | None" = None, force: bool = False) -> LoRAFinetune:
    """The LoRA file, its config and its base checkpoint (default: the one recorded with the run), checked to belong
    together: the base's lit_config.json must be the one the run copied beside the LoRA file, and its weights the
    ones the run recorded in base_fingerprint.json (`force`: a warning instead of an error)."""
    path = Path(lora_path)
    if path.is_dir():
        path = path / LORA_WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"{path}: LoRA weights not found; pass the {LORA_WEIGHTS_FILE} that finetune/lora.py wrote "
                        "to its --out_dir")
    config = LoRAConfig.from_file(path.parent / LORA_CONFIG_FILE)
    if checkpoint_dir is None:
        recorded = recorded_base_checkpoint(path.parent)
        if recorded is None:
            raise UserError(f"{path.parent / HYPERPARAMETERS_FILE}: not found, so the base model is unknown; pass "
                            "--checkpoint_dir with the checkpoint the LoRA weights were trained on")
        if not (recorded.is_dir() and (recorded / LIT_WEIGHTS_FILE).is_file()):
            raise UserError(f"{recorded}: the base checkpoint recorded in {path.parent / HYPERPARAMETERS_FILE} is "
                            "missing or has no lit_model.pth; pass --checkpoint_dir with its new location")
        checkpoint_dir = recorded
    base_dir = check_checkpoint_dir(checkpoint_dir)
    lora = LoRAFinetune(path=path, config=config, base_dir=base_dir)
    _check_not_merged_already(lora)  # first: merging LoRA on a tied head also changes lit_config.json
    _check_same_base(lora)
    _check_same_weights(lora, force)
    return lora


def _check_not_merged_already(lora: LoRAFinetune) -> None:
    """A checkpoint written by save_merged_checkpoint records the LoRA weights folded into it; applying the same
    weights again would add the update twice."""
    record = lora.base_dir / MERGED_LORA_FILE
    if not record.is_file():
        return
    try:
        merged = json.loads(record.read_text(encoding="utf-8")).get("lora_sha256", [])
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return
    if file_sha256(lora.path) in merged:
        raise UserError(f"{lora.path}: these LoRA weights are already merged into {lora.base_dir}; use that checkpoint "
                        f"as it is (generate/full.py --checkpoint_dir {lora.base_dir}) or pass the original base "
                        "with --checkpoint_dir")


def _check_same_base(lora: LoRAFinetune) -> None:
    trained_on = lora.directory / LIT_CONFIG_FILE
    if not trained_on.is_file():  # only the two LoRA files were copied: the tensor shapes are checked at load time
        return
    expected = Config.from_file(trained_on).to_dict()
    actual = Config.from_file(lora.base_dir / LIT_CONFIG_FILE).to_dict()
    differing = [f"{k} {expected.get(k)!r} != {actual.get(k)!r}" for k in {**expected, **actual}
                 if expected.get(k) != actual.get(k)]
    if differing:
        raise UserError(f"{lora.path}: trained on another base model than {lora.base_dir} (lit_config.json differs: "
                        f"{', '.join(differing[:3])}); pass the --checkpoint_dir the LoRA weights were trained on")


def _check_same_weights(lora: LoRAFinetune, force: bool) -> None:
    """Another base with the same config but other weights (re-converted, another fine-tune of it, a merge) would
    load without an error and answer as neither model: its fingerprint is compared with the recorded one."""
    recorded = BaseFingerprint.recorded(lora.directory)
    if recorded is None:
        if (lora.directory / LIT_CONFIG_FILE).is_file():  # a run's directory (not the LoRA files alone), just older
            log(f"note: {lora.directory} records no fingerprint of its base weights (a run from before they were "
                f"recorded); assuming {lora.base_dir} holds the weights it was trained on")
        return
    actual = checkpoint_fingerprint(lora.base_dir)
    if actual == recorded.fingerprint:
        return
    problem = (f"{lora.path}: trained on base weights with fingerprint {recorded.fingerprint} "
               f"({recorded.checkpoint_dir}) but {lora.base_dir} has {actual}: same config, other weights")
    if not force:
        raise UserError(f"{problem}; pass the --checkpoint_dir it was trained on, or --force true to use these")
    log(f"warning: {problem}; used anyway (--force)")


def _check_lora_tensors(state: dict, model: GPT, lora: LoRAFinetune) -> None:
    """Clear messages for the two ways a LoRA file fails to fit: another rank than its lora_config.json says (files
    of two runs mixed), or another base model (layer sizes)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{lora.path}: not a LoRA state dict (expected {{name: tensor}}); use the {LORA_WEIGHTS_FILE} "
                        "that finetune/lora.py wrote")
    expected = lora_state_dict(model)
    for name, tensor in state.items():
        if name not in expected or tensor.shape == expected[name].shape:
            continue  # unknown names are reported by load_lora_weights
        rank = tensor.shape[0] if name.endswith("lora_A") else tensor.shape[-1]
        if tensor.ndim == 2 and rank != lora.config.r:
            raise UserError(f"{lora.path}: {name} has rank {rank} but {lora.directory / LORA_CONFIG_FILE} says "
                            f"r={lora.config.r}; the LoRA file and its config come from different runs, keep the "
                            "files finetune/lora.py wrote together")
        raise UserError(f"{lora.path}: {name} has shape {tuple(tensor.shape)} but the base model {lora.base_dir} "
                        f"needs {tuple(expected[name].shape)}; the LoRA weights were trained on another base model, "
                        "pass the --checkpoint_dir they were trained on")


def lora_prompt_style(lora: LoRAFinetune) -> PromptStyle:
    """The style the LoRA run trained with (prompt_style.json beside it), else the base model's."""
    if (lora.directory / PROMPT_STYLE_FILE).is_file():
        return load_prompt_style(lora.directory)
    return load_prompt_style(lora.base_dir)


# ---- merging ---------------------------------------------------------------------------------------------------------
def unmerged_model(lora: LoRAFinetune) -> GPT:
    """Base model (CPU, its stored dtype, eval mode) with the LoRA layers and weights, not merged. The LoRA tensors
    are kept in float32 so that B A (and DoRA's norms) are computed at full precision even over a bf16 base."""
    model = load_model(lora.base_dir)
    lora.config.apply(model)
    for name, param in model.named_parameters():
        if name.rsplit(".", 1)[-1] in LORA_TENSOR_NAMES:
            param.data = param.data.float()
    state = load_state_dict(lora.path)
    _check_lora_tensors(state, model, lora)
    load_lora_weights(model, state)
    return model.eval()


def merged_state_dict(model: GPT) -> dict:
    """A plain GPT state dict (no LoRA names, no `.linear.`) with every update folded in (`LoRALinear.merged_weight`:
    W + s B A, or DoRA's rescaled rows); the model is unchanged.
    With LoRA on a tied head the result has its own `lm_head.weight` (W + update) while `wte.weight` stays W: save
    it with `merged_config(model)`, which unties the embeddings."""
    state = model.state_dict()
    for prefix, module in model.named_modules():
        if not isinstance(module, LoRALinear):
            continue
        p = f"{prefix}."
        weight = state.pop(p + "linear.weight")
        if not module.merged:
            if not weight.is_floating_point():
                raise UserError("cannot merge LoRA into a quantized base layer; load the base model without "
                                "--quantize to merge")
            weight = module.merged_weight(weight)
        state[p + "weight"] = weight
        if p + "linear.bias" in state:
            state[p + "bias"] = state.pop(p + "linear.bias")
        for name in LORA_TENSOR_NAMES:
            state.pop(p + name, None)
    return state


def merged_config(model: GPT) -> Config:
    """The model config for `merged_state_dict(model)`: a tied head with LoRA becomes an untied head."""
    head = model.lm_head
    if isinstance(head, LoRALinear) and head.tied:
        return Config(**{**model.config.to_dict(), "tie_embeddings": False})
    return model.config


def merge(lora: LoRAFinetune) -> tuple[Config, dict]:
    """The merged model as a plain checkpoint: (config, state dict in the base's dtype, no LoRA names)."""
    model = unmerged_model(lora)
    return merged_config(model), merged_state_dict(model)


def merged_model(lora: LoRAFinetune) -> GPT:
    """A plain GPT (CPU, the base's dtype, eval mode) with the LoRA updates folded into its weights: as fast as the
    base model, and equal to loading the checkpoint `save_merged_checkpoint` writes."""
    config, state = merge(lora)
    with torch.device("meta"):
        model = GPT(config)
    load_weights(model, state, source=lora.path)
    return model.eval()


def save_merged_checkpoint(lora: LoRAFinetune, out_dir: "str | Path", overwrite: bool = False) -> Path:
    """The LoRA fine-tune merged into its base as a complete checkpoint directory (`checkpoint.save_checkpoint`).
    A directory that already holds a checkpoint is replaced only with `overwrite` (LoRA runs trained on it would
    stop fitting it)."""
    out_dir = check_output(out_dir, {"--checkpoint_dir": lora.base_dir, "--lora_path": lora.path}, "--out_dir")
    if not overwrite and (out_dir / LIT_WEIGHTS_FILE).is_file():
        raise UserError(f"{out_dir}: already holds a checkpoint; choose a new --out_dir, or pass --overwrite true "
                        "to replace it")
    with output_lock(out_dir):
        _save_merged(lora, out_dir)
    return out_dir


def _save_merged(lora: LoRAFinetune, out_dir: Path) -> None:
    config, state = merge(lora)
    save_checkpoint(out_dir, config, state, lora.base_dir, lora_prompt_style(lora))
    earlier = []  # a base that was itself a merge keeps its record: all of them are in these weights
    if (lora.base_dir / MERGED_LORA_FILE).is_file():
        earlier = json.loads((lora.base_dir / MERGED_LORA_FILE).read_text(encoding="utf-8")).get("lora_sha256", [])
    atomic_write_json(out_dir / MERGED_LORA_FILE, {"lora_sha256": [*earlier, file_sha256(lora.path)],
                                                   "lora_path": str(lora.path.resolve()),
                                                   "base_dir": str(lora.base_dir.resolve())})
