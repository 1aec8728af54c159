"""Compare datasets (and training orders, and epoch counts) by fine-tuning the same model on each.

    python scripts/compare_datasets.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct \
        --data_dirs data/alpagasus_300 data/alpaca_300 --eval_path ../shared/datasets/eval/sinstruct_test_set.jsonl \
        --judge_checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct --out_dir out/compare/alpagasus
    python scripts/compare_datasets.py --recipe scripts/studies/1_quality_vs_quantity.yaml   # a whole study

Every variant (data dir x --orders x --epochs) is trained with finetune/<method>.py's training loop and the same
hyperparameters, once per seed of --seeds, into out_dir/<variant>/seed-<seed>/ (with --aa_control, default, the first
variant once more with other seeds: the A/A control); then each run is evaluated on one held-out set (reference-answer
loss per answer style, share of greedy answers that stop with EOS, with --ifeval_prompts IFEval with echo detection,
with --judge_checkpoint_dir the win rate against the first variant, judged in both answer orders). Every later variant
is tested against the first on --primary_metric (seed and item noise, Holm-corrected), with the interval and the
minimum detectable effect. Held-out prompts that near-duplicate training instructions are reported. Writes
out_dir/comparison.md (the tables, also printed), comparison.png and comparison.json. Details:
lit_gpt/studies/compare.py.

--recipe runs a study (scripts/studies/*.yaml, format in lit_gpt/studies/recipe.py): its build steps first (our prepare,
score, filter and mix scripts, in this process; nothing else, and each writes only under --data_root), then the
comparison with the recipe's flags; a flag given on the command line wins over the recipe's, --settings
'{"rows": 100}' changes the recipe's sizes, --gpu_settings true applies the recipe's full (GPU) size.
"""

import importlib.util
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from jsonargparse import CLI, capture_parser

from lit_gpt.studies.compare import Plan, compare, plan_comparison
from lit_gpt.studies.settings import StudySettings
from lit_gpt.studies.report import markdown_table
from lit_gpt.cli.parser import ScriptParser
from lit_gpt.cli.secrets import redact
from lit_gpt.studies.recipe import BuildStep, StudyRecipe, load_recipe, recorded_settings
from lit_gpt.train.args import hyperparameter_specs
from lit_gpt.utils import UserError, cpu_name, log, output_lock, run_cli, space_separated_lists, with_flags

LIST_FLAGS = ("data_dirs", "orders", "epochs", "seeds", "draw_rows")
SCRIPTS_DIR = Path(__file__).resolve().parent
# finetune/<method>.py's constants that have a flag here (any other: --hyperparameters); the training seed is
# --seeds (one run per seed), --seed seeds the held-out sample (StudySettings.seed)
TRAINING_FLAGS = ("learning_rate", "batch_size", "micro_batch_size", "max_iters", "warmup_steps")
PATH_FLAGS = {"checkpoint_dir": (Optional[Path], "the base model every variant starts from"),
              "data_dirs": (Optional[list[str]], "prepared data directories (same tokenizer and prompt style), the "
                                                 "first is the baseline")}
HYPERPARAMETERS_HELP = ("any other constants of finetune/<method>.py, e.g. '{\"lora_r\": 16, \"eval_interval\": 50}' "
                        "(with --recipe: added to the recipe's)")


def main(*, recipe: Optional[Path] = None, settings: Optional[dict] = None, data_root: Optional[Path] = None,
         shared_dir: Path = Path("../shared"), gpu_settings: bool = False, **flags) -> dict:
    """Fine-tune the same model on each dataset variant and compare them on one held-out set.

    A flag of the comparison that is left out takes the recipe's value (with --recipe), else the default its help
    names (--out_dir's with --recipe: out/studies/<recipe>/<model>).

    Args:
        recipe: a study recipe (scripts/studies/*.yaml): builds its data variants, then compares them with its flags
        settings: with --recipe, new values for the recipe's sizes, e.g. '{"rows": 200}'
        data_root: with --recipe, where its data variants are built (default: data/studies/<model>)
        shared_dir: with --recipe, the shared real data its build steps read (default: ../shared)
        gpu_settings: with --recipe, its full size (the recipe's gpu_settings over its CPU sizes)
    """
    started = time.perf_counter()
    given = {k: v for k, v in flags.items() if v is not None}  # the comparison's flags the command line gave
    values = None  # a recipe's placeholder values
    if recipe is not None:
        recipe = load_recipe(recipe).for_gpu() if gpu_settings else load_recipe(recipe)
        given, values = recipe_flags(recipe, given, settings or {}, data_root, shared_dir)
    elif settings or data_root is not None or gpu_settings:
        raise UserError("--settings, --data_root and --gpu_settings belong to --recipe; without a recipe, pass the "
                        "flags directly")
    plan = plan_from_flags(given)  # every setting checked before a recipe builds its data
    with output_lock(plan.settings.out_dir):
        study = build_variants(recipe, values) if recipe is not None else None
        comparison = compare(plan, study=study, started=started)
    print(markdown_table(comparison))
    print(f"{plan.settings.out_dir / 'comparison.md'}, comparison.png, comparison.json written")
    return comparison


def comparison_flags() -> list[tuple]:
    """The comparison's flags for `with_flags`, each None when not given: the paths, StudySettings' fields, the
    TRAINING_FLAGS and --hyperparameters; their help names the defaults (StudySettings', TrainArgs')."""
    study_defaults, specs = StudySettings(), hyperparameter_specs()
    study_fields = {f.name: f for f in fields(StudySettings)}
    flags = [(name, annotation, None, help) for name, (annotation, help) in PATH_FLAGS.items()]
    for name, f in study_fields.items():
        if name not in TRAINING_FLAGS:
            help = f"{f.metadata['help']} (default: {getattr(study_defaults, name)})"
            flags.append((name, Optional[f.type], None, help))
    for name in TRAINING_FLAGS:
        annotation, default, help = specs[name]
        help = f"finetune/<method>.py's, the same for every variant (default: {default}): {help}"
        flags.append((name, Optional[annotation], None, help))
    return flags + [("hyperparameters", Optional[dict], None, HYPERPARAMETERS_HELP)]


def plan_from_flags(flags: dict) -> Plan:
    """The checked comparison that the flags describe."""
    if flags.get("checkpoint_dir") is None:
        raise UserError("--checkpoint_dir is required: the model every variant is fine-tuned from")
    if not flags.get("data_dirs"):
        raise UserError("--data_dirs is required: two or more prepared data directories, e.g. --data_dirs data/a "
                        "data/b")
    study_names = {f.name for f in fields(StudySettings)}
    settings = StudySettings(**{k: v for k, v in flags.items() if k in study_names})
    hyperparameters = {**(flags.get("hyperparameters") or {}), **{k: flags[k] for k in TRAINING_FLAGS if k in flags}}
    return plan_comparison(flags["checkpoint_dir"], flags["data_dirs"], settings, hyperparameters)


def recipe_flags(recipe: StudyRecipe, given: dict, settings: dict, data_root: Optional[Path],
                 shared_dir: Path) -> tuple[dict, dict]:
    """(the comparison's flags: the recipe's, then the command line's; the recipe's placeholder values)."""
    checkpoint_dir = given.get("checkpoint_dir") or recipe.compare.get("checkpoint_dir")
    if checkpoint_dir is None:
        raise UserError(f"{recipe.path}: names no checkpoint_dir; pass --checkpoint_dir")
    model = Path(str(checkpoint_dir)).name
    data_root = Path(data_root) if data_root is not None else Path("data/studies") / model
    fixed = {"checkpoint_dir": str(checkpoint_dir), "data": str(data_root), "shared": str(shared_dir)}
    values = recipe.values(fixed, settings)
    from_recipe = recipe.compare_flags(values)
    unknown = sorted(set(from_recipe) - {name for name, *_ in comparison_flags()})
    if unknown:
        raise UserError(f"{recipe.path}: compare: {unknown} are not flags of compare_datasets.py (see its --help)")
    flags = {**from_recipe, **given}
    if "hyperparameters" in from_recipe or "hyperparameters" in given:
        flags["hyperparameters"] = {**(from_recipe.get("hyperparameters") or {}),
                                    **(given.get("hyperparameters") or {})}
    flags.setdefault("out_dir", Path("out/studies") / recipe.path.stem / model)
    return flags, values


def build_variants(recipe: StudyRecipe, values: dict) -> dict:
    """Runs the recipe's build steps, every one checked before the first runs; returns what the report says of the
    study."""
    steps = recipe.steps(values)
    wheres = [f"{recipe.path}: build step {i + 1} ({step.script})" for i, step in enumerate(steps)]
    tools = [load_tool(step, where) for step, where in zip(steps, wheres)]
    started = time.perf_counter()
    for i, (step, tool, where) in enumerate(zip(steps, tools, wheres)):
        log(f"=== {recipe.path.name} step {i + 1}/{len(steps)}: {step.command()}")
        run_step(step, tool, where)
    return {"recipe": str(recipe.path), "question": recipe.question, "settings": recorded_settings(values, steps),
            "build": [s.command() for s in steps], "build_seconds": round(time.perf_counter() - started, 1),
            "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average_before": os.getloadavg()}}


def load_tool(step: BuildStep, where: str):
    """The module of a build step's script (one of recipe.RECIPE_TOOLS), its flags checked against the script's own."""
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
    step.check_flags(set(capture_parser(lambda: CLI(module.main, args=[]))._option_string_actions), where)
    return module


def run_step(step: BuildStep, module, where: str) -> None:
    """One build step: the script's main() with its command line, in this process (no interpreter start per step),
    parsed as run_cli parses a script's: its secrets (--access_token) masked in anything printed."""
    try:
        CLI(module.main, args=space_separated_lists(step.args, getattr(module, "LIST_FLAGS", ())),
            parser_class=ScriptParser)
    except UserError as e:
        raise UserError(f"{where}: {redact(str(e), step.secrets())}") from None
    except SystemExit as e:  # jsonargparse's answer to a bad flag (it has printed why), or --help
        if e.code:
            raise UserError(f"{where}: its command line was refused (see above)") from None


main = with_flags(main, comparison_flags())

if __name__ == "__main__":
    run_cli(main, args=space_separated_lists(sys.argv[1:], LIST_FLAGS))
