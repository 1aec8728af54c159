"""Prepare the cleaned Alpaca dataset (gururise/AlpacaDataCleaned, ~52k rows) for instruction fine-tuning.

    python scripts/prepare_alpaca.py --checkpoint_dir checkpoints/EleutherAI/pythia-160m
    python scripts/prepare_alpaca.py --checkpoint_dir ... --data_path alpaca_gpt4.json --destination_path data/gpt4

Any file in Alpaca's layout works with --data_path: a JSON array of {"instruction", "input", "output"}.
"""

import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.data.prepare import prepare  # noqa: E402
from lit_gpt.data.records import fetch_source, iter_records  # noqa: E402
from lit_gpt.utils import run_cli  # noqa: E402

URL = "https://raw.githubusercontent.com/gururise/AlpacaDataCleaned/main/alpaca_data_cleaned.json"


def main(data_path: Optional[Path] = None, destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare Alpaca: download (or read --data_path), tokenize, write train.pt/test.pt/manifest.json.

    Args:
        data_path: a local file in Alpaca's layout instead of the download
        destination_path: output directory (default: data/alpaca)
    """
    destination_path = Path(destination_path or "data/alpaca")
    path = fetch_source(data_path, destination_path, url=URL)
    records = iter_records(path, required=("instruction", "output"))
    return prepare(records, name="alpaca", source_files=[path], destination_path=destination_path, options={},
                   **kwargs)


if __name__ == "__main__":
    run_cli(main)
