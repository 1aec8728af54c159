"""Generate text with LoRA weights from finetune/lora.py, streaming it to stdout as it is sampled.

    python generate/lora.py --lora_path out/lora/alpaca/lit_model.pth.lora --prompt "Name three primary colors."

The LoRA settings (lora_config.json), the prompt style the run trained with (prompt_style.json) and the base
checkpoint (hyperparameters.yaml) are read from beside the LoRA file; --checkpoint_dir overrides the base checkpoint.
The LoRA updates are merged into the base weights first, so generation is as fast as with the base model.
Timings go to stderr, so stdout holds only the generated text.
"""

import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.data import encode_prompt
from lit_gpt.inference import (check_sampling_args, device_and_dtype, find_lora, generate_samples,
                               load_merged_lora_model, lora_prompt_style, print_loaded)
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import run_cli


def main(*, lora_path: Path, checkpoint_dir: Optional[Path] = None, prompt: str = "What food do llamas eat?",
         input: str = "", max_new_tokens: int = 100, temperature: float = 0.8, top_k: Optional[int] = 50,
         top_p: Optional[float] = None, num_samples: int = 1, precision: Optional[str] = None, seed: int = 1234,
         device: Optional[str] = None) -> None:
    """Generate text from a base checkpoint + LoRA weights.

    Args:
        lora_path: lit_model.pth.lora written by finetune/lora.py (or its output directory)
        checkpoint_dir: the base checkpoint (default: the one recorded in hyperparameters.yaml beside the LoRA file)
        prompt: the instruction
        input: optional extra context for the instruction (Alpaca's "### Input:")
        max_new_tokens: most tokens to generate per sample
        temperature: sampling temperature; 0 = greedy
        top_k: sample among the k most likely tokens only
        top_p: sample from the smallest set of tokens whose probability sums to top_p (nucleus sampling)
        num_samples: how many samples to generate
        precision: 32-true, bf16-true or 16-true; default bf16 where the hardware has it natively, else float32
        seed: random seed, for reproducible samples
        device: cpu, cuda, cuda:1, ...; default cuda when available
    """
    check_sampling_args(max_new_tokens, temperature, top_k, top_p, num_samples)
    device, dtype = device_and_dtype(device, precision)
    t0 = time.perf_counter()
    lora = find_lora(lora_path, checkpoint_dir)
    model = load_merged_lora_model(lora, device=device, dtype=dtype)
    tokenizer = Tokenizer(lora.base_dir)
    style = lora_prompt_style(lora)
    print_loaded(f"{lora.base_dir} + {lora.path} (r={lora.config.r}, {', '.join(lora.config.targets)}; prompt style "
                 f"{style.name})", time.perf_counter() - t0, model)
    prompt_ids = encode_prompt(tokenizer, style, prompt, input, device=device)
    generate_samples(model, tokenizer, prompt_ids, num_samples=num_samples, max_new_tokens=max_new_tokens,
                     temperature=temperature, top_k=top_k, top_p=top_p, stop_strings=style.stop_strings, seed=seed)


if __name__ == "__main__":
    run_cli(main)
