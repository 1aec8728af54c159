"""Prepare Databricks Dolly (databricks-dolly-15k) for instruction fine-tuning.

    python scripts/prepare_dolly.py --checkpoint_dir checkpoints/EleutherAI/pythia-410m
    python scripts/prepare_dolly.py --checkpoint_dir ... --dataset_id databricks/databricks-dolly-15k

Rows are {"instruction", "context", "response", "category"}: context becomes the input, response the output and
the category (open_qa, summarization, ...) the source, so data reports break down by category.
"""

import importlib.util
import sys
from functools import partial
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.prepare import prepare_source
from lit_gpt.data.records import Origin, iter_records
from lit_gpt.utils import run_cli

REPO_ID = "databricks/databricks-dolly-15k"
FILENAME = "databricks-dolly-15k.jsonl"
COLUMNS = {"input": "context", "output": "response", "source": "category"}


def main(data_path: Optional[Path] = None, access_token: Optional[str] = None,
         destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare Dolly: download (or read --data_path / --dataset_id), tokenize, write train.pt/test.pt/manifest.json.

    Args:
        data_path: a local file in Dolly's layout (JSONL, .parquet, .arrow) instead of the download
        access_token: Hugging Face token (default: $HF_TOKEN; the dataset is public)
        destination_path: output directory (default: data/dolly)
    """
    origin = Origin(data_path, Path(destination_path or "data/dolly"), repo_id=REPO_ID, filenames=(FILENAME,))
    read = partial(iter_records, format="jsonl", columns=COLUMNS, required=("instruction", "output"))
    return prepare_source(origin, read, name="dolly", options={}, access_token=access_token, **kwargs)


if __name__ == "__main__":
    run_cli(main)
