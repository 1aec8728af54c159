"""Mix prepared instruction datasets into one, with ratios or counts, without duplicates or test leakage.

    python scripts/mix_datasets.py --inputs data/lima data/dolly --weights 1 0.5 --destination_path data/lima_dolly
    python scripts/mix_datasets.py --inputs data/lima data/dolly --counts 1000 3000 --destination_path data/lima_dolly

--weights: the fraction of each input's usable training examples to take (1 = all, 0.5 = a random half);
--counts: how many to take. More than an input has is refused unless --allow_oversample true (examples repeat).
The test set is the union of the inputs' test sets; training examples whose instruction equals or near-duplicates
(ROUGE-L >= --near_dup_threshold) a test instruction or one taken from an earlier input are dropped, so list the
input you trust most first. Inputs may also be JSON/JSONL record files (instruction/input/output rows), tokenized
like the prepared inputs. manifest.json reports, per input: requested, available, taken and the dropped examples
by reason. Details: lit_gpt/mixing.py.
"""

import importlib.util
import sys
from pathlib import Path
from typing import Literal, Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.mixing import mix, summary_table
from lit_gpt.utils import UserError, output_lock, run_cli, space_separated_lists

LIST_FLAGS = ("inputs", "weights", "counts")


def main(inputs: Optional[list[str]] = None, destination_path: Optional[Path] = None,
         weights: Optional[list[float]] = None, counts: Optional[list[int]] = None, seed: int = 42,
         allow_oversample: bool = False, near_dup_threshold: float = 0.7,
         dedup_method: Literal["auto", "exact", "minhash"] = "auto", checkpoint_dir: Optional[Path] = None,
         test_split_fraction: float = 0.05, overwrite: bool = False) -> dict:
    """Mix datasets into destination_path/{train.pt, test.pt, manifest.json}.

    Args:
        inputs: prepared dataset directories (data/<name>) or JSON/JSONL record files, most trusted first
        destination_path: output directory (e.g. data/lima_dolly)
        weights: per input, the fraction of its usable training examples to take (1 = all)
        counts: per input, the number of training examples to take
        seed: seed of the sampling (and of the train/test split of record files)
        allow_oversample: repeat examples when more are asked for than an input has
        near_dup_threshold: ROUGE-L F from which two instructions count as near-duplicates
        dedup_method: auto (exact up to 20k instructions, MinHash/LSH beyond), exact or minhash
        checkpoint_dir: tokenizer for record-file inputs (default: the prepared inputs' tokenizer directory)
        test_split_fraction: share of a record file's rows held out for the test set
        overwrite: replace what destination_path holds even when it is another dataset (other inputs), a prepared
            (not mixed) dataset or a model
    """
    if not inputs:
        raise UserError("--inputs is required: prepared dataset directories or record files, e.g. --inputs data/lima "
                        "data/dolly")
    if destination_path is None:
        raise UserError("--destination_path is required, e.g. data/lima_dolly")
    with output_lock(destination_path, "--destination_path"):  # one writer at a time
        manifest = mix(inputs, destination_path, weights=weights, counts=counts, seed=seed,
                       allow_oversample=allow_oversample, near_dup_threshold=near_dup_threshold,
                       dedup_method=dedup_method, checkpoint_dir=checkpoint_dir,
                       test_split_fraction=test_split_fraction, overwrite=overwrite)
    print(summary_table(manifest))
    near = manifest["near_duplicates"]
    print(f"{destination_path}: {manifest['counts']['train']} train + {manifest['counts']['test']} test examples; "
          f"near-duplicates: ROUGE-L >= {near['threshold']} ({near['method']}); {manifest['seconds']} s")
    return manifest


if __name__ == "__main__":
    run_cli(main, args=space_separated_lists(sys.argv[1:], LIST_FLAGS))
