"""Generates new instruction data from a few seed tasks with a local model (Self-Instruct, as Stanford Alpaca used it).

    python scripts/self_instruct.py --seed_tasks seed_tasks.jsonl \\
        --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct --num_instructions 200 --output data/generated.json

Each request shows --num_prompt_tasks random seed tasks and asks for --tasks_per_request more in the same format.
Every generated task is kept only if its instruction has 3-150 words, names nothing a text model cannot do (image,
graph, file, map, draw, video, audio, ...), does not start with punctuation or a non-ASCII character, has an output,
and has ROUGE-L < --rouge_threshold (0.7) to every instruction in the pool (the seeds and the tasks kept so far).
The output (Alpaca layout, ready for scripts/prepare_json.py) is rewritten atomically after every request, and
`<output>.manifest.json` counts what was generated and why candidates were rejected.
"""

import json
import importlib.util
import sys
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.records import load_records, write_records
from lit_gpt.infer.load import LOAD_FLAGS, load
from lit_gpt.quality.scored_records import scoring_example
from lit_gpt.quality.synthetic import InstructionFilter, SelfInstructConfig, self_instruct
from lit_gpt.utils import UserError, atomic_write_text, check_output, log, run_cli, with_flags


def main(
    *,
    seed_tasks: Path,
    checkpoint_dir: Path,
    output: Path,
    num_instructions: int = 100,
    num_prompt_tasks: int = 3,
    tasks_per_request: int = 5,
    max_new_tokens: int = 512,
    temperature: float = 1.0,
    top_p: Optional[float] = 0.95,
    max_requests: Optional[int] = None,
    batch_size: int = 8,
    rouge_threshold: float = 0.7,
    seed: int = 0,
    **load_flags,
) -> Path:
    """Generate up to --num_instructions filtered tasks.

    Args:
        seed_tasks: JSON/JSONL seed tasks with instruction, (input), output
        checkpoint_dir: the model that writes the tasks (prompted in its own prompt style)
        output: where to write the generated tasks (.json or .jsonl)
        num_instructions: how many tasks to keep
        num_prompt_tasks: seed tasks shown in each request
        tasks_per_request: new tasks asked for in each request
        max_new_tokens: tokens generated per request
        temperature: sampling temperature (diversity matters here; 0 is greedy)
        top_p: nucleus sampling
        max_requests: stop after this many requests even if short of the target (default 10 per task + 10)
        batch_size: requests generated together (never more than the missing tasks need)
        rouge_threshold: reject instructions with ROUGE-L >= this to any instruction in the pool
        seed: seed for the choice of examples and for sampling
    """
    seeds = []
    for i, row in enumerate(load_records(seed_tasks)):
        example = scoring_example(i, row)
        if example.instruction.strip() and example.output.strip():
            seeds.append({"instruction": example.instruction, "input": example.input, "output": example.output})
    if not seeds:
        raise UserError(f"{seed_tasks}: no row has both an instruction and an output")
    if num_instructions < 1:
        raise UserError(f"--num_instructions {num_instructions}: must be at least 1")
    output = check_output(output, {"--seed_tasks": seed_tasks, "--checkpoint_dir": checkpoint_dir}, "--output")
    generator = load(checkpoint_dir, **load_flags)
    manifest_path = output.with_name(output.name + ".manifest.json")
    settings = {"seed_tasks": str(seed_tasks), "checkpoint_dir": str(checkpoint_dir),
                "prompt_style": generator.style.name, "num_prompt_tasks": num_prompt_tasks,
                "tasks_per_request": tasks_per_request,
                "max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
                "rouge_threshold": rouge_threshold}

    def save(tasks: list[dict], stats: dict) -> None:
        write_records(output, [{**t, "source": "self-instruct"} for t in tasks])
        atomic_write_text(manifest_path, json.dumps({"settings": settings, "seed_tasks_count": len(seeds),
                                                     **stats}, indent=2) + "\n")
        log(f"request {stats['requests']}: {stats['accepted']}/{num_instructions} kept "
            f"({stats['parsed']} parsed, rejected {stats['rejected']})")

    config = SelfInstructConfig(num_prompt_tasks=num_prompt_tasks, tasks_per_request=tasks_per_request,
                                max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                max_requests=max_requests, seed=seed, batch_size=batch_size)
    tasks, stats = self_instruct(generator.model, generator.tokenizer, generator.style, seeds, num_instructions,
                                 config, InstructionFilter(rouge_threshold=rouge_threshold), on_progress=save)
    save(tasks, stats)
    log(f"wrote {len(tasks)} tasks to {output}; manifest {manifest_path}")
    return output


main = with_flags(main, LOAD_FLAGS)  # --device, --precision

if __name__ == "__main__":
    run_cli(main)
