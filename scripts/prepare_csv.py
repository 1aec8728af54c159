"""Prepare your own instruction data from a CSV file.

    python scripts/prepare_csv.py --csv_dir my_data.csv --checkpoint_dir checkpoints/EleutherAI/pythia-160m

The header names the columns: `instruction` and `output` are required, `input` is optional, in any order; other
columns are kept as metadata of each example (a `source` or `score` column is used as such). Fields with commas,
quotes or newlines are quoted as in any spreadsheet export. Use --columns to map other names:
--columns '{"instruction": "question", "output": "answer"}'.
"""

import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.data.prepare import prepare  # noqa: E402
from lit_gpt.data.records import fetch_source, iter_records  # noqa: E402
from lit_gpt.utils import UserError, run_cli  # noqa: E402


def main(csv_dir: Optional[Path] = None, columns: Optional[dict] = None, destination_path: Optional[Path] = None,
         **kwargs) -> dict:
    """Prepare a CSV file: tokenize, write train.pt/test.pt/manifest.json.

    Args:
        csv_dir: the CSV file
        columns: our field name -> the file's column name, e.g. {"instruction": "question", "output": "answer"}
        destination_path: output directory (default: data/csv)
    """
    if csv_dir is None:
        raise UserError("--csv_dir is required: the CSV file to prepare")
    destination_path = Path(destination_path or "data/csv")
    path = fetch_source(csv_dir, destination_path, flag="--csv_dir")
    if path.is_dir():
        raise UserError(f"{path}: a folder; --csv_dir takes the CSV file itself")
    records = iter_records(path, format="csv", columns=columns, required=("instruction", "output"))
    return prepare(records, name="csv", source_files=[path], destination_path=destination_path,
                   options={"columns": columns or {}}, **kwargs)


if __name__ == "__main__":
    run_cli(main)
