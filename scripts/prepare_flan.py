"""Prepare tasks of the FLAN collection (Muennighoff/flan: one JSONL file per task and split) by task name.

    python scripts/prepare_flan.py --checkpoint_dir ... --subsets aeslc_10templates,cosmos_qa_10templates
    python scripts/prepare_flan.py --checkpoint_dir ... --data_path flan_dir/ --subsets aeslc_10templates
    python scripts/prepare_flan.py --checkpoint_dir ... --dataset_id ORG/FLAN-PARQUET --subsets aeslc_10templates

Rows are {"inputs", "targets", "task"}; each task's train file is train/<task>_train.jsonl, and the task name
becomes the source. --data_path may be a folder holding <task>_train.jsonl files (or train/<task>_train.jsonl),
or one JSONL (or .parquet / .arrow) file. A Hub dataset of such rows (--dataset_id) keeps the tasks --subsets names
(all of them without --subsets).
"""

import importlib.util
import sys
from pathlib import Path
from typing import Iterator, Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.prepare import prepare_source
from lit_gpt.data.records import Origin, Source, iter_records
from lit_gpt.utils import UserError, run_cli

REPO_ID = "Muennighoff/flan"
COLUMNS = {"instruction": "inputs", "output": "targets"}


def flan_records(source: Source, tasks: list[str]) -> Iterator[tuple[str, dict]]:
    """The rows of each task file (its task name the default source) or of a Hub dataset (only `tasks`, if any)."""
    parts = [(source, None)] if source.hub is not None else [(p, task_name(p)) for p in source.files]
    for part, task in parts:
        for where, row in iter_records(part, format="jsonl", columns=COLUMNS, required=("instruction", "output")):
            row.setdefault("source", row.pop("task", None) or task)
            if source.hub is None or not tasks or row["source"] in tasks:
                yield where, row


def task_name(path: Path) -> str:
    return path.name.split(".")[0].removesuffix("_train")


def local_subset_file(data_path: Path, subset: str) -> Path:
    for candidate in (data_path / f"{subset}_train.jsonl", data_path / "train" / f"{subset}_train.jsonl"):
        if candidate.is_file():
            return candidate
    raise UserError(f"{data_path}: no {subset}_train.jsonl (nor train/{subset}_train.jsonl) for task {subset!r}")


def main(subsets: Optional[str] = None, data_path: Optional[Path] = None, access_token: Optional[str] = None,
         destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare FLAN tasks: download (or read --data_path / --dataset_id), tokenize, write the prepared data.

    Args:
        subsets: comma-separated task names, e.g. aeslc_10templates,ag_news_subset_10templates (required unless
            --data_path is a single file or --dataset_id is given)
        data_path: a local folder of <task>_train.jsonl files, or one JSONL/.parquet/.arrow file, instead of the
            download
        access_token: Hugging Face token (default: $HF_TOKEN)
        destination_path: output directory (default: data/flan)
    """
    names = [s.strip() for s in (subsets or "").split(",") if s.strip()]
    if data_path is not None and Path(data_path).is_dir():
        if not names:
            raise UserError("--subsets is required with a folder as --data_path: name the FLAN tasks to use")
        data_path = [local_subset_file(Path(data_path), name) for name in names]
    origin = Origin(data_path, Path(destination_path or "data/flan"), repo_id=REPO_ID,
                    filenames=tuple(f"train/{name}_train.jsonl" for name in names),
                    no_source="--subsets is required: name the FLAN tasks to use, e.g. --subsets aeslc_10templates")
    return prepare_source(origin, lambda source: flan_records(source, names), name="flan",
                          options={"subsets": sorted(names)}, access_token=access_token, **kwargs)

if __name__ == "__main__":
    run_cli(main)
