"""Everything the generate/ scripts and scripts/merge_lora.py share: finding a fine-tune's base model and settings,
loading it (LoRA merged into the base weights), prompting it in its saved prompt style and streaming the answer.

A LoRA run of finetune/lora.py leaves `lit_model.pth.lora` beside `lora_config.json` (r, alpha, targets),
`prompt_style.json`, the base model's `lit_config.json` and `hyperparameters.yaml` (which records the base
`checkpoint_dir`), so the LoRA file alone says how to rebuild the model: `find_lora(path)` reads all of it.
"""

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, TextIO

import torch

from lit_gpt.checkpoint import TOKENIZER_FILES, check_checkpoint_dir, load_model, load_weights
from lit_gpt.config import Config
from lit_gpt.data import encode_prompt
from lit_gpt.generate import TextStreamer, generate, sampling_error
from lit_gpt.lora import (LORA_CONFIG_FILE, LORA_WEIGHTS_FILE, LoRAConfig, LoRALinear, load_lora_weights,
                          lora_state_dict, merge_lora_weights, merged_config)
from lit_gpt.model import GPT
from lit_gpt.precision import choose_precision, param_dtype
from lit_gpt.prompts import PROMPT_STYLE_FILE, PromptStyle, load_prompt_style, save_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError, atomic_path, atomic_torch_save, check_writable_dir, load_state_dict

HYPERPARAMETERS_FILE = "hyperparameters.yaml"


# ---- command-line checks ---------------------------------------------------------------------------------------------
def check_sampling_args(max_new_tokens: int, temperature: float, top_k: Optional[int], top_p: Optional[float],
                        num_samples: int = 1) -> None:
    if max_new_tokens < 1:
        raise UserError(f"--max_new_tokens {max_new_tokens}: must be at least 1")
    error = sampling_error(temperature, top_k, top_p)
    if error is not None:
        raise UserError(error)
    if num_samples < 1:
        raise UserError(f"--num_samples {num_samples}: must be at least 1")


def device_and_dtype(device: Optional[str], precision: Optional[str]) -> tuple[torch.device, torch.dtype]:
    """--device (default cuda when available) and the weight dtype --precision asks for on it."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return device, param_dtype(choose_precision(precision, cuda=device.type == "cuda"))


# ---- finding a LoRA fine-tune and its base model --------------------------------------------------------------------
@dataclass
class LoRAFinetune:
    path: Path  # lit_model.pth.lora
    config: LoRAConfig  # from the lora_config.json beside it
    base_dir: Path  # the base checkpoint it was trained on

    @property
    def directory(self) -> Path:
        return self.path.parent


def recorded_base_checkpoint(directory: Path) -> Optional[Path]:
    """The base checkpoint_dir that finetune/lora.py recorded in hyperparameters.yaml, or None."""
    import yaml

    path = directory / HYPERPARAMETERS_FILE
    if not path.is_file():
        return None
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid YAML ({type(e).__name__}); pass --checkpoint_dir explicitly") from None
    value = settings.get("checkpoint_dir") if isinstance(settings, dict) else None
    return Path(value) if value else None


def find_lora(lora_path: "str | Path", checkpoint_dir: "str | Path | None" = None) -> LoRAFinetune:
    """The LoRA file, its config and its base checkpoint (default: the one recorded with the run), checked to belong
    together: the base's lit_config.json must be the one the run copied beside the LoRA file."""
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
        if not (recorded.is_dir() and (recorded / "lit_model.pth").is_file()):
            raise UserError(f"{recorded}: the base checkpoint recorded in {path.parent / HYPERPARAMETERS_FILE} is "
                            "missing or has no lit_model.pth; pass --checkpoint_dir with its new location")
        checkpoint_dir = recorded
    base_dir = check_checkpoint_dir(checkpoint_dir)
    lora = LoRAFinetune(path=path, config=config, base_dir=base_dir)
    _check_same_base(lora)
    return lora


def _check_same_base(lora: LoRAFinetune) -> None:
    trained_on = lora.directory / "lit_config.json"
    if not trained_on.is_file():  # only the two LoRA files were copied: the tensor shapes are checked at load time
        return
    expected = Config.from_file(trained_on).to_dict()
    actual = Config.from_file(lora.base_dir / "lit_config.json").to_dict()
    differing = [f"{k} {expected.get(k)!r} != {actual.get(k)!r}" for k in {**expected, **actual}
                 if expected.get(k) != actual.get(k)]
    if differing:
        raise UserError(f"{lora.path}: trained on another base model than {lora.base_dir} (lit_config.json differs: "
                        f"{', '.join(differing[:3])}); pass the --checkpoint_dir the LoRA weights were trained on")


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


# ---- loading ---------------------------------------------------------------------------------------------------------
def load_lora_model(lora: LoRAFinetune) -> GPT:
    """Base model (CPU, its stored dtype) with the LoRA layers and weights, not merged. The LoRA tensors are kept in
    float32 so that B A is computed at full precision even over a bf16 base."""
    model = load_model(lora.base_dir)
    lora.config.apply(model)
    for module in model.modules():
        if isinstance(module, LoRALinear):
            module.lora_A.data = module.lora_A.data.float()
            module.lora_B.data = module.lora_B.data.float()
    state = load_state_dict(lora.path)
    _check_lora_tensors(state, model, lora)
    load_lora_weights(model, state)
    return model.eval()


def merge_lora(lora: LoRAFinetune) -> tuple[Config, dict]:
    """The merged model as a plain checkpoint: (config, state dict in the base's dtype, no LoRA names)."""
    model = load_lora_model(lora)
    config, state = merged_config(model), merge_lora_weights(model)
    if config.tie_embeddings:  # the head is the embedding; the file keeps one copy
        state.pop("lm_head.weight", None)
    return config, state


def load_merged_lora_model(lora: LoRAFinetune, device: "str | torch.device" = "cpu",
                           dtype: Optional[torch.dtype] = None) -> GPT:
    """A plain GPT with the LoRA updates folded into its weights: as fast as the base model. Merged in the base's
    dtype first, then cast, so it equals loading the checkpoint scripts/merge_lora.py writes."""
    config, state = merge_lora(lora)
    with torch.device("meta"):
        model = GPT(config)
    load_weights(model, state, source=lora.path)
    return model.to(device=device, dtype=dtype).eval()


def load_finetuned_model(checkpoint_dir: "str | Path", device: "str | torch.device" = "cpu",
                         dtype: Optional[torch.dtype] = None) -> GPT:
    """A complete checkpoint (base or full fine-tune); a LoRA output directory is pointed to generate/lora.py."""
    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / "lit_model.pth").is_file() and (checkpoint_dir / LORA_WEIGHTS_FILE).is_file():
        raise UserError(f"{checkpoint_dir}: holds LoRA weights ({LORA_WEIGHTS_FILE}), not a full model; use "
                        f"generate/lora.py --lora_path {checkpoint_dir / LORA_WEIGHTS_FILE}")
    return load_model(checkpoint_dir, device=device, dtype=dtype).eval()


def lora_prompt_style(lora: LoRAFinetune) -> PromptStyle:
    """The style the LoRA run trained with (prompt_style.json beside it), else the base model's."""
    if (lora.directory / PROMPT_STYLE_FILE).is_file():
        return load_prompt_style(lora.directory)
    return load_prompt_style(lora.base_dir)


def load_for_generation(checkpoint_dir: "str | Path | None", lora_path: "str | Path | None",
                        device: "str | torch.device", dtype: Optional[torch.dtype]
                        ) -> tuple[GPT, Tokenizer, PromptStyle, str]:
    """(model, tokenizer, prompt style, description) for a checkpoint, or a base checkpoint + LoRA weights."""
    if lora_path is not None:
        lora = find_lora(lora_path, checkpoint_dir)
        model = load_merged_lora_model(lora, device=device, dtype=dtype)
        description = f"{lora.base_dir} + {lora.path} (r={lora.config.r}, {', '.join(lora.config.targets)})"
        return model, Tokenizer(lora.base_dir), lora_prompt_style(lora), description
    if checkpoint_dir is None:
        raise UserError("pass --checkpoint_dir (a checkpoint directory) or --lora_path (LoRA weights)")
    model = load_finetuned_model(checkpoint_dir, device=device, dtype=dtype)
    return model, Tokenizer(checkpoint_dir), load_prompt_style(checkpoint_dir), str(checkpoint_dir)


def generate_answers(checkpoint_dir: "str | Path | None", lora_path: "str | Path | None", prompt: str, input: str = "",
                     *, max_new_tokens: int, temperature: float, top_k: Optional[int], top_p: Optional[float],
                     num_samples: int, precision: Optional[str], seed: int, device: Optional[str]) -> None:
    """What generate/base.py, full.py and lora.py run: check the flags, load the checkpoint (LoRA merged into its
    base), prompt it in the style it was trained with and stream `num_samples` answers to stdout."""
    check_sampling_args(max_new_tokens, temperature, top_k, top_p, num_samples)
    device, dtype = device_and_dtype(device, precision)
    t0 = time.perf_counter()
    model, tokenizer, style, description = load_for_generation(checkpoint_dir, lora_path, device, dtype)
    print_loaded(f"{description} (prompt style {style.name})", time.perf_counter() - t0, model)
    prompt_ids = encode_prompt(tokenizer, style, prompt, input, device=device)
    generate_samples(model, tokenizer, prompt_ids, num_samples=num_samples, max_new_tokens=max_new_tokens,
                     temperature=temperature, top_k=top_k, top_p=top_p, stop_strings=style.stop_strings, seed=seed)


# ---- writing a merged checkpoint ---------------------------------------------------------------------------------
def save_merged_checkpoint(lora: LoRAFinetune, out_dir: "str | Path") -> Path:
    """A complete checkpoint directory: lit_config.json, lit_model.pth (LoRA merged), tokenizer files,
    prompt_style.json. Each file is written atomically; lit_config.json goes last (and an old one first), so an
    interrupted merge never leaves a directory that loads as a checkpoint with mismatched files."""
    out_dir = Path(out_dir)
    for other, what in ((lora.base_dir, "the base checkpoint"), (lora.directory, "the LoRA run's directory")):
        if out_dir.resolve() == other.resolve():
            raise UserError(f"{out_dir}: --out_dir must differ from {what}; choose a new directory")
    check_writable_dir(out_dir)
    config, state = merge_lora(lora)
    (out_dir / "lit_config.json").unlink(missing_ok=True)
    atomic_torch_save(state, out_dir / "lit_model.pth")
    for name in TOKENIZER_FILES:
        if (lora.base_dir / name).is_file():
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(lora.base_dir / name, tmp)
        else:  # left from an earlier merge of another model, it would be read as this model's tokenizer
            (out_dir / name).unlink(missing_ok=True)
    save_prompt_style(lora_prompt_style(lora), out_dir)
    config.save(out_dir / "lit_config.json")
    return out_dir


# ---- prompting and streaming ------------------------------------------------------------------------------------
def encode_conversation(tokenizer: Tokenizer, style: PromptStyle, messages: list[dict], max_tokens: int,
                        device: Optional[torch.device] = None) -> tuple[Optional[torch.Tensor], list[dict]]:
    """Prompt ids (`lit_gpt.data.encode_prompt`) for a conversation that ends with a user message, and the messages
    they encode: the oldest exchanges are dropped (a system message stays) until the prompt fits in max_tokens. The
    ids are None when even the last user message alone does not fit."""
    system = messages[:1] if messages and messages[0].get("role") == "system" else []
    rest = messages[len(system):]
    while True:
        ids = encode_prompt(tokenizer, style, system + rest, device=device)
        if ids.numel() <= max_tokens:
            return ids, system + rest
        if len(rest) <= 1:
            return None, system + rest
        rest = rest[2:]  # the oldest user message and its answer


class _StopStringReached(Exception):
    pass


class StopStringStreamer(TextStreamer):
    """TextStreamer that also ends the answer at the first of `stop_strings` (e.g. Alpaca's "### Instruction:", where
    a model goes on to invent the next turn). Text that could be the start of a stop string is held back until it is
    clear; the stop string itself is never printed."""

    def __init__(self, tokenizer: Tokenizer, stop_strings: Iterable[str] = (), file: Optional[TextIO] = None) -> None:
        super().__init__(tokenizer, file)
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.text = ""

    def put(self, token_id: int) -> None:
        self.token_ids.append(int(token_id))
        text = self.tokenizer.decode(self.token_ids)
        cut = min((i for i in (text.find(s) for s in self.stop_strings) if i >= 0), default=-1)
        if cut >= 0:
            self.text = text[:cut]
            self._emit(self.text)
            raise _StopStringReached
        self.text = text
        held = max((k for s in self.stop_strings for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        if not text.endswith("\ufffd"):
            self._emit(text[:len(text) - held])

    def end(self) -> str:
        self._emit(self.text)
        return self.text


def stream_answer(model: GPT, tokenizer: Tokenizer, prompt_ids: torch.Tensor, max_new_tokens: int, *,
                  temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None,
                  stop_strings: Iterable[str] = (), file: Optional[TextIO] = None) -> tuple[int, str]:
    """Generates and prints the answer as it arrives, until a stop id of the tokenizer, a stop string or
    max_new_tokens; returns (tokens generated, answer text)."""
    streamer = StopStringStreamer(tokenizer, stop_strings, file)
    try:
        generate(model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                 eos_id=tokenizer.stop_ids, stream=streamer)
    except _StopStringReached:
        pass
    return len(streamer.token_ids), streamer.end()


def generate_samples(model: GPT, tokenizer: Tokenizer, prompt_ids: torch.Tensor, *, num_samples: int = 1,
                     max_new_tokens: int = 100, temperature: float = 0.8, top_k: Optional[int] = 50,
                     top_p: Optional[float] = None, stop_strings: Iterable[str] = (), seed: int = 1234) -> list[str]:
    """The generate scripts' output: each sample streamed to stdout (a blank line between samples), speed to stderr."""
    torch.manual_seed(seed)
    texts = []
    for i in range(num_samples):
        if i:
            print()
        t0 = time.perf_counter()
        n, text = stream_answer(model, tokenizer, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                                top_p=top_p, stop_strings=stop_strings)
        seconds = time.perf_counter() - t0
        print(flush=True)
        print(f"Sample {i + 1}: {n} tokens in {seconds:.2f} s ({n / seconds:.1f} tokens/s)", file=sys.stderr)
        texts.append(text)
    if prompt_ids.device.type == "cuda":
        print(f"Peak GPU memory: {torch.cuda.max_memory_allocated(prompt_ids.device) / 1e9:.2f} GB", file=sys.stderr)
    return texts


def print_loaded(description: str, seconds: float, model: GPT) -> None:
    weight = model.wte.weight
    print(f"Loaded {description} in {seconds:.1f} s ({weight.dtype}, {weight.device})", file=sys.stderr)


__all__ = ["check_sampling_args", "device_and_dtype", "LoRAFinetune", "find_lora", "recorded_base_checkpoint",
           "load_lora_model", "merge_lora", "load_merged_lora_model", "load_finetuned_model", "lora_prompt_style",
           "load_for_generation", "save_merged_checkpoint", "encode_conversation",
           "StopStringStreamer", "stream_answer", "generate_samples", "generate_answers", "print_loaded", "HYPERPARAMETERS_FILE"]
