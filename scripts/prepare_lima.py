"""Prepare LIMA (GAIR/lima, 1,030 curated conversations) for instruction fine-tuning.

    HF_TOKEN=... python scripts/prepare_lima.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct
    python scripts/prepare_lima.py --checkpoint_dir ... --data_path train.jsonl --include_multiturn_conversations true
    HF_TOKEN=... python scripts/prepare_lima.py --checkpoint_dir ... --dataset_id GAIR/lima --split test

GAIR/lima is gated: accept its licence on the Hub and pass --access_token or set HF_TOKEN (never printed or saved).
Rows are {"conversations": [user, assistant, user, ...], "source": ...}; by default only the first exchange of each
conversation is used, with --include_multiturn_conversations the whole conversation (trained on every answer).
"""

import importlib.util
import sys
from pathlib import Path
from typing import Iterator, Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.prepare import prepare_source
from lit_gpt.data.records import Origin, Source, iter_records
from lit_gpt.utils import run_cli

REPO_ID = "GAIR/lima"
FILENAME = "train.jsonl"


def lima_records(source: "Path | Source", include_multiturn_conversations: bool) -> Iterator[tuple[str, dict]]:
    for where, row in iter_records(source, format="jsonl", required=("conversations",)):
        turns = row.get("conversations")
        if isinstance(turns, list) and not include_multiturn_conversations:
            row = {**row, "conversations": turns[:2]}
        yield where, row


def main(data_path: Optional[Path] = None, access_token: Optional[str] = None,
         include_multiturn_conversations: bool = False, destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare LIMA: download (or read --data_path / --dataset_id), tokenize, write train.pt/test.pt/manifest.json.

    Args:
        data_path: a local copy of LIMA's train.jsonl (or a .parquet / .arrow file) instead of the download
        access_token: Hugging Face token for the gated dataset (default: $HF_TOKEN)
        include_multiturn_conversations: use whole conversations, not only their first exchange
        destination_path: output directory (default: data/lima)
    """
    origin = Origin(data_path, Path(destination_path or "data/lima"), repo_id=REPO_ID, filenames=(FILENAME,))
    return prepare_source(origin, lambda source: lima_records(source, include_multiturn_conversations), name="lima",
                          options={"include_multiturn_conversations": include_multiturn_conversations},
                          access_token=access_token, **kwargs)


if __name__ == "__main__":
    run_cli(main)
