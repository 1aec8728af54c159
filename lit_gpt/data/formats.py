"""Source layouts that take more than a column mapping to become records: Super-NaturalInstructions task files and
the prompted subsets of P3 (bigscience/P3). The prepare scripts pick the files; the rows become records here and then
go through the same pipeline as every other source (lit_gpt/data/prepare.py).

Super-NaturalInstructions (allenai/natural-instructions): one JSON file per task, tasks/<task name>.json, with
"Definition" (a list of str), "Positive Examples" / "Negative Examples" ([{input, output, explanation}]) and
"Instances" ([{id, input, output: [str, ...]}]); the official split of tasks into training and held-out tasks is
splits/default/train_tasks.txt and test_tasks.txt (one task name per line). An instance becomes
instruction = the definition (+ k positive examples), input = the instance's input, output = its first output.

P3 (bigscience/P3): one folder per prompted subset (<dataset>_<prompt name>), holding train-00000-of-00001.parquet
(the Hub's main branch), train/0000.parquet (its refs/convert/parquet branch) or train.jsonl copies. A row's
inputs_pretokenized is the instruction and targets_pretokenized the output; `inputs`/`targets` (T5 token ids) are
dropped. The rank-classification subsets (*_score_eval) hold one row per answer choice with is_correct: only the
correct choice's row is kept.
"""

import fnmatch
import json
import random
from pathlib import Path
from typing import Iterator, Optional

from lit_gpt.data.records import Skipped, Source, iter_records, read_text
from lit_gpt.utils import UserError

NI_SPLITS = ("train", "test", "all")
P3_FILE_SUFFIXES = (".parquet", ".jsonl", ".json", ".arrow")
P3_DROPPED_COLUMNS = ("inputs", "targets", "idx", "weight", "is_correct")  # token ids and rank-classification keys


def select_names(names: list[str], patterns: list[str], what: str, where: "Path | str") -> list[str]:
    """The names that match any of `patterns` (exact names or globs: task1*_question_generation), in `names`' order;
    all names without patterns. A pattern that matches nothing is a UserError: it is a typo, not an empty choice."""
    if not patterns:
        return list(names)
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise UserError(f"{where}: no {what} matches {pattern!r} ({len(names)} {what}s there, e.g. "
                            f"{', '.join(names[:3]) or 'none'}); check the name")
    return [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


# ---- Super-NaturalInstructions --------------------------------------------------------------------------------------
def natural_instructions_task_files(data_path: Path, patterns: list[str],
                                    task_split: Optional[str]) -> tuple[list[Path], str]:
    """The task files to read and the task split used: `data_path` is the repo root (tasks/ and splits/) or a folder
    of task files. task_split train/test keeps the official split's tasks (splits/default/); None means train where
    the split files exist, else all tasks."""
    data_path = Path(data_path)
    if not data_path.is_dir():
        raise UserError(f"{data_path}: not a folder (--data_path); pass the natural-instructions repo root or its "
                        "tasks/ folder")
    tasks_dir = data_path / "tasks" if (data_path / "tasks").is_dir() else data_path
    files = {p.stem: p for p in sorted(tasks_dir.glob("*.json"))}
    if not files:
        raise UserError(f"{tasks_dir}: no task files (<task name>.json); pass the natural-instructions repo root or "
                        "its tasks/ folder as --data_path")
    splits_dir = tasks_dir.parent / "splits" / "default"
    if task_split is None:
        task_split = "train" if (splits_dir / "train_tasks.txt").is_file() else "all"
    if task_split not in NI_SPLITS:
        raise UserError(f"--task_split {task_split!r}: use train, test or all")
    names = list(files)
    if task_split != "all":
        names = [name for name in _split_task_names(splits_dir, task_split) if name in files]
        if not names:
            raise UserError(f"{splits_dir / f'{task_split}_tasks.txt'}: none of its tasks is in {tasks_dir}; "
                            "pass --task_split all to use the task files there")
    where = f"{tasks_dir} ({task_split} tasks)" if task_split != "all" else tasks_dir
    return [files[name] for name in select_names(names, patterns, "task", where)], task_split


def _split_task_names(splits_dir: Path, task_split: str) -> list[str]:
    path = splits_dir / f"{task_split}_tasks.txt"
    if not path.is_file():
        raise UserError(f"{path}: no official split file (--task_split {task_split}); pass --task_split all or the "
                        "natural-instructions repo root (with splits/default/) as --data_path")
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def natural_instructions_records(source: Source, max_instances_per_task: Optional[int] = None,
                                 num_pos_examples: int = 0) -> Iterator[tuple[str, dict]]:
    """(where, record) for the instances of each task file: at most `max_instances_per_task` of them per task (a
    sample seeded by the task name, in file order), each with the task's definition and its first
    `num_pos_examples` positive examples as the instruction."""
    if source.hub is not None:
        raise UserError("prepare_natural_instructions reads the task files of allenai/natural-instructions "
                        "(--data_path); for a Hub dataset of flat rows use prepare_json.py --dataset_id ... --columns")
    for path in source.files:
        path = Path(path)
        task = _load_task(path)
        instruction = task_instruction(task, num_pos_examples, path)
        instances = task["Instances"]
        chosen = range(len(instances))
        if max_instances_per_task is not None and len(instances) > max_instances_per_task:
            chosen = sorted(random.Random(path.stem).sample(chosen, max_instances_per_task))
        for i in chosen:
            yield f"{path}: instance {i + 1}", _instance_record(instances[i], instruction, path.stem, task)


def _load_task(path: Path) -> dict:
    try:
        task = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); download the task file again") from None
    if not isinstance(task, dict) or not isinstance(task.get("Instances"), list):
        raise UserError(f"{path}: not a Super-NaturalInstructions task file (no 'Instances' list)")
    return task


def task_instruction(task: dict, num_pos_examples: int, path: "Path | str") -> str:
    """The task's definition followed by its first `num_pos_examples` positive examples (input and output, as in
    Tk-Instruct's "definition + 2 positive examples" setting; explanations left out)."""
    definition = task.get("Definition")
    if isinstance(definition, str):
        definition = [definition]
    if not isinstance(definition, list) or not all(isinstance(d, str) for d in definition) \
            or not "".join(definition).strip():
        raise UserError(f"{path}: the task has no 'Definition' text; every instance needs the task's definition")
    parts = ["\n".join(d.strip() for d in definition)]
    examples = task.get("Positive Examples") or []
    for n, example in enumerate(examples[:num_pos_examples], 1):
        if not isinstance(example, dict) or not all(isinstance(example.get(k), str) for k in ("input", "output")):
            raise UserError(f"{path}: positive example {n} has no input and output text; fix the task file or pass "
                            "--num_pos_examples 0")
        parts.append(f"Example {n}\nInput: {example['input'].strip()}\nOutput: {example['output'].strip()}")
    return "\n\n".join(parts)


def _instance_record(instance, instruction: str, task_name: str, task: dict) -> dict:
    if not isinstance(instance, dict):
        return instance  # normalize() counts it as "not a JSON object"
    outputs = instance.get("output")
    output = (outputs[0] if outputs else "") if isinstance(outputs, list) else outputs
    record = {"instruction": instruction, "input": instance.get("input"), "output": output, "source": task_name,
              "id": instance.get("id")}
    categories = task.get("Categories")
    if isinstance(categories, list) and categories:
        record["category"] = ", ".join(map(str, categories))
    return record


# ---- P3 -------------------------------------------------------------------------------------------------------------
def p3_subset_files(data_path: Path, patterns: list[str]) -> list[Path]:
    """The train files of the P3 subsets that `patterns` name, in a folder of subset folders (a local copy of
    bigscience/P3; its data/ folder is looked into when there is one)."""
    data_path = Path(data_path)
    root = data_path / "data" if (data_path / "data").is_dir() else data_path
    subsets = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subsets:
        raise UserError(f"{root}: no subset folders; pass a local copy of bigscience/P3 (one folder per subset) "
                        "as --data_path")
    files = []
    for subset in select_names(subsets, patterns, "P3 subset", root):
        found = _split_files(root / subset, "train")
        if not found:
            raise UserError(f"{root / subset}: no train file (train-*.parquet, train/*.parquet or train.jsonl) for "
                            f"subset {subset!r}; the first release's TFRecord files are not read: use the Hub's "
                            "Parquet files")
        files.extend(found)
    return files


def _split_files(folder: Path, split: str) -> list[Path]:
    """train-00000-of-00001.parquet, train.jsonl, ... or train/0000.parquet, ... (not info.train.json)."""
    candidates = [*folder.glob(f"{split}*"), *(folder / split).glob("*")]
    return sorted(p for p in candidates if p.is_file() and p.suffix.lower() in P3_FILE_SUFFIXES)


def p3_subset_name(path: Path) -> str:
    """train-00000-of-00001.parquet, train.jsonl -> their folder's name; train/0000.parquet -> the folder above."""
    return path.parent.parent.name if path.parent.name == "train" else path.parent.name


def p3_records(source: Source) -> Iterator[tuple[str, dict]]:
    """(where, record) for the rows of P3 subset files (or of a Hub dataset: one subset, its config, the source); a
    rank-classification row whose answer choice is not the correct one comes as `Skipped`, counted by prepare."""
    if source.hub is not None:
        parts = [(source, source.hub.options.get("subset") or source.name)]
    else:
        parts = [(Path(p), p3_subset_name(Path(p))) for p in source.files]
    for part, subset in parts:
        for where, row in iter_records(part):
            record = p3_record(row, subset, where)
            yield where, record if record is not None else Skipped(P3_WRONG_CHOICE)


P3_WRONG_CHOICE = "answer choice not the correct one (is_correct false)"  # rank-classification subsets' other rows


def p3_record(row: dict, subset: str, where: str) -> Optional[dict]:
    """A P3 row as a record (None for an incorrect answer choice of a rank-classification subset). The texts are
    stripped: P3's targets start with a space or newline that separated them from the input in T0's training. The
    target is the answer text itself even where the row lists answer_choices (kept in the metadata)."""
    if "inputs_pretokenized" not in row and "targets_pretokenized" not in row:
        raise UserError(f"{where}: not a P3 row (no inputs_pretokenized/targets_pretokenized; found: "
                        f"{', '.join(map(repr, row)) or 'none'}); pass the files of bigscience/P3 subsets")
    if row.get("is_correct") is False:
        return None
    record = {k: v for k, v in row.items() if k not in P3_DROPPED_COLUMNS
              and k not in ("inputs_pretokenized", "targets_pretokenized")}
    record["instruction"] = _strip(row.get("inputs_pretokenized"))
    record["output"] = _strip(row.get("targets_pretokenized"))
    record.setdefault("source", subset)
    return record


def _strip(value):
    return value.strip() if isinstance(value, str) else value
