"""Prepare your own instruction data from a CSV file.

    python scripts/prepare_csv.py --csv_dir my_data.csv --checkpoint_dir checkpoints/EleutherAI/pythia-160m
    python scripts/prepare_csv.py --dataset_id ORG/NAME --checkpoint_dir ...  # a Hub dataset of CSV files

The header names the columns: `instruction` and `output` are required, `input` is optional, in any order; other
columns are kept as metadata of each example (a `source` or `score` column is used as such). Fields with commas,
quotes or newlines are quoted as in any spreadsheet export. Use --columns to map other names:
--columns '{"instruction": "question", "output": "answer"}' (also for --dataset_id, a .parquet or an .arrow file).
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


def main(csv_dir: Optional[Path] = None, columns: Optional[dict] = None, destination_path: Optional[Path] = None,
         **kwargs) -> dict:
    """Prepare a CSV file: tokenize, write train.pt/test.pt/manifest.json.

    Args:
        csv_dir: the CSV file (or a .parquet / .arrow file)
        columns: our field name -> the file's column name, e.g. {"instruction": "question", "output": "answer"}
        destination_path: output directory (default: data/csv)
    """
    origin = Origin(csv_dir, Path(destination_path or "data/csv"), flag="--csv_dir",
                    no_source="--csv_dir is required: the CSV file to prepare (or --dataset_id ORG/NAME)")
    read = partial(iter_records, format="csv", columns=columns, required=("instruction", "output"))
    return prepare_source(origin, read, name="csv", options={"columns": columns or {}}, **kwargs)


if __name__ == "__main__":
    run_cli(main)
