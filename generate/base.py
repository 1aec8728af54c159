"""Generate text from a converted checkpoint, streaming it to stdout as it is sampled.

    python generate/base.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct \\
        --prompt "What is the capital of France?" --temperature 0

The prompt is wrapped in the checkpoint's prompt style (chat template) when lit_gpt.prompts provides one.
Timings go to stderr, so stdout holds only the generated text.
"""

import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from lit_gpt.checkpoint import load_model
from lit_gpt.generate import TextStreamer, generate
from lit_gpt.precision import choose_precision, param_dtype
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError, run_cli

try:
    from lit_gpt.prompts import load_prompt_style
except ModuleNotFoundError as e:
    if e.name != "lit_gpt.prompts":
        raise
    load_prompt_style = None


def format_prompt(prompt: str, checkpoint_dir: Path) -> str:
    """The prompt as the checkpoint expects it: its prompt style if lit_gpt.prompts exists, else unchanged."""
    if load_prompt_style is None:
        return prompt
    return load_prompt_style(checkpoint_dir).prompt(prompt)


def check_sampling_args(max_new_tokens: int, temperature: float, top_k: Optional[int], top_p: Optional[float],
                        num_samples: int) -> None:
    if max_new_tokens < 1:
        raise UserError(f"--max_new_tokens {max_new_tokens}: must be at least 1")
    if temperature < 0:
        raise UserError(f"--temperature {temperature}: must be >= 0 (0 = greedy)")
    if top_k is not None and top_k < 1:
        raise UserError(f"--top_k {top_k}: must be at least 1")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise UserError(f"--top_p {top_p}: must be in (0, 1]")
    if num_samples < 1:
        raise UserError(f"--num_samples {num_samples}: must be at least 1")


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
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = param_dtype(choose_precision(precision, cuda=device.type == "cuda"))

    t0 = time.perf_counter()
    model = load_model(checkpoint_dir, device=device, dtype=dtype).eval()
    tokenizer = Tokenizer(checkpoint_dir)
    print(f"Loaded {checkpoint_dir} in {time.perf_counter() - t0:.1f} s ({dtype}, {device})", file=sys.stderr)

    prompt_ids = tokenizer.encode(format_prompt(prompt, checkpoint_dir)).to(device)
    torch.manual_seed(seed)
    for i in range(num_samples):
        if i:
            print()  # a blank line between samples
        streamer = TextStreamer(tokenizer)
        t0 = time.perf_counter()
        new_ids = generate(model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           eos_id=tokenizer.stop_ids, stream=streamer)
        streamer.end()
        seconds = time.perf_counter() - t0
        print(flush=True)
        print(f"Sample {i + 1}: {len(new_ids)} tokens in {seconds:.2f} s ({len(new_ids) / seconds:.1f} tokens/s)",
              file=sys.stderr)
    if device.type == "cuda":
        print(f"Peak GPU memory: {torch.cuda.max_memory_allocated(device) / 1e9:.2f} GB", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
