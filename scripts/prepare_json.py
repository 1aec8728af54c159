"""Prepare your own instruction data from a JSON array or JSONL file, with any field names.

    python scripts/prepare_json.py --data_path qa.jsonl --checkpoint_dir ... \
        --columns '{"instruction": "question", "output": "answer"}'
    python scripts/prepare_json.py --data_path rows.parquet --checkpoint_dir ...   # or rows.arrow
    python scripts/prepare_json.py --dataset_id ORG/NAME --subset en --split train --checkpoint_dir ... \
        --columns '{"instruction": "prompt", "output": "response"}'

Any source with rows works: a JSON/JSONL file, a .parquet or .arrow file, or a Hub dataset (--dataset_id, read with
`datasets`; --subset, --split, --revision, e.g. --revision refs/convert/parquet for the Hub's Parquet conversion).

Fields after the mapping: `instruction` and `output` required, `input`, `source`, `id`, `score` optional, other
fields kept as metadata (for Parquet, Arrow and Hub datasets read "columns"). Rows holding a conversation under
`messages` ([{"role", "content"}, ...]) or `conversations` are used as multi-turn examples.
"""

import importlib.util
import sys

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.prepare import mapped_file_command
from lit_gpt.utils import run_cli

FLAG_HELP = {
    "data_path": "the JSON (array of objects), JSONL (one object per line), .parquet or .arrow file",
    "columns": 'our field name -> the file\'s field name, e.g. {"instruction": "question", "output": "answer"}',
    "name": "dataset name (default: the file name without extension, or the Hub dataset's NAME); default "
            "destination data/<name>",
}

main = mapped_file_command(
    "Prepare a JSON/JSONL, Parquet or Arrow file or a Hub dataset: tokenize, write train.pt/test.pt/manifest.json.",
    FLAG_HELP, no_source="--data_path is required: the file to prepare (or --dataset_id ORG/NAME)",
    required=("instruction", "output"))

if __name__ == "__main__":
    run_cli(main)
