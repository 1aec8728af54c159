"""Prepare Databricks Dolly (databricks-dolly-15k) for instruction fine-tuning.

    python scripts/prepare_dolly.py --checkpoint_dir checkpoints/EleutherAI/pythia-410m

Rows are {"instruction", "context", "response", "category"}: context becomes the input, response the output and
the category (open_qa, summarization, ...) the source, so data reports break down by category.
"""

import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.data.prepare import prepare  # noqa: E402
from lit_gpt.data.records import fetch_source, iter_records  # noqa: E402
from lit_gpt.utils import run_cli  # noqa: E402

REPO_ID = "databricks/databricks-dolly-15k"
FILENAME = "databricks-dolly-15k.jsonl"
COLUMNS = {"input": "context", "output": "response", "source": "category"}


def main(data_path: Optional[Path] = None, access_token: Optional[str] = None,
         destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare Dolly: download (or read --data_path), tokenize, write train.pt/test.pt/manifest.json.

    Args:
        data_path: a local file in Dolly's JSONL layout instead of the download
        access_token: Hugging Face token (default: $HF_TOKEN; the dataset is public)
        destination_path: output directory (default: data/dolly)
    """
    destination_path = Path(destination_path or "data/dolly")
    path = fetch_source(data_path, destination_path, repo_id=REPO_ID, filename=FILENAME, access_token=access_token)
    records = iter_records(path, format="jsonl", columns=COLUMNS, required=("instruction", "output"))
    return prepare(records, name="dolly", source_files=[path], destination_path=destination_path, options={},
                   **kwargs)


if __name__ == "__main__":
    run_cli(main)
