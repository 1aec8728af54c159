"""Generate text with LoRA weights from finetune/lora.py, streaming it to stdout as it is sampled.

    python generate/lora.py --lora_path out/lora/alpaca/lit_model.pth.lora --prompt "Name three primary colors."

The LoRA settings (lora_config.json), the prompt style the run trained with (prompt_style.json) and the base
checkpoint (hyperparameters.yaml) are read from beside the LoRA file; --checkpoint_dir overrides the base checkpoint.
The LoRA updates are merged into the base weights first, so generation is as fast as with the base model.
Timings go to stderr, so stdout holds only the generated text.
"""

import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.infer.answer import generate_answers  # noqa: E402
from lit_gpt.utils import run_cli  # noqa: E402


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
    generate_answers(checkpoint_dir, lora_path, prompt, input, max_new_tokens=max_new_tokens, temperature=temperature,
                     top_k=top_k, top_p=top_p, num_samples=num_samples, precision=precision, seed=seed,
                     device=device)


if __name__ == "__main__":
    run_cli(main)
