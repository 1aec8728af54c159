"""Prepare LIMA (GAIR/lima, 1,030 curated conversations) for instruction fine-tuning.

    HF_TOKEN=... python scripts/prepare_lima.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct
    python scripts/prepare_lima.py --checkpoint_dir ... --data_path train.jsonl --include_multiturn_conversations true

GAIR/lima is gated: accept its licence on the Hub and pass --access_token or set HF_TOKEN (never printed or saved).
Rows are {"conversations": [user, assistant, user, ...], "source": ...}; by default only the first exchange of each
conversation is used, with --include_multiturn_conversations the whole conversation (trained on every answer).
"""

import sys
from pathlib import Path
from typing import Iterator, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.data.prepare import prepare  # noqa: E402
from lit_gpt.data.records import fetch_source, iter_records  # noqa: E402
from lit_gpt.utils import run_cli  # noqa: E402

REPO_ID = "GAIR/lima"
FILENAME = "train.jsonl"


def lima_records(path: Path, include_multiturn_conversations: bool) -> Iterator[tuple[str, dict]]:
    for where, row in iter_records(path, format="jsonl", required=("conversations",)):
        turns = row.get("conversations")
        if isinstance(turns, list) and not include_multiturn_conversations:
            row = {**row, "conversations": turns[:2]}
        yield where, row


def main(data_path: Optional[Path] = None, access_token: Optional[str] = None,
         include_multiturn_conversations: bool = False, destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare LIMA: download (or read --data_path), tokenize, write train.pt/test.pt/manifest.json.

    Args:
        data_path: a local copy of LIMA's train.jsonl instead of the download
        access_token: Hugging Face token for the gated dataset (default: $HF_TOKEN)
        include_multiturn_conversations: use whole conversations, not only their first exchange
        destination_path: output directory (default: data/lima)
    """
    destination_path = Path(destination_path or "data/lima")
    path = fetch_source(data_path, destination_path, repo_id=REPO_ID, filename=FILENAME, access_token=access_token)
    return prepare(lima_records(path, include_multiturn_conversations), name="lima", source_files=[path],
                   destination_path=destination_path,
                   options={"include_multiturn_conversations": include_multiturn_conversations}, **kwargs)


if __name__ == "__main__":
    run_cli(main)
