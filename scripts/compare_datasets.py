"""Compare datasets (and training orders, and epoch counts) by fine-tuning the same model on each.

    python scripts/compare_datasets.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct \
        --data_dirs data/alpagasus_300 data/alpaca_300 --eval_path ../shared/datasets/eval/sinstruct_test_set.jsonl \
        --judge_checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct --out_dir out/compare/alpagasus
    python scripts/compare_datasets.py --recipe scripts/studies/1_quality_vs_quantity.yaml   # a whole study

Every variant (data dir x --orders x --epochs) is trained with finetune/<method>.py's training loop, the same
hyperparameters and seed, into out_dir/<variant>/; then each is evaluated on one held-out set (eval loss on the
reference answers, share of greedy answers that stop with EOS, with --ifeval_prompts IFEval's four accuracies, and
with --judge_checkpoint_dir the win rate against the first variant, judged in both answer orders); every later
variant's difference from the first comes with a paired 95% bootstrap interval ("n.s." when it contains 0). Held-out
prompts that near-duplicate training instructions are reported. Writes out_dir/comparison.md (the table, also
printed), comparison.png and comparison.json. Details: lit_gpt/studies/compare.py.

--recipe runs a study (scripts/studies/*.yaml, format in lit_gpt/studies/recipe.py): its build steps first (our prepare,
score, filter and mix scripts, in this process), then the comparison with the recipe's flags; a flag given on the
command line wins over the recipe's, --settings '{"rows": 100}' changes the recipe's sizes.
"""

import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Literal, Optional


from jsonargparse import CLI

try:
    import lit_gpt  # noqa: F401  (the scripts use the installed package)
except ModuleNotFoundError:
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.studies.compare import compare
from lit_gpt.studies.report import markdown_table
from lit_gpt.studies.recipe import BuildStep, StudyRecipe, load_recipe
from lit_gpt.utils import UserError, cpu_name, log, run_cli, space_separated_lists

LIST_FLAGS = ("data_dirs", "orders", "epochs")
SCRIPTS_DIR = Path(__file__).resolve().parent
# the comparison's defaults: a flag left out takes the recipe's value, else this one
DEFAULTS = {"out_dir": Path("out/compare"), "method": "lora", "eval_prompts": 40, "eval_examples": 200,
            "max_new_tokens": 128, "ifeval_prompts": 0, "ifeval_max_new_tokens": 1280, "eval_batch_size": 16,
            "resume": False}
RECIPE_FLAGS = ("recipe", "settings", "data_root", "shared_dir")
TRAINING_FLAGS = ("learning_rate", "batch_size", "micro_batch_size", "max_iters", "warmup_steps", "seed")


def main(checkpoint_dir: Optional[Path] = None, data_dirs: Optional[list[str]] = None,
         orders: Optional[list[str]] = None, epochs: Optional[list[int]] = None, eval_path: Optional[Path] = None,
         judge_checkpoint_dir: Optional[Path] = None, out_dir: Optional[Path] = None,
         method: Optional[Literal["lora", "full"]] = None, eval_prompts: Optional[int] = None,
         eval_examples: Optional[int] = None, max_new_tokens: Optional[int] = None,
         ifeval_prompts: Optional[int] = None, ifeval_max_new_tokens: Optional[int] = None,
         eval_batch_size: Optional[int] = None, resume: Optional[bool] = None, learning_rate: Optional[float] = None,
         batch_size: Optional[int] = None, micro_batch_size: Optional[int] = None, max_iters: Optional[int] = None,
         warmup_steps: Optional[int] = None, seed: Optional[int] = None, hyperparameters: Optional[dict] = None,
         recipe: Optional[Path] = None, settings: Optional[dict] = None, data_root: Optional[Path] = None,
         shared_dir: Path = Path("../shared")) -> dict:
    """Fine-tune the same model on each dataset variant and compare them on one held-out set.

    Args:
        checkpoint_dir: the base model every variant starts from
        data_dirs: prepared data directories (same tokenizer and prompt style), the first is the baseline
        orders: training orders to compare (default: shuffle), e.g. shuffle by_length_asc
        epochs: epoch counts to compare, e.g. 1 3 (default: finetune/<method>.py's; with --max_iters alone, that many
            steps)
        eval_path: held-out set: a prepared data directory (its test.pt) or a JSON/JSONL file of instructions (with
            or without answers); default: the union of the variants' test sets
        judge_checkpoint_dir: a model that judges answers pairwise (win rate against the first variant)
        out_dir: one subdirectory per variant, plus comparison.md/.png/.json (default: out/compare; with --recipe
            out/studies/<recipe>/<model>)
        method: lora or full fine-tuning (finetune/lora.py or finetune/full.py defaults; default lora)
        eval_prompts: held-out prompts answered greedily (EOS rate, judge; default 40)
        eval_examples: held-out examples with a reference answer for the eval loss (default 200)
        max_new_tokens: answer length limit for the EOS rate (default 128)
        ifeval_prompts: IFEval prompts each variant answers (0: no IFEval, the default; -1: all 541)
        ifeval_max_new_tokens: IFEval's answer budget (default 1280, as lm-eval)
        eval_batch_size: prompts generated together, examples per loss batch (default 16)
        resume: reuse finished runs in out_dir and continue unfinished ones
        learning_rate: overrides the script's constant (same for every variant)
        batch_size: overrides the script's constant
        micro_batch_size: overrides the script's constant
        max_iters: overrides the script's constant
        warmup_steps: overrides the script's constant
        seed: overrides the script's constant (training seed; also picks the answered prompts)
        hyperparameters: any other constants of finetune/<method>.py, e.g. '{"lora_r": 16, "eval_interval": 50}'
            (with --recipe: added to the recipe's)
        recipe: a study recipe (scripts/studies/*.yaml): builds its data variants, then compares them with its flags
        settings: with --recipe, new values for the recipe's sizes, e.g. '{"rows": 200}'
        data_root: with --recipe, where its data variants are built (default: data/studies/<model>)
        shared_dir: with --recipe, the shared real data its build steps read (default: ../shared)
    """
    # the comparison's flags the command line gave (a recipe's own flags fill the others)
    given = {k: v for k, v in locals().items() if v is not None and k not in RECIPE_FLAGS}
    started = time.perf_counter()
    study = None
    if recipe is not None:
        given, study = run_recipe(load_recipe(recipe), given, settings or {}, data_root, shared_dir)
    elif settings or data_root is not None:
        raise UserError("--settings and --data_root belong to --recipe; without a recipe, pass the flags directly")
    args = {**DEFAULTS, **given}
    if args.get("checkpoint_dir") is None:
        raise UserError("--checkpoint_dir is required: the model every variant is fine-tuned from")
    if not args.get("data_dirs"):
        raise UserError("--data_dirs is required: two or more prepared data directories, e.g. --data_dirs data/a "
                        "data/b")
    chosen = {**(args.get("hyperparameters") or {}), **{k: args[k] for k in TRAINING_FLAGS if k in args}}
    if study is not None:
        study["machine"] = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average_before": os.getloadavg()}
    comparison = compare(args["checkpoint_dir"], args["data_dirs"], args["out_dir"], orders=args.get("orders") or
                         ["shuffle"], epochs=args.get("epochs") or [None], eval_path=args.get("eval_path"),
                         judge_checkpoint_dir=args.get("judge_checkpoint_dir"), method=args["method"],
                         hyperparameters=chosen, eval_prompts=args["eval_prompts"],
                         eval_examples=args["eval_examples"], max_new_tokens=args["max_new_tokens"],
                         resume=args["resume"], seed=args.get("seed", 42), ifeval_prompts=args["ifeval_prompts"],
                         ifeval_max_new_tokens=args["ifeval_max_new_tokens"], batch_size=args["eval_batch_size"],
                         study=study, started=started)
    print(markdown_table(comparison))
    print(f"{Path(args['out_dir']) / 'comparison.md'}, comparison.png, comparison.json written")
    return comparison


def run_recipe(recipe: StudyRecipe, given: dict, settings: dict, data_root: Optional[Path],
               shared_dir: Path) -> tuple[dict, dict]:
    """Builds the recipe's data variants and returns (the comparison's flags: the recipe's, then the command
    line's; what the report says of the study)."""
    checkpoint_dir = given.get("checkpoint_dir") or recipe.compare.get("checkpoint_dir")
    if checkpoint_dir is None:
        raise UserError(f"{recipe.path}: names no checkpoint_dir; pass --checkpoint_dir")
    model = Path(str(checkpoint_dir)).name
    data_root = Path(data_root) if data_root is not None else Path("data/studies") / model
    fixed = {"checkpoint_dir": str(checkpoint_dir), "data": str(data_root), "shared": str(shared_dir)}
    values = recipe.values(fixed, settings)
    from_recipe = recipe.compare_flags(values)
    flags = {**from_recipe, **given}
    if "hyperparameters" in from_recipe or "hyperparameters" in given:
        flags["hyperparameters"] = {**(from_recipe.get("hyperparameters") or {}),
                                    **(given.get("hyperparameters") or {})}
    flags.setdefault("out_dir", Path("out/studies") / recipe.path.stem / model)
    steps = recipe.steps(values)
    started = time.perf_counter()
    for i, step in enumerate(steps):
        log(f"=== {recipe.path.name} step {i + 1}/{len(steps)}: {step.command()}")
        run_step(step, f"{recipe.path}: build step {i + 1} ({step.script})")
    study = {"recipe": str(recipe.path), "question": recipe.question, "settings": values,
             "build": [s.command() for s in steps], "build_seconds": round(time.perf_counter() - started, 1)}
    return flags, study


def run_step(step: BuildStep, where: str) -> None:
    """One build step: the script's main() with its command line, in this process (no interpreter start per step)."""
    path = SCRIPTS_DIR / step.script
    if not path.is_file():
        raise UserError(f"{where}: scripts/{step.script} does not exist")
    name = f"study_step_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # jsonargparse reads the source to resolve the **kwargs a script passes on
        spec.loader.exec_module(module)
    module = sys.modules[name]
    try:
        CLI(module.main, args=space_separated_lists(step.args, getattr(module, "LIST_FLAGS", ())))
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    except SystemExit as e:  # jsonargparse's answer to a bad flag (it has printed why), or --help
        if e.code:
            raise UserError(f"{where}: its command line was refused (see above)") from None


if __name__ == "__main__":
    run_cli(main, args=space_separated_lists(sys.argv[1:], LIST_FLAGS))
