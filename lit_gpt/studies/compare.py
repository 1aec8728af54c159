"""Comparing dataset variants (`scripts/compare_datasets.py`): which data makes the better fine-tune?

Every variant (a prepared data directory x a training order x a number of epochs) is trained from the same
checkpoint with the same hyperparameters and seed by the one training loop (`lit_gpt.train.loop.finetune`, with the
library's defaults, TrainArgs and LoRAConfig, the values finetune/lora.py and finetune/full.py ship with), in-process,
one after the other, into out_dir/<variant>/. Then each fine-tuned model is evaluated on one common held-out set:

- eval loss (reference-answer loss): mean NLL of the response tokens of the held-out examples that have a reference
  answer, tokenized with the variants' tokenizer and prompt style (`lit_gpt.eval.reference_loss`);
- IFEval (with --ifeval_prompts): the 541 (or the first N) IFEval prompts answered greedily in the chat format and
  scored by lm-eval's rule checkers (`lit_gpt.eval.ifeval`): prompt- and instruction-level accuracy, strict and loose;
- EOS rate: the share of greedy answers to held-out prompts that end with a stop token within max_new_tokens (a
  model that never stops has not learned the answer format);
- win rate (with a judge checkpoint): for each prompt a judge model compares the variant's answer with the first
  variant's (the baseline) and names the better one, asked twice with the answers in both positions, because small
  judges prefer a position; the judge's expected choice from its digit probabilities (`lit_gpt.quality.judge.Judge`) is
  averaged over the two orders. p > 0.5 + TIE_BAND is a win, p < 0.5 - TIE_BAND a loss, else a tie (half a win).

The held-out set is --eval_path (a prepared data directory's test.pt, or a JSON/JSONL file of instruction rows:
the data pipeline's layouts, or Vicuna's {"text"}, Self-Instruct's {"instruction", "instances": [{"input",
"output"}]}, MT-bench's {"turns"}; rows without an answer count for the EOS rate and the judge only); by default
the union of the variants' test sets. Contamination check: held-out prompts that near-duplicate a variant's training
examples (ROUGE-L >= 0.7 as `lit_gpt.data.mixing` defines it) are counted and warned about: they flatter that variant.
Every variant after the first also gets its difference from the first with a paired 95% bootstrap interval over the
same prompts / answers (`lit_gpt.eval.bootstrap`): IFEval prompt-level strict and loose accuracy, and the per-answer
mean NLL. An interval that contains 0 is reported as "no significant difference".
Results: comparison.md (a markdown table), comparison.png, comparison.json (numbers and every answer).

`plan_comparison` checks every setting before any data is loaded (a recipe builds its data after that); `compare`
then runs the plan: data, held-out set, contamination, one variant after the other, the judge, the files.
"""

import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional, Sequence

import torch

from lit_gpt.checkpoint import check_checkpoint_dir
from lit_gpt.studies.pairwise import PAIRWISE_PROMPT, differences_from_baseline, pairwise_preference, win_rate
from lit_gpt.studies.report import CONTAMINATION_THRESHOLD, TIE_BAND, markdown_report, plot_comparison
from lit_gpt.data.mixing import instruction_key
from lit_gpt.data.similarity import NearDuplicateFinder
from lit_gpt.data.order import check_order
from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.tokenize import tokenize_examples
from lit_gpt.eval import ifeval
from lit_gpt.eval.held_out import eval_rows
from lit_gpt.eval.reference_loss import reference_loss
from lit_gpt.eval.run import run_ifeval
from lit_gpt.infer.answer import answer_prompts
from lit_gpt.infer.load import load
from lit_gpt.lora import LoRAConfig
from lit_gpt.precision import device_and_dtype
from lit_gpt.prompts.base import PromptStyle
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.quality.judge import Judge
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.train.args import TrainArgs, check_train_args, typed_hyperparameters
from lit_gpt.train.loop import finetune
from lit_gpt.train.state import checkpoint_steps
from lit_gpt.utils import UserError, atomic_write_text, check_output, log


def _setting(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class StudySettings:
    """A comparison's own settings, one default each (scripts/compare_datasets.py has a flag per field); the training
    hyperparameters are finetune/<method>.py's (TrainArgs, LoRAConfig), the same for every variant."""

    out_dir: Path = _setting(Path("out/compare"), "one subdirectory per variant, plus comparison.md/.png/.json")
    orders: list[str] = field(default_factory=lambda: ["shuffle"], metadata={
        "help": "training orders to compare, e.g. shuffle by_length_asc"})
    epochs: list[Optional[int]] = field(default_factory=lambda: [None], metadata={
        "help": "epoch counts to compare, e.g. 1 3 (None: finetune/<method>.py's; with --max_iters alone, that many "
                "steps)"})
    eval_path: Optional[Path] = _setting(None, "held-out set: a prepared data directory (its test.pt) or a JSON/JSONL "
                                               "file of instructions (with or without answers); None: the union of "
                                               "the variants' test sets")
    judge_checkpoint_dir: Optional[Path] = _setting(None, "a model that judges answers pairwise (win rate against "
                                                          "the first variant)")
    method: Literal["lora", "full"] = _setting("lora", "lora or full fine-tuning (finetune/lora.py or "
                                                       "finetune/full.py defaults)")
    eval_prompts: int = _setting(40, "held-out prompts answered greedily (EOS rate, judge)")
    eval_examples: int = _setting(200, "held-out examples with a reference answer for the eval loss")
    max_new_tokens: int = _setting(128, "answer length limit for the EOS rate")
    ifeval_prompts: int = _setting(0, "IFEval prompts each variant answers (0: no IFEval; -1: all 541)")
    ifeval_max_new_tokens: int = _setting(1280, "IFEval's answer budget (1280 as lm-eval)")
    eval_batch_size: int = _setting(16, "prompts generated together, examples per loss batch")
    resume: bool = _setting(False, "reuse finished runs in out_dir and continue unfinished ones")
    seed: int = _setting(42, "seed of the held-out sample (answered prompts, loss examples) and the bootstrap "
                             "intervals")

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.eval_path = Path(self.eval_path) if self.eval_path is not None else None
        if self.judge_checkpoint_dir is not None:
            self.judge_checkpoint_dir = Path(self.judge_checkpoint_dir)
        if self.method not in ("lora", "full"):
            raise UserError(f"--method {self.method!r}: use lora or full")
        if (self.eval_prompts < 0 or self.eval_examples < 0 or self.max_new_tokens < 1 or self.ifeval_prompts < -1
                or self.eval_batch_size < 1 or self.ifeval_max_new_tokens < 1):
            raise UserError("--eval_prompts and --eval_examples must be >= 0, --ifeval_prompts >= -1 (-1: all), "
                            "--max_new_tokens, --ifeval_max_new_tokens and --eval_batch_size >= 1")


@dataclass
class Variant:
    name: str
    data_dir: Path
    order: str
    epochs: Optional[int]  # None: TrainArgs.epochs (max_iters alone decides the number of steps)


def make_variants(data_dirs: Sequence["str | Path"], orders: Sequence[str],
                  epochs: Sequence[Optional[int]] = (None,)) -> list[Variant]:
    """Every data dir x order x epochs; names say only what varies (alpaca, alpaca-by_length_asc, alpaca-3ep)."""
    if not data_dirs:
        raise UserError("--data_dirs: give at least one prepared data directory")

    for order in orders:
        check_order(order)
    for n in epochs:
        if n is not None and n < 1:
            raise UserError(f"--epochs {n}: must be >= 1")
    data_dirs = [Path(d) for d in data_dirs]
    base = [d.name for d in data_dirs]
    base = [f"{n}-{i + 1}" if base.count(n) > 1 else n for i, n in enumerate(base)]
    variants = []
    for name, data_dir in zip(base, data_dirs):
        for order in orders:
            for n in epochs:
                parts = [name] + ([order] if len(orders) > 1 else []) + ([f"{n}ep"] if len(epochs) > 1 else [])
                variants.append(Variant("-".join(parts), data_dir, order, n))
    return variants


# a study trains with finetune/<method>.py's defaults except these: no sample answer at every validation (the
# variants train faster); --hyperparameters '{"sample_max_new_tokens": 64}' brings it back
STUDY_TRAIN_ARGS = TrainArgs(sample_max_new_tokens=0)


@dataclass
class Plan:
    """A checked comparison (`plan_comparison`): what `compare` runs."""
    checkpoint_dir: Path
    variants: list[Variant]
    settings: StudySettings
    train: TrainArgs  # every variant's, but its order and epochs
    lora: Optional[LoRAConfig]  # None: full fine-tuning
    hyperparameters: dict  # what the study sets (the report lists them); the rest are finetune/<method>.py's


# ---- checks: every setting, before any data is loaded -------------------------------------------------------------
def plan_comparison(checkpoint_dir: "str | Path", data_dirs: Sequence["str | Path"],
                    settings: Optional[StudySettings] = None, hyperparameters: Optional[dict] = None) -> Plan:
    """The comparison with every setting checked: the checkpoint, the variants (data dirs, orders, epochs), the
    training hyperparameters (names of finetune/<method>.py's constants, the same for every variant), the judge and
    the runs an earlier comparison left in out_dir. Reads no data."""
    settings = settings or StudySettings()
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    variants = make_variants(data_dirs, settings.orders, settings.epochs)
    train, lora, chosen = study_training(settings.method, hyperparameters or {})
    judge = settings.judge_checkpoint_dir
    if judge is not None and not judge.is_dir():
        raise UserError(f"--judge_checkpoint_dir {judge}: no such directory (a converted checkpoint, e.g. "
                        "checkpoints/ORG/NAME)")
    check_output(settings.out_dir, {"--checkpoint_dir": checkpoint_dir, "--data_dirs": [v.data_dir for v in variants],
                                    "--eval_path": settings.eval_path, "--judge_checkpoint_dir": judge}, "--out_dir")
    if not settings.resume:
        for variant in variants:
            if checkpoint_steps(settings.out_dir / variant.name):
                raise UserError(f"{settings.out_dir / variant.name}: holds a run of an earlier comparison; pass "
                                "--resume true to reuse finished runs (and continue unfinished ones), or choose "
                                "another --out_dir")
    return Plan(checkpoint_dir, variants, settings, train, lora, chosen)


def study_training(method: str, hyperparameters: dict) -> tuple[TrainArgs, Optional[LoRAConfig], dict]:
    """(TrainArgs, LoRAConfig, what the study sets): STUDY_TRAIN_ARGS' changes to the defaults, then
    `hyperparameters` (names of finetune/<method>.py's constants), checked as finetune() checks them."""
    for fixed in ("order", "epochs"):
        if fixed in hyperparameters:
            raise UserError(f"{fixed!r} is set per variant: use --{fixed}s instead of --hyperparameters")
    defaults, study = asdict(TrainArgs()), asdict(STUDY_TRAIN_ARGS)
    chosen = {name: value for name, value in study.items() if value != defaults[name]}
    chosen.update(hyperparameters)
    train, lora = typed_hyperparameters(chosen, method)
    check_train_args(train, method)
    return train, lora, chosen


# ---- training -------------------------------------------------------------------------------------------------------
def train_variant(plan: Plan, variant: Variant, run_dir: Path) -> dict:
    """Trains one variant (with --resume: reuses its finished run, continues an unfinished one); the run summary."""
    train = replace(plan.train, order=variant.order)
    if variant.epochs is not None:
        train = replace(train, epochs=variant.epochs)
    return finetune(plan.settings.method, plan.checkpoint_dir, variant.data_dir, run_dir, train, plan.lora,
                    "auto" if plan.settings.resume else None)


def load_finetuned(checkpoint_dir: Path, run_dir: Path, method: str, device: torch.device, precision: Optional[str]):
    """The fine-tuned model of a run directory in eval mode, as generate/ loads it (LoRA merged into the base)."""
    if method == "full":
        return load(run_dir, device=device, precision=precision).model
    return load(checkpoint_dir, lora_path=run_dir, device=device, precision=precision).model


# ---- the held-out set -----------------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    description: str
    prompts: list  # dicts with instruction, input and (maybe None) output
    scored: list  # prepared examples (input_ids, labels) of the prompts that have a reference answer


def build_eval_set(eval_path: Optional[Path], tokenizer, prompt_style: str, max_seq_length: int,
                   variant_tests: dict) -> EvalSet:
    if eval_path is None:  # the union of the variants' test sets, each instruction once
        seen, scored = set(), []
        for examples in variant_tests.values():
            for example in examples:
                if instruction_key(example) not in seen:
                    seen.add(instruction_key(example))
                    scored.append(example)
        names = ", ".join(variant_tests)
        description = f"union of the variants' test sets ({names}): {len(scored)} examples"
        return EvalSet(description, [_prompt(e) for e in scored], scored)
    eval_path = Path(eval_path)
    if eval_path.is_dir():
        _, test, manifest = load_prepared(eval_path, tokenizer)
        if manifest.get("prompt_style") != prompt_style:
            raise UserError(f"{eval_path}: prepared with prompt style {manifest.get('prompt_style')!r}, the variants "
                            f"with {prompt_style!r}; prepare it again with --prompt_style {prompt_style}")
        return EvalSet(f"{eval_path}/test.pt: {len(test)} examples", [_prompt(e) for e in test], test)
    rows = eval_rows(eval_path)
    with_answer = [{**r, "source": "eval", "id": f"eval-{i}"} for i, r in enumerate(rows) if r["output"]]
    for row in with_answer:
        if not row.get("messages"):
            row.pop("messages", None)
    scored, _ = tokenize_examples(with_answer, tokenizer, get_prompt_style(prompt_style), max_seq_length)
    return EvalSet(f"{eval_path}: {len(rows)} prompts, {len(scored)} with a reference answer", rows, scored)


def _prompt(example: dict) -> dict:
    return {"instruction": example["instruction"], "input": example.get("input", ""), "output": example.get("output")}


def load_variant_data(variants: Sequence[Variant], tokenizer: Tokenizer) -> dict[Path, tuple]:
    """data dir -> (train, test, manifest) of the variants' prepared data (each read once), in one prompt style."""
    data = {}
    for variant in variants:
        if variant.data_dir not in data:
            data[variant.data_dir] = load_prepared(variant.data_dir, tokenizer)
    styles = {str(d): m.get("prompt_style") for d, (_, _, m) in data.items()}
    if len(set(styles.values())) > 1:
        raise UserError("the variants use different prompt styles (" + ", ".join(f"{d}: {s}" for d, s in
                        styles.items()) + "); prepare them with the same --prompt_style so one held-out set fits all")
    return data


@dataclass
class HeldOut:
    """What every variant is evaluated on (`held_out_set`), in the variants' tokenizer and prompt style."""
    eval_set: EvalSet
    prompts: list[dict]  # answered greedily: the EOS rate and the judge
    scored: list[dict]  # examples with a reference answer: the eval loss
    ifeval: list  # IFEval prompts
    tokenizer: Tokenizer
    style: PromptStyle


def held_out_set(settings: StudySettings, tokenizer: Tokenizer, data: dict) -> HeldOut:
    """The held-out set and the seeded samples of it that are answered and scored."""
    ifeval_set = ifeval.load_prompts() if settings.ifeval_prompts else []
    if settings.ifeval_prompts > 0:
        ifeval_set = ifeval_set[:settings.ifeval_prompts]
    prompt_style = next(iter(data.values()))[2].get("prompt_style") or "alpaca"
    max_seq_length = max(m.get("max_seq_length") or 0 for _, _, m in data.values()) or None
    eval_set = build_eval_set(settings.eval_path, tokenizer, prompt_style, max_seq_length,
                              {str(d): test for d, (_, test, _) in data.items()})
    rng = random.Random(settings.seed)
    count = min(settings.eval_prompts, len(eval_set.prompts))
    prompts = [eval_set.prompts[i] for i in sorted(rng.sample(range(len(eval_set.prompts)), count))]
    scored = eval_set.scored
    if len(scored) > settings.eval_examples:
        sample = random.Random(settings.seed + 1).sample(range(len(scored)), settings.eval_examples)
        scored = [scored[i] for i in sorted(sample)]
    log(f"held-out set: {eval_set.description}; {len(prompts)} prompts answered, {len(scored)} examples for the loss")
    return HeldOut(eval_set, prompts, scored, ifeval_set, tokenizer, get_prompt_style(prompt_style))


def contamination(train: Sequence[dict], prompts: Sequence[dict]) -> list[tuple[int, int, float]]:
    """(held-out index, train index, ROUGE-L) for held-out prompts whose instruction near-duplicates a training one."""
    pairs = NearDuplicateFinder("exact", CONTAMINATION_THRESHOLD).pairs(prompts, train)
    best: dict[int, tuple[int, int, float]] = {}
    for i, j, score in pairs:
        if i not in best or score > best[i][2]:
            best[i] = (i, j, score)
    return sorted(best.values())


def warn_of_contamination(data: dict, prompts: Sequence[dict]) -> dict[str, list]:
    """data dir -> `contamination` of its training examples by the held-out prompts; a warning for each found."""
    leaks = {}
    for data_dir, (train, _, _) in data.items():
        found = contamination(train, prompts)
        leaks[str(data_dir)] = found
        if found:
            i, j, score = found[0]
            log(f"warning: {data_dir}: {len(found)} of {len(prompts)} held-out prompts near-duplicate training "
                f"instructions (ROUGE-L >= {CONTAMINATION_THRESHOLD}), e.g. {prompts[i]['instruction'][:80]!r} ~ "
                f"{train[j]['instruction'][:80]!r} ({score:.2f}); its scores are optimistic")
    return leaks


# ---- evaluation -----------------------------------------------------------------------------------------------------
def ifeval_scores(model, tokenizer, style, prompts: Sequence, max_new_tokens: int, batch_size: int) -> dict:
    """IFEval of one variant: the four accuracies and the per-prompt verdicts a paired comparison resamples."""
    answers, result = run_ifeval(model, tokenizer, style, prompts, max_new_tokens, batch_size)
    return {**result.metrics, "prompt_strict": result.prompt_strict, "prompt_loose": result.prompt_loose,
            "finished_share": sum(a.finished for a in answers) / len(answers), "responses": [a.text for a in answers]}


def train_and_evaluate(plan: Plan, variant: Variant, held_out: HeldOut, train_examples: int, contaminated: int,
                       device: torch.device) -> dict:
    """Trains one variant into out_dir/<variant>, evaluates it on the held-out set: its row of the comparison."""
    run_dir = plan.settings.out_dir / variant.name
    log(f"=== {variant.name}: training on {variant.data_dir} (order {variant.order}"
        + (f", {variant.epochs} epoch(s))" if variant.epochs is not None else ")"))
    clock = time.perf_counter()
    summary = train_variant(plan, variant, run_dir)
    train_seconds, clock = time.perf_counter() - clock, time.perf_counter()
    model = load_finetuned(plan.checkpoint_dir, run_dir, plan.settings.method, device, plan.train.precision)
    log(f"=== {variant.name}: evaluating")
    settings, tokenizer, style = plan.settings, held_out.tokenizer, held_out.style
    with torch.inference_mode():
        losses = (reference_loss(model, held_out.scored, micro_batch_size=settings.eval_batch_size)
                  if held_out.scored else None)
        answers = [{"answer": a.text, "finished": a.finished}
                   for a in answer_prompts(model, tokenizer, style, held_out.prompts, settings.max_new_tokens,
                                           batch_size=settings.eval_batch_size)]
        ifeval_result = ifeval_scores(model, tokenizer, style, held_out.ifeval, settings.ifeval_max_new_tokens,
                                      settings.eval_batch_size) if held_out.ifeval else None
    del model
    return {
        "variant": variant.name, "data_dir": str(variant.data_dir), "order": variant.order,
        "epochs": variant.epochs if variant.epochs is not None else round(summary.get("epochs", 0), 2),
        "train_examples": train_examples, "steps": summary.get("steps"),
        "final_train_loss": summary.get("final_train_loss"), "best_val_loss": summary.get("best_val_loss"),
        "eval_loss": losses.mean_nll if losses else None,
        "answer_nll": losses.per_example_mean() if losses else None,
        "ifeval": ifeval_result,
        "eos_rate": sum(a["finished"] for a in answers) / len(answers) if answers else None,
        "contaminated_prompts": contaminated,
        "weights_from_step": summary.get("weights_from_step"), "epoch_curve": epoch_curve(run_dir),
        "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.perf_counter() - clock, 1),
        "answers": answers, "run_dir": str(run_dir),
    }


# ---- the comparison -------------------------------------------------------------------------------------------------
def compare(plan: Plan, study: Optional[dict] = None, started: Optional[float] = None) -> dict:
    """Trains every variant of the plan, evaluates each on the common held-out set, writes comparison.md/.png/.json.
    `study`: what a recipe run adds to the report (its question, build commands, machine); `started`: the
    perf_counter the wall time counts from (default: now). Returns the comparison (what comparison.json holds)."""
    started = time.perf_counter() if started is None else started
    settings = plan.settings
    if settings.eval_path is not None and not settings.eval_path.exists():
        raise UserError(f"--eval_path {settings.eval_path}: no such file or directory")
    tokenizer = Tokenizer(plan.checkpoint_dir)
    data = load_variant_data(plan.variants, tokenizer)
    held_out = held_out_set(settings, tokenizer, data)
    leaks = warn_of_contamination(data, held_out.eval_set.prompts)
    device, _ = device_and_dtype(None, plan.train.precision)
    rows = [train_and_evaluate(plan, variant, held_out, len(data[variant.data_dir][0]),
                               len(leaks[str(variant.data_dir)]), device) for variant in plan.variants]
    differences_from_baseline(rows, settings.seed)
    judge_info = None
    if settings.judge_checkpoint_dir is not None and len(rows) > 1 and held_out.prompts:
        judge_info = _judge_all(settings.judge_checkpoint_dir, rows, held_out.prompts, device)
    comparison = {"checkpoint_dir": str(plan.checkpoint_dir), "method": settings.method,
                  "hyperparameters": plan.hyperparameters, "eval_set": held_out.eval_set.description,
                  "prompts": held_out.prompts, "max_new_tokens": settings.max_new_tokens,
                  "ifeval_prompts": len(held_out.ifeval), "ifeval_max_new_tokens": settings.ifeval_max_new_tokens,
                  "eval_examples": len(held_out.scored), "judge": judge_info, "variants": rows,
                  "contamination": {d: [{"held_out": i, "train": j, "rouge_l": round(s, 3)} for i, j, s in found]
                                    for d, found in leaks.items()},
                  "study": study, "wall_seconds": round(time.perf_counter() - started, 1)}
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings.out_dir / "comparison.json", json.dumps(comparison, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(settings.out_dir / "comparison.md", markdown_report(comparison))
    plot_comparison(rows, settings.out_dir / "comparison.png")
    return comparison


def epoch_curve(run_dir: Path) -> list[dict]:
    """The run's per-epoch train and val losses (overfitting_summary.json), [] if it wrote none."""
    path = Path(run_dir) / "overfitting_summary.json"
    return json.loads(path.read_text()).get("per_epoch", []) if path.is_file() else []


def _judge_all(judge_checkpoint_dir, rows: list[dict], prompts: list[dict], device: torch.device) -> dict:
    judge_model = load(judge_checkpoint_dir, device=device)
    model, tokenizer, style = judge_model.model, judge_model.tokenizer, judge_model.style
    judge = Judge(model, tokenizer, style, rating=PAIRWISE_PROMPT)
    baseline = rows[0]
    log(f"=== judging every variant against {baseline['variant']} with {judge_checkpoint_dir}")
    for row in rows[1:]:
        preferences = pairwise_preference(judge, prompts, [a["answer"] for a in baseline["answers"]],
                                          [a["answer"] for a in row["answers"]])
        row.update(win_rate(preferences))
        for answer, preference in zip(row["answers"], preferences):
            answer["p_better_than_baseline"] = preference["p_b_better"]
    del model
    return {"checkpoint_dir": str(judge_checkpoint_dir), "baseline": baseline["variant"], "tie_band": TIE_BAND,
            "prompt": PAIRWISE_PROMPT.request}
