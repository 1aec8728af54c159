"""Answer every instruction of a dataset file with a checkpoint and write the answers in the Alpaca layout.

    python generate/answers.py --data_path ../shared/datasets/alpaca_gpt4/sample_999.json \\
        --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct --output data/smollm2_answers.json

Each row (instruction + input, or the first user turn of a conversation; any layout prepare_json.py reads) is
answered in the checkpoint's prompt style, greedily unless --temperature says otherwise, by continuous batching
(--batch_size rows in flight), until the tokenizer's stop ids, the style's stop strings or --max_new_tokens. The
output has one row per input row, in order: {"instruction", "input", "output": the model's answer, "finished":
false where the budget cut it, "source": "model"} (and the row's "constraints", when it has them: rows of
scripts/add_constraints.py, scored by scripts/score_dataset.py --method constraints).

Self-play preference pairs (SPIN, Chen et al. 2024): the dataset's own answers chosen, the model's rejected —

    python scripts/prepare_preferences.py --checkpoint_dir ... --data_path data.json --rejected_path answers.json
"""

import importlib.util
import sys
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

import torch

from lit_gpt.data.normalize import read_instructions
from lit_gpt.data.records import write_records
from lit_gpt.infer.answer import answer_prompts, check_sampling_args
from lit_gpt.infer.load import LOAD_FLAGS, load
from lit_gpt.utils import UserError, check_output, log, run_cli, with_flags


def main(*, data_path: Path, output: Path, checkpoint_dir: Optional[Path] = None, lora_path: Optional[Path] = None,
         limit: Optional[int] = None, max_new_tokens: int = 512, temperature: float = 0.0,
         top_k: Optional[int] = None, top_p: Optional[float] = None, batch_size: int = 32, seed: int = 1337,
         **load_flags) -> Path:
    """Answer each row's instruction and write the answers.

    Args:
        data_path: a JSON/JSONL/CSV/Parquet file of instructions (Alpaca, conversations, ...)
        output: where the answers go (.json or .jsonl)
        checkpoint_dir: a checkpoint (base or full fine-tune)
        lora_path: a LoRA run dir or its lit_model.pth.lora (merged into its base)
        limit: answer only the first N rows
        max_new_tokens: the most tokens of each answer
        temperature: 0 = greedy
        top_k: sample from the k most likely tokens
        top_p: nucleus sampling
        batch_size: answers generated at a time (rows in flight)
        seed: sampling seed (temperature > 0)
    """
    check_sampling_args(max_new_tokens, temperature, top_k, top_p)
    if checkpoint_dir is None and lora_path is None:
        raise UserError("give --checkpoint_dir or --lora_path: the model that answers")
    check_output(output, {"--data_path": data_path, "--checkpoint_dir": checkpoint_dir, "--lora_path": lora_path},
                 "--output")
    # rows of scripts/add_constraints.py keep their checks with the answers
    prompts = read_instructions(data_path, limit, keep=("constraints",))
    loaded = load(checkpoint_dir, lora_path, **load_flags)
    log(f"{loaded.description}: answering {len(prompts)} rows of {data_path}")
    generator = torch.Generator(loaded.model.wte.weight.device).manual_seed(seed)
    answers = answer_prompts(loaded.model, loaded.tokenizer, loaded.style, prompts, max_new_tokens,
                             batch_size=batch_size, progress="answers", temperature=temperature, top_k=top_k,
                             top_p=top_p, generator=generator)
    rows = [dict(prompt, output=answer.text, finished=answer.finished, source="model")
            for prompt, answer in zip(prompts, answers)]
    write_records(output, rows)
    cut = sum(not answer.finished for answer in answers)
    log(f"wrote {len(rows)} answers to {output} ({cut} cut at --max_new_tokens {max_new_tokens})")
    return Path(output)


main = with_flags(main, LOAD_FLAGS)  # --device, --precision

if __name__ == "__main__":
    run_cli(main)
