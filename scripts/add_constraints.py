"""Give the instructions of a dataset verifiable constraints (IFEval's kinds), for preference pairs ranked by checks.

    python scripts/add_constraints.py --data_path ../shared/datasets/alpaca_gpt4/sample_999.json \\
        --output data/constrained.json --count 1

Each row's instruction gets --count constraints of different kinds that do not conflict, drawn with lm-eval's own
IFEval classes ("Your entire response should be in English, and in all lowercase letters.", "Answer with at least
300 words.", ...), appended after a space; the row keeps its other fields but its answer (written without them) and
gets "constraints": [{"id", "kwargs"}], what a checker needs. A row's draw depends only on --seed and its position.
Then answer every row twice with sampling, score each answer by the share of its constraints it follows, and make
the better answer the chosen one:

    python generate/answers.py --data_path data/constrained.json --temperature 0.8 --seed 1 ... --output data/a1.json
    python scripts/score_dataset.py --data_path data/a1.json --method constraints     # -> data/a1.scored.json
    python scripts/prepare_preferences.py ... --data_path data/a1.scored.json --rejected_path data/a2.scored.json \\
        --rank_by score_constraints

The kinds are IFEval's, so IFEval after training on such pairs scores unseen prompts but trained kinds of constraint
(lit_gpt/quality/constraints.py).
"""

import importlib.util
import sys
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.normalize import read_instructions
from lit_gpt.data.records import write_records
from lit_gpt.quality.constraints import add_constraints, checked_kinds, constraint_kinds
from lit_gpt.utils import UserError, check_output, log, run_cli

COUNT = 1  # constraints per instruction
SEED = 1337


def main(*, data_path: Path, output: Path, count: int = COUNT, seed: int = SEED, kinds: Optional[list[str]] = None,
         limit: Optional[int] = None) -> Path:
    """Append verifiable constraints to each row's instruction and write the rows.

    Args:
        data_path: a JSON/JSONL/CSV/Parquet file of instructions (Alpaca, conversations, ...)
        output: where the constrained rows go (.json or .jsonl)
        count: constraints per instruction (of different, non-conflicting kinds)
        seed: the draw's seed
        kinds: only these kinds, e.g. '[change_case:english_lowercase, punctuation:no_comma]' (default: all 25)
        limit: only the first N rows
    """
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: must be at least 1 (leave it out for every row)")
    check_output(output, {"--data_path": data_path}, "--output")
    kinds = checked_kinds(kinds, count)
    rows = add_constraints(read_instructions(data_path, limit, keep=("id", "source", "category")), count, seed,
                           kinds)
    write_records(output, rows)
    used = sorted({c["id"] for row in rows for c in row["constraints"]})
    log(f"wrote {len(rows)} rows with {count} constraint(s) each to {output} ({len(used)} of "
        f"{len(constraint_kinds())} kinds drawn)")
    return Path(output)


if __name__ == "__main__":
    run_cli(main)
