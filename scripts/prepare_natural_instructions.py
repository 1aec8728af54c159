"""Prepare Super-NaturalInstructions (allenai/natural-instructions: 1,600+ tasks, each with its own instruction).

    git clone https://github.com/allenai/natural-instructions
    python scripts/prepare_natural_instructions.py --checkpoint_dir ... --data_path natural-instructions
    python scripts/prepare_natural_instructions.py --checkpoint_dir ... --data_path natural-instructions \
        --tasks 'task001_*,task1*_question_generation' --max_instances_per_task 50 --num_pos_examples 0

Each task file (tasks/<task name>.json) holds the task's definition, positive and negative examples and its
instances; an instance becomes instruction = the definition followed by --num_pos_examples positive examples,
input = the instance's input, output = its first reference output, and the task name its source. With the repo root
as --data_path the official split (splits/default/) decides the tasks: its training tasks by default, its held-out
tests with --task_split test. --max_instances_per_task 100 and 2 positive examples are Tk-Instruct's setting: more
instances of a task add little, and keep the large tasks from drowning the small ones.
"""

import importlib.util
import sys
from functools import partial
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.formats import natural_instructions_records, natural_instructions_task_files
from lit_gpt.data.prepare import prepare_source
from lit_gpt.data.records import Origin
from lit_gpt.utils import run_cli

NO_SOURCE = ("--data_path is required: clone https://github.com/allenai/natural-instructions and pass its root "
             "(or its tasks/ folder)")


def main(data_path: Optional[Path] = None, tasks: Optional[str] = None, task_split: Optional[str] = None,
         max_instances_per_task: Optional[int] = 100, num_pos_examples: int = 2,
         destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare Super-NaturalInstructions tasks: read the task files, tokenize, write the prepared data.

    Args:
        data_path: the natural-instructions repo root (tasks/ and splits/) or a folder of task files
        tasks: comma-separated task names or glob patterns, e.g. task001_quoref_question_generation,'task1*_qa*'
            (default: every task of the split)
        task_split: train or test (the official split's tasks, splits/default/) or all (every task file); default
            train where the split files exist, else all
        max_instances_per_task: at most this many instances of each task (a seeded sample; None: all)
        num_pos_examples: positive examples of the task shown after its definition in every instruction
        destination_path: output directory (default: data/natural_instructions)
    """
    names = [s.strip() for s in (tasks or "").split(",") if s.strip()]
    files = None  # --dataset_id, or the error that --data_path is required
    if data_path is not None:
        files, task_split = natural_instructions_task_files(Path(data_path), names, task_split)
    origin = Origin(files, Path(destination_path or "data/natural_instructions"), no_source=NO_SOURCE)
    read = partial(natural_instructions_records, max_instances_per_task=max_instances_per_task,
                   num_pos_examples=num_pos_examples)
    options = {"tasks": names, "task_split": task_split, "max_instances_per_task": max_instances_per_task,
               "num_pos_examples": num_pos_examples}
    return prepare_source(origin, read, name="natural_instructions", options=options, **kwargs)


if __name__ == "__main__":
    run_cli(main)
