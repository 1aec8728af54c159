"""Prepare LongForm (akoksal/LongForm: human-written long texts with LLM-generated instructions).

    python scripts/prepare_longform.py --checkpoint_dir checkpoints/EleutherAI/pythia-410m

Rows are {"input": instruction, "output": text, "source": corpus, "subset": ...}: the instruction is LongForm's
`input`, its corpus (C4, Wikipedia, StackExchange, ...) the source; `subset` is kept as metadata.
"""

import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.data.prepare import prepare  # noqa: E402
from lit_gpt.data.records import fetch_source, iter_records  # noqa: E402
from lit_gpt.utils import run_cli  # noqa: E402

URL = "https://raw.githubusercontent.com/akoksal/LongForm/main/dataset/train.json"
COLUMNS = {"instruction": "input"}


def main(data_path: Optional[Path] = None, destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare LongForm: download (or read --data_path), tokenize, write train.pt/test.pt/manifest.json.

    Args:
        data_path: a local file in LongForm's layout (JSON array or JSONL) instead of the download
        destination_path: output directory (default: data/longform)
    """
    destination_path = Path(destination_path or "data/longform")
    path = fetch_source(data_path, destination_path, url=URL)
    records = iter_records(path, columns=COLUMNS, required=("instruction", "output"))
    return prepare(records, name="longform", source_files=[path], destination_path=destination_path, options={},
                   **kwargs)


if __name__ == "__main__":
    run_cli(main)
