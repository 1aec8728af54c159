"""Generate text from a converted checkpoint, streaming it to stdout as it is sampled.

    python generate/base.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct \\
        --prompt "What is the capital of France?" --temperature 0

The prompt is wrapped in the checkpoint's prompt style (prompt_style.json, else its chat template); generation
stops at the tokenizer's stop ids and the style's stop strings.
Timings go to stderr, so stdout holds only the generated text.
"""

import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.data import encode_prompt
from lit_gpt.inference import (check_sampling_args, device_and_dtype, generate_samples,
                               load_finetuned_model, print_loaded)
from lit_gpt.prompts import load_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import run_cli


def format_prompt(prompt: str, checkpoint_dir: Path) -> str:
    """The prompt text in the checkpoint's prompt style (the script encodes it with special tokens by id)."""
    return load_prompt_style(checkpoint_dir).prompt(prompt)


def main(checkpoint_dir: Path = Path("checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct"), prompt: str = "What food do llamas eat?", max_new_tokens: int = 100,
         temperature: float = 0.8, top_k: Optional[int] = 50, top_p: Optional[float] = None, num_samples: int = 1,
         precision: Optional[str] = None, seed: int = 1234, device: Optional[str] = None) -> None:
    """Generate text from a checkpoint.

    Args:
        checkpoint_dir: Converted checkpoint (lit_config.json, lit_model.pth, tokenizer files).
        prompt: The input text.
        max_new_tokens: Most tokens to generate per sample.
        temperature: Sampling temperature; 0 = greedy.
        top_k: Sample among the k most likely tokens only.
        top_p: Sample from the smallest set of tokens whose probability sums to top_p (nucleus sampling).
        num_samples: How many samples to generate.
        precision: 32-true, bf16-true or 16-true; default bf16 where the hardware has it natively, else float32.
        seed: Random seed, for reproducible samples.
        device: cpu, cuda, cuda:1, ...; default cuda when available.
    """
    check_sampling_args(max_new_tokens, temperature, top_k, top_p, num_samples)
    device, dtype = device_and_dtype(device, precision)

    t0 = time.perf_counter()
    model = load_finetuned_model(checkpoint_dir, device=device, dtype=dtype)
    tokenizer = Tokenizer(checkpoint_dir)
    style = load_prompt_style(checkpoint_dir)
    print_loaded(str(checkpoint_dir), time.perf_counter() - t0, model)

    prompt_ids = encode_prompt(tokenizer, style, prompt, device=device)
    generate_samples(model, tokenizer, prompt_ids, num_samples=num_samples, max_new_tokens=max_new_tokens,
                     temperature=temperature, top_k=top_k, top_p=top_p, stop_strings=style.stop_strings, seed=seed)


if __name__ == "__main__":
    run_cli(main)
