"""Prepare the cleaned Alpaca dataset (gururise/AlpacaDataCleaned, ~52k rows) for instruction fine-tuning.

    python scripts/prepare_alpaca.py --checkpoint_dir checkpoints/EleutherAI/pythia-160m
    python scripts/prepare_alpaca.py --checkpoint_dir ... --data_path alpaca_gpt4.json --destination_path data/gpt4
    python scripts/prepare_alpaca.py --checkpoint_dir ... --dataset_id tatsu-lab/alpaca

Any source in Alpaca's layout works: a JSON array of {"instruction", "input", "output"} or a .parquet / .arrow file
with those columns (--data_path), or a Hub dataset (--dataset_id, with --subset, --split, --revision).
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

URL = "https://raw.githubusercontent.com/gururise/AlpacaDataCleaned/main/alpaca_data_cleaned.json"


def main(data_path: Optional[Path] = None, destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare Alpaca: download (or read --data_path / --dataset_id), tokenize, write train.pt/test.pt/manifest.json.

    Args:
        data_path: a local file in Alpaca's layout (JSON, .parquet, .arrow) instead of the download
        destination_path: output directory (default: data/alpaca)
    """
    origin = Origin(data_path, Path(destination_path or "data/alpaca"), url=URL)
    return prepare_source(origin, partial(iter_records, required=("instruction", "output")), name="alpaca",
                          options={}, **kwargs)


if __name__ == "__main__":
    run_cli(main)
