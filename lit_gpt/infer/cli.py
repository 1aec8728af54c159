"""The generate/ scripts' command line: the sampling flags they all take, written once, and the model flags of each.

    generate/base.py:  run_cli(generate_command("base"))
"""

import inspect
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from lit_gpt.infer.answer import generate_answers
from lit_gpt.infer.lookup import DRAFT_TOKENS
from lit_gpt.utils import with_flags

MODEL_FLAGS = {  # name -> (annotation, default, help); inspect.Parameter.empty = required
    "base": [("checkpoint_dir", Path, Path("checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct"),
              "converted checkpoint (lit_config.json, lit_model.pth, tokenizer files)")],
    "full": [("checkpoint_dir", Path, inspect.Parameter.empty,
              "the output directory of finetune/full.py (lit_model.pth, lit_config.json, tokenizer files)")],
    "lora": [("lora_path", Path, inspect.Parameter.empty,
              "lit_model.pth.lora written by finetune/lora.py (or its output directory, or one of its "
              "checkpoints/step-N directories)"),
             ("checkpoint_dir", Optional[Path], None,
              "the base checkpoint (default: the one recorded in hyperparameters.yaml beside the LoRA file)"),
             ("force", bool, False, "merge the LoRA weights even into a base whose weights differ from the ones they "
                                    "were trained on (same config, other fingerprint)")],
}
DESCRIPTIONS = {"base": "Generate text from a checkpoint.",
                "full": "Generate text from a fully fine-tuned checkpoint.",
                "lora": "Generate text from a base checkpoint + LoRA weights."}
SAMPLING_FLAGS = [
    ("prompt", str, "What food do llamas eat?", "the instruction"),
    ("input", str, "", "optional extra context for the instruction (Alpaca's \"### Input:\")"),
    ("prompt_style", Optional[str], None, "how the prompt is wrapped (default: the style the checkpoint was trained "
                                          "with); `plain` continues the prompt text exactly as given"),
    ("max_new_tokens", int, 100, "most tokens to generate per sample"),
    ("temperature", float, 0.8, "sampling temperature; 0 = greedy"),
    ("top_k", Optional[int], 50, "sample among the k most likely tokens only"),
    ("top_p", Optional[float], None, "sample from the smallest set of tokens whose probability sums to top_p "
                                     "(nucleus sampling)"),
    ("num_samples", int, 1, "how many samples to generate"),
    ("precision", Optional[str], None, "32-true, bf16-true or 16-true; default bf16 where the hardware has it "
                                       "natively, else float32"),
    ("seed", int, 1234, "random seed, for reproducible samples"),
    ("device", Optional[str], None, "cpu, cuda, cuda:1, ...; default cuda when available"),
    ("compile", bool, False, "the decode step through torch.compile: faster tokens after a one-off compile (about "
                             "a minute on a CPU; needs a C++ compiler there)"),
    ("prompt_lookup", int, DRAFT_TOKENS, "greedy (--temperature 0) only: up to this many draft tokens per step, "
                                         "copied from earlier in the text and kept where greedy decoding agrees "
                                         "(the answer is the same); 0 = one token per step"),
]


def generate_command(kind: Literal["base", "full", "lora"]) -> Callable:
    """The `main` of generate/<kind>.py for `run_cli`: its model flags plus the sampling flags; it streams the
    answers (`lit_gpt.infer.answer.generate_answers`)."""
    def main(**values: Any) -> None:
        generate_answers(values.pop("checkpoint_dir", None), values.pop("lora_path", None), values.pop("prompt"),
                         values.pop("input"), **values)

    main.__doc__ = DESCRIPTIONS[kind]
    return with_flags(main, MODEL_FLAGS[kind] + SAMPLING_FLAGS)
