"""Prepare subsets of P3 (bigscience/P3, the prompted datasets T0 was trained on) by subset name or glob pattern.

    python scripts/prepare_p3.py --checkpoint_dir ... --subsets cos_e_v1.11_explain_why_human,ag_news_classify
    python scripts/prepare_p3.py --checkpoint_dir ... --data_path P3/ --subsets 'super_glue_boolq_*'
    python scripts/prepare_p3.py --checkpoint_dir ... --dataset_id bigscience/P3 --subset ag_news_classify

Each subset (<dataset>_<prompt name>) is a folder of split files: train-00000-of-00001.parquet on the Hub's main
branch, train/0000.parquet on its refs/convert/parquet branch; local copies may also be train.jsonl. A row's
inputs_pretokenized becomes the instruction, targets_pretokenized the output (stripped; the answer text even where the
row lists answer_choices) and the subset name the source. Rank-classification subsets (*_score_eval) keep only the
row of the correct answer choice. Without --data_path the named subsets' train files are downloaded (exact names);
glob patterns select among the subset folders of a local copy (--data_path).
"""

import importlib.util
import sys
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.formats import p3_records, p3_subset_files
from lit_gpt.data.prepare import prepare_source
from lit_gpt.data.records import Origin
from lit_gpt.utils import UserError, run_cli

REPO_ID = "bigscience/P3"
TRAIN_FILE = "{subset}/train-00000-of-00001.parquet"  # the Hub's layout; larger subsets have more shards


def main(subsets: Optional[str] = None, data_path: Optional[Path] = None, access_token: Optional[str] = None,
         destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare P3 subsets: download (or read --data_path / --dataset_id), tokenize, write the prepared data.

    Args:
        subsets: comma-separated subset names, or glob patterns over the subset folders of --data_path, e.g.
            'super_glue_*,ag_news_classify' (required unless --dataset_id is given, or --data_path is one file)
        data_path: a local copy of bigscience/P3 (a folder of subset folders), or one subset's file
        access_token: Hugging Face token (default: $HF_TOKEN; the dataset is public)
        destination_path: output directory (default: data/p3)
    """
    names = [s.strip() for s in (subsets or "").split(",") if s.strip()]
    if names and kwargs.get("dataset_id") is not None:
        raise UserError("--subsets selects subset folders (of --data_path or of the download); a Hub dataset's P3 "
                        "subset is its config: pass --subset NAME with --dataset_id")
    if data_path is not None and Path(data_path).is_dir():
        if not names:
            raise UserError("--subsets is required with a folder as --data_path: name the P3 subsets (or glob "
                            "patterns, e.g. 'super_glue_*')")
        data_path = p3_subset_files(Path(data_path), names)
    elif data_path is None and any(set(name) & set("*?[") for name in names):
        raise UserError("glob patterns in --subsets select among the subset folders of a local copy: pass "
                        "--data_path, or name the subsets exactly to download them")
    origin = Origin(data_path, Path(destination_path or "data/p3"), repo_id=REPO_ID,
                    filenames=tuple(TRAIN_FILE.format(subset=name) for name in names),
                    no_source="--subsets is required: name the P3 subsets to use, e.g. --subsets ag_news_classify")
    return prepare_source(origin, p3_records, name="p3", options={"subsets": sorted(names)},
                          access_token=access_token, **kwargs)


if __name__ == "__main__":
    run_cli(main)
