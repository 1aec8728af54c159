"""Prepare tasks of the FLAN collection (Muennighoff/flan: one JSONL file per task and split) by task name.

    python scripts/prepare_flan.py --checkpoint_dir ... --subsets aeslc_10templates,cosmos_qa_10templates
    python scripts/prepare_flan.py --checkpoint_dir ... --data_path flan_dir/ --subsets aeslc_10templates

Rows are {"inputs", "targets", "task"}; each task's train file is train/<task>_train.jsonl, and the task name
becomes the source. --data_path may be a folder holding <task>_train.jsonl files (or train/<task>_train.jsonl),
or one JSONL file.
"""

import sys
from pathlib import Path
from typing import Iterator, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.data.prepare import prepare  # noqa: E402
from lit_gpt.data.records import fetch_source, iter_records  # noqa: E402
from lit_gpt.utils import UserError, run_cli  # noqa: E402

REPO_ID = "Muennighoff/flan"
COLUMNS = {"instruction": "inputs", "output": "targets"}


def flan_records(paths: dict[str, Path]) -> Iterator[tuple[str, dict]]:
    for subset, path in paths.items():
        for where, row in iter_records(path, format="jsonl", columns=COLUMNS, required=("instruction", "output")):
            row.setdefault("source", row.pop("task", None) or subset)
            yield where, row


def local_subset_file(data_path: Path, subset: str) -> Path:
    for candidate in (data_path / f"{subset}_train.jsonl", data_path / "train" / f"{subset}_train.jsonl"):
        if candidate.is_file():
            return candidate
    raise UserError(f"{data_path}: no {subset}_train.jsonl (nor train/{subset}_train.jsonl) for task {subset!r}")


def main(subsets: Optional[str] = None, data_path: Optional[Path] = None, access_token: Optional[str] = None,
         destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare FLAN tasks: download (or read --data_path), tokenize, write train.pt/test.pt/manifest.json.

    Args:
        subsets: comma-separated task names, e.g. aeslc_10templates,ag_news_subset_10templates (required unless
            --data_path is a single file)
        data_path: a local folder of <task>_train.jsonl files, or one JSONL file, instead of the download
        access_token: Hugging Face token (default: $HF_TOKEN)
        destination_path: output directory (default: data/flan)
    """
    destination_path = Path(destination_path or "data/flan")
    names = [s.strip() for s in (subsets or "").split(",") if s.strip()]
    if data_path is not None and Path(data_path).is_file():
        paths = {Path(data_path).stem.removesuffix("_train"): fetch_source(data_path, destination_path)}
    elif not names:
        raise UserError("--subsets is required: name the FLAN tasks to use, e.g. --subsets aeslc_10templates")
    elif data_path is not None:
        paths = {name: local_subset_file(fetch_source(data_path, destination_path), name) for name in names}
    else:
        paths = {name: fetch_source(None, destination_path, repo_id=REPO_ID, filename=f"train/{name}_train.jsonl",
                                    access_token=access_token) for name in names}
    return prepare(flan_records(paths), name="flan", source_files=list(paths.values()),
                   destination_path=destination_path, options={"subsets": sorted(paths)}, **kwargs)


if __name__ == "__main__":
    run_cli(main)
