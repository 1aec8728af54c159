"""Prepare preference pairs (a prompt, a chosen and a rejected answer) for DPO-style training.

    python scripts/prepare_preferences.py --checkpoint_dir ... --dataset_id HuggingFaceH4/ultrafeedback_binarized \
        --split train_prefs
    python scripts/prepare_preferences.py --checkpoint_dir ... --data_path hh-rlhf/harmless-base/train.jsonl.gz
    python scripts/prepare_preferences.py --checkpoint_dir ... --data_path pairs.jsonl \
        --columns '{"prompt": "question", "chosen": "better", "rejected": "worse"}'

Each row is read in whichever common layout it has: chosen/rejected message lists (UltraFeedback binarized), a prompt
(or instruction + input) with chosen/rejected answer texts, chosen/rejected whole transcripts whose shared start is
the prompt (Anthropic HH-RLHF), or Alpaca-style rows with two answers and the preferred one (AlpacaFarm: output_1,
output_2, preference). The prompt is tokenized once, both answers after it with their masks; the manifest counts
rows, drops and truncations and fingerprints the input as for instruction data (lit_gpt/data/preferences.py).
"""

import importlib.util
import sys

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.preferences import PREFERENCES
from lit_gpt.data.prepare import mapped_file_command
from lit_gpt.utils import run_cli

FLAG_HELP = {
    "data_path": "the file of pairs (.json, .jsonl, .jsonl.gz, .parquet, .arrow)",
    "columns": 'our field name -> the file\'s, e.g. {"prompt": "question", "chosen": "better", "rejected": "worse"}',
    "name": "dataset name (default: the file or Hub dataset name); default destination data/<name>",
}

main = mapped_file_command(
    "Prepare preference pairs from a JSON/JSONL, Parquet or Arrow file or a Hub dataset.", FLAG_HELP,
    no_source="--data_path is required: the file of preference pairs (or --dataset_id ORG/NAME)",
    example_format=PREFERENCES)

if __name__ == "__main__":
    run_cli(main)
