"""Compare datasets (and training orders, and epoch counts) by fine-tuning the same model on each.

    python scripts/compare_datasets.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct \
        --data_dirs data/alpagasus_300 data/alpaca_300 --eval_path ../shared/datasets/eval/sinstruct_test_set.jsonl \
        --judge_checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct --out_dir out/compare/alpagasus

Every variant (data dir x --orders x --epochs) is trained with finetune/<method>.py's training loop, the same
hyperparameters and seed, into out_dir/<variant>/; then each is evaluated on one held-out set (eval loss on the
reference answers, share of greedy answers that stop with EOS, with --ifeval_prompts IFEval's four accuracies, and
with --judge_checkpoint_dir the win rate against the first variant, judged in both answer orders); every later
variant's difference from the first comes with a paired 95% bootstrap interval ("n.s." when it contains 0). Held-out prompts that near-duplicate training instructions are
reported. Writes out_dir/comparison.md (the table, also printed), comparison.png and comparison.json.
Details: lit_gpt/compare.py.
"""

import sys
from pathlib import Path
from typing import Literal, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.compare import compare  # noqa: E402
from lit_gpt.compare_report import markdown_table  # noqa: E402
from lit_gpt.utils import UserError, run_cli, space_separated_lists  # noqa: E402

LIST_FLAGS = ("data_dirs", "orders", "epochs")


def main(checkpoint_dir: Optional[Path] = None, data_dirs: Optional[list[str]] = None,
         orders: Optional[list[str]] = None, epochs: Optional[list[int]] = None, eval_path: Optional[Path] = None,
         judge_checkpoint_dir: Optional[Path] = None, out_dir: Path = Path("out/compare"),
         method: Literal["lora", "full"] = "lora", eval_prompts: int = 40, eval_examples: int = 200,
         max_new_tokens: int = 128, ifeval_prompts: int = 0, ifeval_max_new_tokens: int = 1280,
         eval_batch_size: int = 16, resume: bool = False, learning_rate: Optional[float] = None,
         batch_size: Optional[int] = None, micro_batch_size: Optional[int] = None, max_iters: Optional[int] = None,
         warmup_steps: Optional[int] = None, seed: Optional[int] = None,
         hyperparameters: Optional[dict] = None) -> dict:
    """Fine-tune the same model on each dataset variant and compare them on one held-out set.

    Args:
        checkpoint_dir: the base model every variant starts from
        data_dirs: prepared data directories (same tokenizer and prompt style), the first is the judge's baseline
        orders: training orders to compare (default: shuffle), e.g. shuffle by_length_asc
        epochs: epoch counts to compare, e.g. 1 3 (default: finetune/<method>.py's; with --max_iters alone, that many
            steps)
        eval_path: held-out set: a prepared data directory (its test.pt) or a JSON/JSONL file of instructions (with
            or without answers); default: the union of the variants' test sets
        judge_checkpoint_dir: a model that judges answers pairwise (win rate against the first variant)
        out_dir: one subdirectory per variant, plus comparison.md/.png/.json
        method: lora or full fine-tuning (finetune/lora.py or finetune/full.py defaults)
        eval_prompts: held-out prompts answered greedily (EOS rate, judge)
        eval_examples: held-out examples with a reference answer for the eval loss
        max_new_tokens: answer length limit for the EOS rate
        ifeval_prompts: IFEval prompts each variant answers (0: no IFEval, -1: all 541)
        ifeval_max_new_tokens: IFEval's answer budget (lm-eval: 1280)
        eval_batch_size: prompts generated together, examples per loss batch
        resume: reuse finished runs in out_dir and continue unfinished ones
        learning_rate: overrides the script's constant (same for every variant)
        batch_size: overrides the script's constant
        micro_batch_size: overrides the script's constant
        max_iters: overrides the script's constant
        warmup_steps: overrides the script's constant
        seed: overrides the script's constant (training seed; also picks the answered prompts)
        hyperparameters: any other constants of finetune/<method>.py, e.g. '{"lora_r": 16, "eval_interval": 50}'
    """
    if checkpoint_dir is None:
        raise UserError("--checkpoint_dir is required: the model every variant is fine-tuned from")
    if not data_dirs:
        raise UserError("--data_dirs is required: two or more prepared data directories, e.g. --data_dirs data/a "
                        "data/b")
    flags = {"learning_rate": learning_rate, "batch_size": batch_size, "micro_batch_size": micro_batch_size,
             "max_iters": max_iters, "warmup_steps": warmup_steps, "seed": seed}
    chosen = {**(hyperparameters or {}), **{k: v for k, v in flags.items() if v is not None}}
    comparison = compare(checkpoint_dir, data_dirs, out_dir, orders=orders or ["shuffle"], epochs=epochs or [None],
                         eval_path=eval_path, judge_checkpoint_dir=judge_checkpoint_dir, method=method,
                         hyperparameters=chosen, eval_prompts=eval_prompts, eval_examples=eval_examples,
                         max_new_tokens=max_new_tokens, resume=resume, seed=seed if seed is not None else 42,
                         ifeval_prompts=ifeval_prompts, ifeval_max_new_tokens=ifeval_max_new_tokens,
                         batch_size=eval_batch_size)
    print(markdown_table(comparison))
    print(f"{out_dir / 'comparison.md'}, comparison.png, comparison.json written")
    return comparison


if __name__ == "__main__":
    run_cli(main, args=space_separated_lists(sys.argv[1:], LIST_FLAGS))
