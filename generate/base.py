"""Generate text from a converted checkpoint, streaming it to stdout as it is sampled.

    python generate/base.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct \\
        --prompt "What is the capital of France?" --temperature 0

The prompt is wrapped in the checkpoint's prompt style (prompt_style.json, else its chat template); generation
stops at the tokenizer's stop ids and the style's stop strings.
Timings go to stderr, so stdout holds only the generated text.
"""

import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.infer.answer import generate_answers  # noqa: E402
from lit_gpt.prompts import load_prompt_style  # noqa: E402
from lit_gpt.utils import run_cli  # noqa: E402


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
    generate_answers(checkpoint_dir, None, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                     top_k=top_k, top_p=top_p, num_samples=num_samples, precision=precision, seed=seed,
                     device=device)


if __name__ == "__main__":
    run_cli(main)
