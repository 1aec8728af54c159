"""Generate text with a fully fine-tuned checkpoint from finetune/full.py, streaming it to stdout.

    python generate/full.py --checkpoint_dir out/full/alpaca --prompt "Name three primary colors."

The output directory of finetune/full.py is a complete checkpoint; the prompt is formatted in the style the run
trained with (prompt_style.json). Timings go to stderr, so stdout holds only the generated text.
"""

import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.infer.answer import generate_answers  # noqa: E402
from lit_gpt.utils import run_cli  # noqa: E402


def main(*, checkpoint_dir: Path, prompt: str = "What food do llamas eat?", input: str = "",
         max_new_tokens: int = 100, temperature: float = 0.8, top_k: Optional[int] = 50, top_p: Optional[float] = None,
         num_samples: int = 1, precision: Optional[str] = None, seed: int = 1234, device: Optional[str] = None) -> None:
    """Generate text from a fully fine-tuned checkpoint.

    Args:
        checkpoint_dir: the output directory of finetune/full.py (lit_model.pth, lit_config.json, tokenizer files)
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
    generate_answers(checkpoint_dir, None, prompt, input, max_new_tokens=max_new_tokens, temperature=temperature,
                     top_k=top_k, top_p=top_p, num_samples=num_samples, precision=precision, seed=seed,
                     device=device)


if __name__ == "__main__":
    run_cli(main)
