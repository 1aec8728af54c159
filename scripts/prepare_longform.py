"""Prepare LongForm (akoksal/LongForm: human-written long texts with LLM-generated instructions).

    python scripts/prepare_longform.py --checkpoint_dir checkpoints/EleutherAI/pythia-410m
    python scripts/prepare_longform.py --checkpoint_dir ... --dataset_id akoksal/LongForm --split validation

Rows are {"input": instruction, "output": text, "source": corpus, "subset": ...}: the instruction is LongForm's
`input`, its corpus (C4, Wikipedia, StackExchange, ...) the source; `subset` is kept as metadata.
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

URL = "https://raw.githubusercontent.com/akoksal/LongForm/main/dataset/train.json"
COLUMNS = {"instruction": "input"}


def main(data_path: Optional[Path] = None, destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare LongForm: download (or read --data_path / --dataset_id), tokenize, write train.pt/test.pt/manifest.json.

    Args:
        data_path: a local file in LongForm's layout (JSON array, JSONL, .parquet, .arrow) instead of the download
        destination_path: output directory (default: data/longform)
    """
    origin = Origin(data_path, Path(destination_path or "data/longform"), url=URL)
    read = partial(iter_records, columns=COLUMNS, required=("instruction", "output"))
    return prepare_source(origin, read, name="longform", options={}, **kwargs)


if __name__ == "__main__":
    run_cli(main)
