"""Compare several evaluations of one model (one per training seed) with evaluations of a baseline.

    python scripts/compare_evaluations.py --baseline out/eval/smollm2-base \\
        --runs out/eval/dpo-seed1 out/eval/dpo-seed2 out/eval/dpo-seed3 --out_dir out/eval/dpo-vs-base

Every folder is a `scripts/evaluate.py` out_dir over the same items (the same --ifeval_path/--limit/--ifeval_sample
and --reference_data). For each metric that every folder has (IFEval prompt-level accuracy strict and loose, the
reference loss per answer), the difference of the runs' mean from the baseline's is tested with both noises a
fine-tune has: another training seed moves a run's mean (seen in how far the runs scatter), and the items are a
sample of prompts (`lit_gpt.eval.statistics.compare_arms`, the studies' test: at most ~5% of same-condition
comparisons called significant), its p-value taken at the worst split of the variance between seeds and items (valid
with few seeds: `statistics.worst_case_p`); Holm-adjusted over the metrics. A greedy evaluation of a base model has
no seed: one folder. For one run a side, `evaluate.py --baseline` gives the item-only tests (exact McNemar). Writes
out_dir/comparison.json and comparison.md and prints the table.
"""

import importlib.util
import sys
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.eval.paired import compare_runs, comparison_markdown
from lit_gpt.eval.run import ifeval_sample_prompts
from lit_gpt.utils import (UserError, atomic_write_json, atomic_write_text, check_output, output_lock, run_cli,
                           space_separated_lists)

LIST_FLAGS = ("runs", "baseline")


def main(runs: Optional[list[Path]] = None, baseline: Optional[list[Path]] = None,
         out_dir: Optional[Path] = None, without_ifeval_sample: Optional[int] = None) -> dict:
    """Prints and writes the comparison.

    Args:
        runs: evaluate.py out_dirs of the model compared, one per training seed
        baseline: evaluate.py out_dirs of the baseline (one for a deterministic base model's greedy evaluation)
        out_dir: where comparison.json and comparison.md go (apart from every input folder)
        without_ifeval_sample: leave out the IFEval prompts that `evaluate.py --ifeval_sample N` draws: a
            confirmation on the prompts an earlier look at that sample did not see (the folders hold all of them)
    """
    run_dirs, baseline_dirs = [Path(p) for p in runs or []], [Path(p) for p in baseline or []]
    if not run_dirs or not baseline_dirs or out_dir is None:
        raise UserError("give --runs and --baseline (evaluate.py out_dirs, at least one each) and --out_dir")
    if len(run_dirs) + len(baseline_dirs) < 3:
        raise UserError("one run a side has no seed noise to measure: use scripts/evaluate.py --baseline DIR (item-"
                        "by-item tests), or give several --runs")
    seen: dict = {}
    for folder in [*baseline_dirs, *run_dirs]:
        if seen.setdefault(folder.resolve(), folder) is not folder:
            raise UserError(f"{folder} is given twice (as {seen[folder.resolve()]} too): each run counts once, or "
                            "the seeds' noise looks smaller than it is")
    check_output(out_dir, {"--runs": run_dirs, "--baseline": baseline_dirs}, "--out_dir",
                 writes=["comparison.json", "comparison.md"])
    left_out = frozenset()
    if without_ifeval_sample is not None:
        left_out = ifeval_sample_prompts(baseline_dirs[0], without_ifeval_sample)
    comparison = compare_runs(run_dirs, baseline_dirs, left_out)
    markdown = comparison_markdown(comparison)
    with output_lock(out_dir):
        atomic_write_json(out_dir / "comparison.json", comparison)
        atomic_write_text(out_dir / "comparison.md", markdown)
    print(markdown)
    return comparison


if __name__ == "__main__":
    run_cli(main, args=space_separated_lists(sys.argv[1:], LIST_FLAGS))
