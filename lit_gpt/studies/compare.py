"""Comparing dataset variants (`scripts/compare_datasets.py`): which data makes the better fine-tune?

Every variant (an arm: a prepared data directory x a training order x a number of epochs) is trained from the same
checkpoint with the same hyperparameters by the one training loop (`lit_gpt.train.loop.finetune`, with the library's
defaults, TrainArgs and LoRAConfig, the values finetune/lora.py and finetune/full.py ship with), once per seed of
--seeds, in-process, one run after the other, into out_dir/<variant>/seed-<seed>/. The seed drives the LoRA init,
dropout, the data order and, for an arm that draws its rows (--draw_rows: N training examples of its data dir,
`lit_gpt.data.mixing.mix`), the draw. With --token_budget every run trains as many steps as its examples take to
reach that many tokens (equal tokens, not equal examples). The first variant is the baseline; with --aa_control
(default) the baseline is trained once more with as many other seeds, the A/A arm: a real difference from the
baseline cannot exist, so a test that finds one is wrong. --base_row evaluates the untrained base checkpoint and
--reference_checkpoint_dir an instruction-tuned model (in its own chat format) beside the arms, for scale only.

Each run is evaluated on one common held-out set (`lit_gpt.studies.evaluation`: reference-answer loss per answer
style, IFEval with echo detection, EOS rate); with a judge checkpoint a judge model compares each arm's answers with
the baseline's run of the same seed index, in both orders (`lit_gpt.studies.pairwise`). The statistics
(`lit_gpt.studies.analysis`) compare every arm with the baseline on the declared --primary_metric, with seed and
item noise, Holm-corrected, and check the A/A arm the same way. With --resume, finished runs and their evaluations
are reused. Results: comparison.md (`lit_gpt.studies.report`), comparison.png, comparison.json (numbers, per-item
scores and every answer).

`plan_comparison` checks every setting before any data is loaded (a recipe builds its data after that); `compare`
then runs the plan: data, held-out set, contamination, one run after the other, the judge, the statistics, the files.
"""

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import torch

from lit_gpt.checkpoint import check_checkpoint_dir
from lit_gpt.data.mixing import mix
from lit_gpt.data.order import check_order
from lit_gpt.data.preferences import PREFERENCE_FORMAT, pair_as_instruction
from lit_gpt.data.prepared import load_prepared
from lit_gpt.infer.load import load
from lit_gpt.lora import LoRAConfig
from lit_gpt.precision import device_and_dtype
from lit_gpt.studies.analysis import study_statistics
from lit_gpt.studies.evaluation import HeldOut, evaluate_model, held_out_set, warn_of_contamination
from lit_gpt.studies.pairwise import judge_arms
from lit_gpt.studies.report import markdown_report, plot_comparison
from lit_gpt.studies.settings import StudySettings
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.train.args import (PreferenceArgs, TrainArgs, check_train_args, typed_hyperparameters,
                                typed_preference_hyperparameters)
from lit_gpt.train.loop import finetune
from lit_gpt.train.preference_step import PreferenceObjective
from lit_gpt.train.state import checkpoint_steps
from lit_gpt.utils import UserError, atomic_write_json, atomic_write_text, check_output, log

EVALUATION_FILE = "study_evaluation.json"  # a run's evaluation, reused by --resume under the same held-out set


@dataclass
class Variant:
    name: str
    data_dir: Path
    order: str
    epochs: Optional[int]  # None: TrainArgs.epochs (max_iters alone decides the number of steps)
    draw_rows: Optional[int] = None  # each run trains on this many examples drawn from data_dir with its seed
    role: str = "arm"  # "baseline" (the first), "arm", or "aa_control" (the baseline again, other seeds)
    seeds: list[int] = field(default_factory=list)


def make_variants(data_dirs: Sequence["str | Path"], orders: Sequence[str],
                  epochs: Sequence[Optional[int]] = (None,), draw_rows: Sequence[int] = ()) -> list[Variant]:
    """Every data dir x order x epochs; names say only what varies (alpaca, alpaca-by_length_asc, alpaca-3ep,
    alpaca-draw1000). The first is the baseline."""
    if not data_dirs:
        raise UserError("--data_dirs: give at least one prepared data directory")
    if draw_rows and len(draw_rows) != len(data_dirs):
        raise UserError(f"--draw_rows has {len(draw_rows)} values for {len(data_dirs)} data dirs; give one per "
                        "data dir (0: all its rows)")
    for order in orders:
        check_order(order)
    for n in epochs:
        if n is not None and n < 1:
            raise UserError(f"--epochs {n}: must be >= 1")
    data_dirs = [Path(d) for d in data_dirs]
    draws = [n or None for n in draw_rows] or [None] * len(data_dirs)
    base = [d.name + (f"-draw{n}" if n else "") for d, n in zip(data_dirs, draws)]
    base = [f"{n}-{i + 1}" if base.count(n) > 1 else n for i, n in enumerate(base)]
    variants = []
    for name, data_dir, draw in zip(base, data_dirs, draws):
        for order in orders:
            for n in epochs:
                parts = [name] + ([order] if len(orders) > 1 else []) + ([f"{n}ep"] if len(epochs) > 1 else [])
                role = "arm" if variants else "baseline"
                variants.append(Variant("-".join(parts), data_dir, order, n, draw, role))
    return variants


# a study trains with finetune/<method>.py's defaults except these: no sample answer at every validation (the
# variants train faster); --hyperparameters '{"sample_max_new_tokens": 64}' brings it back
STUDY_TRAIN_ARGS = TrainArgs(sample_max_new_tokens=0)


@dataclass
class Plan:
    """A checked comparison (`plan_comparison`): what `compare` runs."""
    checkpoint_dir: Path
    variants: list[Variant]  # with their seeds; the A/A arm last
    settings: StudySettings
    train: TrainArgs  # every variant's, but its order, epochs, seed (and steps under a token budget)
    lora: Optional[LoRAConfig]  # None: full fine-tuning
    hyperparameters: dict  # what the study sets (the report lists them); the rest are finetune/<method>.py's
    preference: Optional[PreferenceArgs] = None  # the preference loss (finetune/dpo.py's); None: instruction tuning


# ---- checks: every setting, before any data is loaded -------------------------------------------------------------
def plan_comparison(checkpoint_dir: "str | Path", data_dirs: Sequence["str | Path"],
                    settings: Optional[StudySettings] = None, hyperparameters: Optional[dict] = None) -> Plan:
    """The comparison with every setting checked: the checkpoint, the variants (data dirs, orders, epochs, draws,
    seeds, the A/A arm), the training hyperparameters (names of finetune/<method>.py's constants, the same for every
    variant), the judge and reference models and the runs an earlier comparison left in out_dir. Reads no data."""
    settings = settings or StudySettings()
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    variants = [replace(v, seeds=list(settings.seeds))
                for v in make_variants(data_dirs, settings.orders, settings.epochs, settings.draw_rows)]
    if settings.aa_control:
        variants.append(replace(variants[0], name=f"{variants[0].name}-aa", role="aa_control",
                                seeds=settings.aa_seeds()))
    train, lora, chosen, preference = study_training(settings.method, hyperparameters or {}, settings.preference_loss)
    if settings.token_budget is not None and ("max_iters" in chosen or settings.epochs != [None]):
        raise UserError("--token_budget sets every run's steps: leave out --max_iters and --epochs")
    for flag in ("judge_checkpoint_dir", "reference_checkpoint_dir"):
        path = getattr(settings, flag)
        if path is not None and not path.is_dir():
            raise UserError(f"--{flag} {path}: no such directory (a converted checkpoint, e.g. "
                            "checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct)")
    check_output(settings.out_dir, {"--checkpoint_dir": checkpoint_dir, "--data_dirs": [v.data_dir for v in variants],
                                    "--eval_path": settings.eval_path,
                                    "--judge_checkpoint_dir": settings.judge_checkpoint_dir,
                                    "--reference_checkpoint_dir": settings.reference_checkpoint_dir}, "--out_dir")
    if not settings.resume:
        for variant in variants:
            for seed in variant.seeds:
                if checkpoint_steps(run_dir(settings, variant, seed)):
                    raise UserError(f"{run_dir(settings, variant, seed)}: holds a run of an earlier comparison; "
                                    "pass --resume true to reuse finished runs (and continue unfinished ones), or "
                                    "choose another --out_dir")
    return Plan(checkpoint_dir, variants, settings, train, lora, chosen, preference)


def study_training(method: str, hyperparameters: dict, preference_loss: Optional[str] = None) -> tuple:
    """(TrainArgs, LoRAConfig, what the study sets, PreferenceArgs or None): STUDY_TRAIN_ARGS' changes to the
    defaults, then `hyperparameters` (names of finetune/<method>.py's constants; with a preference loss also
    finetune/dpo.py's, e.g. beta), checked as finetune() and finetune/dpo.py check them."""
    for fixed, flag in (("order", "--orders"), ("epochs", "--epochs"), ("seed", "--seeds")):
        if fixed in hyperparameters:
            raise UserError(f"{fixed!r} is set per run: use {flag} instead of --hyperparameters")
    defaults, study = asdict(TrainArgs()), asdict(STUDY_TRAIN_ARGS)
    chosen = {name: value for name, value in study.items() if value != defaults[name]}
    chosen.update(hyperparameters)
    if preference_loss is not None:
        if "loss" in chosen or "method" in chosen:
            raise UserError("set the preference loss with --preference_loss and the method with --method, not in "
                            "--hyperparameters")
        preference, train, lora = typed_preference_hyperparameters({**chosen, "method": method,
                                                                    "loss": preference_loss})
        check_train_args(train, method)
        return train, lora, chosen, preference
    train, lora = typed_hyperparameters(chosen, method)
    check_train_args(train, method)
    return train, lora, chosen, None


# ---- training -------------------------------------------------------------------------------------------------------
def run_dir(settings: StudySettings, variant: Variant, seed: int) -> Path:
    return settings.out_dir / variant.name / f"seed-{seed}"


def run_data(plan: Plan, variant: Variant, seed: int) -> Path:
    """The run's prepared data: the variant's data dir, or the draw of --draw_rows examples from it with `seed`."""
    if variant.draw_rows is None:
        return variant.data_dir
    destination = plan.settings.out_dir / "drawn" / variant.name / f"seed-{seed}"
    log(f"=== {variant.name}: drawing {variant.draw_rows} examples of {variant.data_dir} with seed {seed}")
    mix([variant.data_dir], destination, counts=[variant.draw_rows], seed=seed, name=variant.name)
    return destination


def budget_steps(token_budget: int, batch_size: int, examples: Sequence[dict]) -> int:
    """Steps whose batches of `batch_size` examples hold about `token_budget` tokens (prompt and answer)."""
    mean_tokens = sum(len(e["input_ids"]) for e in examples) / max(len(examples), 1)
    return max(1, round(token_budget / (batch_size * max(mean_tokens, 1.0))))


def train_run(plan: Plan, variant: Variant, seed: int, data_dir: Path, examples: Sequence[dict]) -> dict:
    """Trains one run (with --resume: reuses its finished run, continues an unfinished one); the run summary."""
    train = replace(plan.train, order=variant.order, seed=seed)
    if variant.epochs is not None:
        train = replace(train, epochs=variant.epochs)
    if plan.settings.token_budget is not None:
        train = replace(train, max_iters=budget_steps(plan.settings.token_budget, train.batch_size, examples))
    objective = None if plan.preference is None else PreferenceObjective(plan.preference, lora=plan.lora is not None)
    return finetune(plan.settings.method, plan.checkpoint_dir, data_dir, run_dir(plan.settings, variant, seed), train,
                    plan.lora, "auto" if plan.settings.resume else None, objective=objective)


def load_finetuned(checkpoint_dir: Path, run_dir: Path, method: str, device: torch.device, precision: Optional[str]):
    """The fine-tuned model of a run directory in eval mode, as generate/ loads it (LoRA merged into the base)."""
    if method == "full":
        return load(run_dir, device=device, precision=precision).model
    return load(checkpoint_dir, lora_path=run_dir, device=device, precision=precision).model


def load_examples(data_dir: Path, tokenizer: Optional[Tokenizer], format: str) -> tuple[list, list, dict]:
    """(train, test, manifest) of prepared data as instruction examples: preference pairs as their chosen answers'
    (`pair_as_instruction`: the held-out set, contamination and token counts see them so)."""
    train, test, manifest = load_prepared(data_dir, tokenizer, format=format)
    if format == PREFERENCE_FORMAT:
        train, test = ([pair_as_instruction(pair) for pair in pairs] for pairs in (train, test))
    return train, test, manifest


def example_tokens(example: dict) -> int:
    """Tokens that training on the example reads (a pair: both its rows)."""
    return example.get("pair_tokens", len(example["input_ids"]))


def load_variant_data(variants: Sequence[Variant], tokenizer: Tokenizer, format: str) -> dict[Path, tuple]:
    """data dir -> (train, test, manifest) of the variants' prepared data (each read once), in one prompt style."""
    data = {}
    for variant in variants:
        if variant.data_dir not in data:
            data[variant.data_dir] = load_examples(variant.data_dir, tokenizer, format)
    styles = {str(d): m.get("prompt_style") for d, (_, _, m) in data.items()}
    if len(set(styles.values())) > 1:
        raise UserError("the variants use different prompt styles (" + ", ".join(f"{d}: {s}" for d, s in
                        styles.items()) + "); prepare them with the same --prompt_style so one held-out set fits all")
    return data


# ---- one run: trained, then evaluated -------------------------------------------------------------------------------
def train_and_evaluate(plan: Plan, variant: Variant, seed: int, held_out: HeldOut, device: torch.device) -> dict:
    """Trains one run of a variant into out_dir/<variant>/seed-<seed>, evaluates it: its record in the comparison."""
    data_dir = run_data(plan, variant, seed)
    examples = load_examples(data_dir, None, plan.settings.data_format)[0]
    log(f"=== {variant.name} seed {seed}: training on {data_dir} (order {variant.order}"
        + (f", {variant.epochs} epoch(s))" if variant.epochs is not None else ")"))
    clock = time.perf_counter()
    summary = train_run(plan, variant, seed, data_dir, examples)
    train_seconds, clock = time.perf_counter() - clock, time.perf_counter()
    directory = run_dir(plan.settings, variant, seed)
    key = f"{held_out.fingerprint(plan.settings)}/{summary.get('steps')}/{summary.get('weights_from_step')}"
    evaluation = cached_evaluation(directory, key) if plan.settings.resume else None
    if evaluation is None:
        log(f"=== {variant.name} seed {seed}: evaluating")
        model = load_finetuned(plan.checkpoint_dir, directory, plan.settings.method, device, plan.train.precision)
        evaluation = evaluate_model(model, held_out, plan.settings)
        del model
        atomic_write_json(directory / EVALUATION_FILE, {"key": key, "evaluation": evaluation})
    mean_tokens = sum(example_tokens(e) for e in examples) / max(len(examples), 1)
    steps = summary.get("steps") or 0
    return {
        "seed": seed, "run_dir": str(directory), "data_dir": str(data_dir), "train_examples": len(examples),
        "cut_share": sum(bool(e.get("truncated")) for e in examples) / max(len(examples), 1),
        "tokens_read": round(steps * plan.train.batch_size * mean_tokens),
        "epochs": variant.epochs if variant.epochs is not None else round(summary.get("epochs", 0), 2),
        "steps": summary.get("steps"), "final_train_loss": summary.get("final_train_loss"),
        "best_val_loss": summary.get("best_val_loss"), "weights_from_step": summary.get("weights_from_step"),
        "epoch_curve": epoch_curve(directory), "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - clock, 1), "evaluation": evaluation,
    }


def cached_evaluation(directory: Path, key: str) -> Optional[dict]:
    """The evaluation an earlier comparison stored for this run, if it evaluated the same weights on the same set."""
    path = directory / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return stored.get("evaluation") if stored.get("key") == key else None


def untrained_rows(plan: Plan, held_out: HeldOut, device: torch.device) -> list[dict]:
    """The base checkpoint untrained (in the variants' chat format) and the instruction-tuned reference model (in
    its own), each evaluated once: rows for scale, not arms (no seeds, no tests)."""
    rows = []
    settings = plan.settings
    if settings.base_row:
        log(f"=== evaluating the untrained base {plan.checkpoint_dir}")
        model = load(plan.checkpoint_dir, device=device, precision=plan.train.precision).model
        rows.append({"name": "base (untrained)", "role": "base", "data_dir": None, "checkpoint_dir":
                     str(plan.checkpoint_dir), "runs": [{"seed": None, "evaluation": evaluate_model(
                         model, held_out, settings)}]})
        del model
    if settings.reference_checkpoint_dir is not None:
        log(f"=== evaluating the instruction-tuned reference {settings.reference_checkpoint_dir}")
        loaded = load(settings.reference_checkpoint_dir, device=device, precision=plan.train.precision)
        # its losses are comparable only in the same tokens and chat format
        same = (loaded.tokenizer.fingerprint == held_out.tokenizer.fingerprint
                and loaded.style.name == held_out.style.name)
        evaluation = evaluate_model(loaded.model, held_out, settings, loaded.style, loaded.tokenizer, same)
        rows.append({"name": f"{settings.reference_checkpoint_dir.name} (instruction-tuned reference)",
                     "role": "reference", "data_dir": None, "checkpoint_dir": str(settings.reference_checkpoint_dir),
                     "prompt_style": loaded.style.name, "losses_comparable": same,
                     "runs": [{"seed": None, "evaluation": evaluation}]})
        del loaded
    return rows


# ---- the comparison -------------------------------------------------------------------------------------------------
def compare(plan: Plan, study: Optional[dict] = None, started: Optional[float] = None) -> dict:
    """Trains every run of the plan, evaluates each on the common held-out set, writes comparison.md/.png/.json.
    `study`: what a recipe run adds to the report (its question, build commands, machine); `started`: the
    perf_counter the wall time counts from (default: now). Returns the comparison (what comparison.json holds)."""
    started = time.perf_counter() if started is None else started
    settings = plan.settings
    if settings.eval_path is not None and not settings.eval_path.exists():
        raise UserError(f"--eval_path {settings.eval_path}: no such file or directory")
    for name, path in settings.reference_sets.items():  # a recipe may build them: checked once the data is there
        if not path.exists():
            raise UserError(f"--reference_sets {name}: {path}: no such file or directory")
    tokenizer = Tokenizer(plan.checkpoint_dir)
    data = load_variant_data(plan.variants, tokenizer, settings.data_format)
    manifests = [m for _, _, m in data.values()]
    prompt_style = manifests[0].get("prompt_style") or "alpaca"
    max_seq_length = max(m.get("max_seq_length") or 0 for m in manifests) or 2048
    held_out = held_out_set(settings, tokenizer, prompt_style, max_seq_length,
                            {str(d): test for d, (_, test, _) in data.items()})
    leaks = warn_of_contamination(data, held_out)
    device, _ = device_and_dtype(None, plan.train.precision)
    arms = []
    for variant in plan.variants:
        runs = [train_and_evaluate(plan, variant, seed, held_out, device) for seed in variant.seeds]
        arms.append({"name": variant.name, "role": variant.role, "data_dir": str(variant.data_dir),
                     "order": variant.order, "epochs": variant.epochs, "draw_rows": variant.draw_rows,
                     "seeds": variant.seeds, "contaminated": {name: len(found) for name, found in
                                                              leaks[str(variant.data_dir)].items()},
                     "runs": runs})
    arms += untrained_rows(plan, held_out, device)
    judge_info = None
    if settings.judge_checkpoint_dir is not None and len(arms) > 1 and held_out.prompts:
        judge_info = judge_arms(settings.judge_checkpoint_dir, arms, held_out.prompts, device)
    comparison = {"checkpoint_dir": str(plan.checkpoint_dir), "method": settings.method,
                  "preference": asdict(plan.preference) if plan.preference is not None else None,
                  "hyperparameters": plan.hyperparameters, "seeds": settings.seeds,
                  "token_budget": settings.token_budget, "batch_size": plan.train.batch_size,
                  "max_seq_length": max_seq_length, "eval_set": held_out.eval_set.description,
                  "reference_sets": held_out.descriptions, "prompts": held_out.prompts,
                  "max_new_tokens": settings.max_new_tokens, "ifeval_prompts": len(held_out.ifeval),
                  "ifeval_max_new_tokens": settings.ifeval_max_new_tokens, "judge": judge_info,
                  "statistics": study_statistics(arms, settings.primary_metric), "arms": arms,
                  "contamination": {d: {name: [{"held_out": i, "train": j, "rouge_l": round(s, 3)} for i, j, s in found]
                                        for name, found in sets.items()} for d, sets in leaks.items()},
                  "study": study, "wall_seconds": round(time.perf_counter() - started, 1)}
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings.out_dir / "comparison.json", json.dumps(comparison, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(settings.out_dir / "comparison.md", markdown_report(comparison))
    plot_comparison(comparison, settings.out_dir / "comparison.png")
    return comparison


def epoch_curve(run_dir: Path) -> list[dict]:
    """The run's per-epoch train and val losses (overfitting_summary.json), [] if it wrote none."""
    path = Path(run_dir) / "overfitting_summary.json"
    return json.loads(path.read_text()).get("per_epoch", []) if path.is_file() else []
