"""Prepare preference pairs (a prompt, a chosen and a rejected answer) for DPO-style training.

    python scripts/prepare_preferences.py --checkpoint_dir ... --dataset_id HuggingFaceH4/ultrafeedback_binarized \
        --split train_prefs
    python scripts/prepare_preferences.py --checkpoint_dir ... --data_path hh-rlhf/harmless-base/train.jsonl.gz
    python scripts/prepare_preferences.py --checkpoint_dir ... --data_path pairs.jsonl \
        --columns '{"prompt": "question", "chosen": "better", "rejected": "worse"}'
    python scripts/prepare_preferences.py --checkpoint_dir ... --data_path gpt4_answers.json \
        --rejected_path davinci_answers.json --name alpaca_gpt4_vs_davinci
    python scripts/prepare_preferences.py --checkpoint_dir ... --data_path sampled_1.scored.json \
        --rejected_path sampled_2.scored.json --rank_by score_alpagasus       # a judge picks the chosen answer

Each row is read in whichever common layout it has: chosen/rejected message lists (UltraFeedback binarized), a prompt
(or instruction + input) with chosen/rejected answer texts, chosen/rejected whole transcripts whose shared start is
the prompt (Anthropic HH-RLHF), or Alpaca-style rows with two answers and the preferred one (AlpacaFarm: output_1,
output_2, preference); or, with --rejected_path, two files of Alpaca-layout answers to the same instructions
(instruction, input, output), --data_path's chosen (with --rank_by, the higher-scored answer of the two). The prompt
is tokenized once, both answers after it with their masks; the manifest counts rows, drops and truncations and
fingerprints the input as for instruction data (lit_gpt/data/preferences.py).
"""

import importlib.util
import sys
from functools import partial
from pathlib import Path
from typing import Literal, Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.preferences import PREFERENCES, answer_pairs
from lit_gpt.data.prepare import prepare_source
from lit_gpt.data.records import Origin, iter_records
from lit_gpt.utils import UserError, run_cli


def main(data_path: Optional[Path] = None, columns: Optional[dict] = None,
         format: Optional[Literal["json", "jsonl"]] = None, name: Optional[str] = None,
         destination_path: Optional[Path] = None, rejected_path: Optional[Path] = None, rank_by: Optional[str] = None,
         reverse: bool = False, **kwargs) -> dict:
    """Prepare preference pairs from a JSON/JSONL, Parquet or Arrow file or a Hub dataset.

    Args:
        data_path: the file of pairs (.json, .jsonl, .jsonl.gz, .parquet, .arrow)
        columns: our field name -> the file's, e.g. {"prompt": "question", "chosen": "better", "rejected": "worse"}
        format: json or jsonl (default: from the file name and content)
        name: dataset name (default: the file or Hub dataset name); default destination data/<name>
        destination_path: output directory
        rejected_path: a second file of answers (Alpaca layout: instruction, input, output) to the instructions of
            --data_path, whose answers are then the chosen ones and these the rejected; rows are matched on
            instruction + input, the others left out
        rank_by: with --rejected_path, a score column of both files (e.g. score_alpagasus, written by
            scripts/score_dataset.py): the higher-scored answer of each instruction is the chosen one, whichever file
            it is in; ties and unscored answers are dropped and counted
        reverse: with --rejected_path, prefer its answers instead: the same pairs, in the same order and train/test
            split, the other way round (a reversed-preference control arm for a study)
    """
    if rejected_path is not None and data_path is None:
        raise UserError("--rejected_path goes with --data_path (the file of the chosen answers)")
    if rank_by is not None and rejected_path is None:
        raise UserError(f"--rank_by {rank_by} ranks the answers of two files: give the second with --rejected_path")
    if reverse and (rejected_path is None or rank_by is not None):
        raise UserError("--reverse true prefers --rejected_path's answers over --data_path's: give --rejected_path "
                        "(and no --rank_by, which orders each pair by its scores)")
    origin = Origin(data_path if rejected_path is None else [data_path, rejected_path], destination_path,
                    no_source="--data_path is required: the file of preference pairs (or --dataset_id ORG/NAME)")
    read = partial(iter_records, format=format, columns=columns)
    if rejected_path is not None:  # both files are the source: the fingerprint covers them
        read_one = read
        read = lambda source: answer_pairs(*(read_one(file) for file in source.files), rank_by=rank_by,  # noqa: E731
                                           reverse=reverse)
    options = {"columns": columns or {}, "format": format, **({"rank_by": rank_by} if rank_by else {}),
               **({"reverse": True} if reverse else {})}
    return prepare_source(origin, read, PREFERENCES, name=name, options=options, **kwargs)


if __name__ == "__main__":
    run_cli(main)
