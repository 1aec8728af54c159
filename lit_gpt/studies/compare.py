"""Comparing dataset variants (`scripts/compare_datasets.py`): which data makes the better fine-tune?

Every variant (a prepared data directory x a training order x a number of epochs) is trained from the same
checkpoint with the same hyperparameters and seed by the one training loop (`lit_gpt.train.cli.run_script`, with
the library's default hyperparameters, the values finetune/lora.py and finetune/full.py ship with), in-process,
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
"""

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from lit_gpt.checkpoint import check_checkpoint_dir
from lit_gpt.studies.report import CONTAMINATION_THRESHOLD, TIE_BAND, markdown_report, plot_comparison
from lit_gpt.data.mixing import instruction_key
from lit_gpt.data.similarity import NearDuplicateFinder
from lit_gpt.data.order import check_order
from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.tokenize import tokenize_examples
from lit_gpt.eval import ifeval
from lit_gpt.eval.held_out import eval_rows
from lit_gpt.eval.bootstrap import paired_bootstrap
from lit_gpt.eval.reference_loss import reference_loss
from lit_gpt.eval.run import run_ifeval
from lit_gpt.infer.answer import answer_prompts
from lit_gpt.infer.load import find_lora, load_finetuned_model, load_merged_lora_model, load_model_for_inference
from lit_gpt.precision import device_and_dtype
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.quality.judge import Judge, RatingPrompt
from lit_gpt.quality.rows import ScoringRow
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.train.cli import default_hyperparameters, run_script
from lit_gpt.train.state import checkpoint_steps
from lit_gpt.utils import UserError, atomic_write_text, log

COMPARE_DEFAULTS = {"sample_max_new_tokens": 0}  # no sample answer at every validation: variants train faster

PAIRWISE_PROMPT = RatingPrompt(
    name="pairwise",
    request=(
        "You are comparing two AI assistant responses to the same instruction. Decide which one follows the "
        "instruction better: more accurate, more helpful, complete and to the point.\n\n"
        "[Instruction]\n{instruction}\n\n[Input]\n{input}\n\n{response}\n\n"
        "Which response is better? Write only its number, 1 or 2. Do not let the order, the length or the style of "
        "the responses sway you."),
    low=1, high=2, answer_prefix="Better response:")


@dataclass
class Variant:
    name: str
    data_dir: Path
    order: str
    epochs: Optional[int]  # None: the script's epochs (max_iters alone decides the number of steps)


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


# ---- training -------------------------------------------------------------------------------------------------------
def train_variant(method: str, checkpoint_dir: Path, variant: Variant, run_dir: Path, hyperparameters: dict,
                  resume: bool) -> dict:
    overrides = {**hyperparameters, "order": variant.order}
    if variant.epochs is not None:
        overrides["epochs"] = variant.epochs
    return run_script(method, default_hyperparameters(method), checkpoint_dir, variant.data_dir, run_dir,
                      "auto" if resume else None, overrides)


def load_finetuned(checkpoint_dir: Path, run_dir: Path, method: str, device: torch.device, dtype: torch.dtype):
    """The fine-tuned model of a run directory in eval mode, as generate/ loads it (LoRA merged into the base)."""
    if method == "full":
        return load_finetuned_model(run_dir, device=device, dtype=dtype)
    return load_merged_lora_model(find_lora(run_dir, checkpoint_dir), device=device, dtype=dtype)


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


def contamination(train: Sequence[dict], prompts: Sequence[dict]) -> list[tuple[int, int, float]]:
    """(held-out index, train index, ROUGE-L) for held-out prompts whose instruction near-duplicates a training one."""
    pairs = NearDuplicateFinder("exact", CONTAMINATION_THRESHOLD).pairs(prompts, train)
    best: dict[int, tuple[int, int, float]] = {}
    for i, j, score in pairs:
        if i not in best or score > best[i][2]:
            best[i] = (i, j, score)
    return sorted(best.values())


# ---- evaluation -----------------------------------------------------------------------------------------------------
def ifeval_scores(model, tokenizer, style, prompts: Sequence, max_new_tokens: int, batch_size: int) -> dict:
    """IFEval of one variant: the four accuracies and the per-prompt verdicts a paired comparison resamples."""
    answers, result = run_ifeval(model, tokenizer, style, prompts, max_new_tokens, batch_size)
    return {**result.metrics, "prompt_strict": result.prompt_strict, "prompt_loose": result.prompt_loose,
            "finished_share": sum(a.finished for a in answers) / len(answers), "responses": [a.text for a in answers]}


def differences_from_baseline(rows: list[dict], seed: int) -> None:
    """Adds each later variant's paired bootstrap difference from the first (rows[0]) to its row."""
    baseline = rows[0]
    for row in rows[1:]:
        diffs = {}
        if baseline.get("ifeval") and row.get("ifeval"):
            for key in ("prompt_strict", "prompt_loose"):
                diffs[f"ifeval_{key}"] = paired_bootstrap(
                    [float(v) for v in baseline["ifeval"][key]], [float(v) for v in row["ifeval"][key]],
                    seed=seed).to_dict()
        if baseline.get("answer_nll") and row.get("answer_nll"):
            diffs["answer_nll"] = paired_bootstrap(baseline["answer_nll"], row["answer_nll"], seed=seed).to_dict()
        row["vs_baseline"] = diffs


def pairwise_preference(judge: Judge, prompts: Sequence[dict], answers_a: Sequence[str], answers_b: Sequence[str],
                        batch_size: int = 4) -> list[dict]:
    """Per prompt: the judge's probability that answer b is better than answer a, asked in both orders."""

    def pair(prompt: dict, first: str, second: str, index: int) -> ScoringRow:
        both = f"[Response 1]\n{first.strip() or '(empty)'}\n\n[Response 2]\n{second.strip() or '(empty)'}"
        return ScoringRow(index, prompt["instruction"], prompt.get("input") or "", both)

    results = []
    for start in range(0, len(prompts), batch_size):
        chunk = range(start, min(start + batch_size, len(prompts)))
        b_second = judge.score([pair(prompts[i], answers_a[i], answers_b[i], i) for i in chunk])
        b_first = judge.score([pair(prompts[i], answers_b[i], answers_a[i], i) for i in chunk])
        for r2, r1 in zip(b_second, b_first):
            # score 1 = "response 1 is better", 2 = "response 2"; in [1, 2] as an expectation
            p_second = None if r2["score"] is None else r2["score"] - 1
            p_first = None if r1["score"] is None else 2 - r1["score"]
            known = [p for p in (p_second, p_first) if p is not None]
            results.append({"p_b_better": sum(known) / len(known) if known else None,
                            "b_second": p_second, "b_first": p_first})
    return results


def win_rate(preferences: Sequence[dict]) -> dict:
    values = [p["p_b_better"] for p in preferences if p["p_b_better"] is not None]
    wins = sum(v > 0.5 + TIE_BAND for v in values)
    losses = sum(v < 0.5 - TIE_BAND for v in values)
    ties = len(values) - wins - losses
    consistent = sum((p["b_second"] > 0.5) == (p["b_first"] > 0.5) for p in preferences
                     if p["b_second"] is not None and p["b_first"] is not None)
    return {"win_rate": (wins + 0.5 * ties) / len(values) if values else None, "wins": wins, "ties": ties,
            "losses": losses, "mean_preference": sum(values) / len(values) if values else None,
            "order_consistent": consistent / len(values) if values else None}


# ---- the comparison -------------------------------------------------------------------------------------------------
def compare(
    checkpoint_dir: "str | Path",
    data_dirs: Sequence["str | Path"],
    out_dir: "str | Path" = Path("out/compare"),
    orders: Sequence[str] = ("shuffle",),
    epochs: Sequence[Optional[int]] = (None,),
    eval_path: Optional["str | Path"] = None,
    judge_checkpoint_dir: Optional["str | Path"] = None,
    method: str = "lora",
    hyperparameters: Optional[dict] = None,
    eval_prompts: int = 40,
    eval_examples: int = 200,
    max_new_tokens: int = 128,
    resume: bool = False,
    seed: int = 42,
    ifeval_prompts: int = 0,
    ifeval_max_new_tokens: int = 1280,
    batch_size: int = 16,
    study: Optional[dict] = None,
    started: Optional[float] = None,
) -> dict:
    """Trains every variant, evaluates each on the common held-out set, writes comparison.md/.png/.json.
    `study`: what a recipe run adds to the report (its question, build commands, machine); `started`: the
    perf_counter the wall time counts from (default: now). Returns the comparison (what comparison.json holds)."""
    started = time.perf_counter() if started is None else started
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    out_dir = Path(out_dir)
    if eval_prompts < 0 or eval_examples < 0 or max_new_tokens < 1 or ifeval_prompts < -1 or batch_size < 1:
        raise UserError("--eval_prompts and --eval_examples must be >= 0, --ifeval_prompts >= -1 (-1: all), "
                        "--max_new_tokens and --eval_batch_size >= 1")
    ifeval_set = ifeval.load_prompts() if ifeval_prompts else []
    if ifeval_prompts > 0:
        ifeval_set = ifeval_set[:ifeval_prompts]
    variants = make_variants(data_dirs, orders, epochs)
    tokenizer = Tokenizer(checkpoint_dir)
    data = {}
    for variant in variants:
        if variant.data_dir not in data:
            data[variant.data_dir] = load_prepared(variant.data_dir, tokenizer)
    styles = {str(d): m.get("prompt_style") for d, (_, _, m) in data.items()}
    if len(set(styles.values())) > 1:
        raise UserError("the variants use different prompt styles (" + ", ".join(f"{d}: {s}" for d, s in
                        styles.items()) + "); prepare them with the same --prompt_style so one held-out set fits all")
    prompt_style = next(iter(styles.values())) or "alpaca"
    max_seq_length = max(m.get("max_seq_length") or 0 for _, _, m in data.values()) or None
    for variant in variants:
        run_dir = out_dir / variant.name
        if not resume and checkpoint_steps(run_dir):
            raise UserError(f"{run_dir}: holds a run of an earlier comparison; pass --resume true to reuse finished "
                            "runs (and continue unfinished ones), or choose another --out_dir")

    eval_set = build_eval_set(eval_path, tokenizer, prompt_style, max_seq_length,
                              {str(d): test for d, (_, test, _) in data.items()})
    rng = random.Random(seed)
    prompt_index = sorted(rng.sample(range(len(eval_set.prompts)), min(eval_prompts, len(eval_set.prompts))))
    prompts = [eval_set.prompts[i] for i in prompt_index]
    scored = eval_set.scored
    if len(scored) > eval_examples:
        scored = [scored[i] for i in sorted(random.Random(seed + 1).sample(range(len(scored)), eval_examples))]
    log(f"held-out set: {eval_set.description}; {len(prompts)} prompts answered, {len(scored)} examples for the loss")

    leaks = {}
    for data_dir, (train, _, _) in data.items():
        found = contamination(train, eval_set.prompts)
        leaks[str(data_dir)] = found
        if found:
            i, j, score = found[0]
            log(f"warning: {data_dir}: {len(found)} of {len(eval_set.prompts)} held-out prompts near-duplicate "
                 f"training instructions (ROUGE-L >= {CONTAMINATION_THRESHOLD}), e.g. "
                 f"{eval_set.prompts[i]['instruction'][:80]!r} ~ {train[j]['instruction'][:80]!r} ({score:.2f}); "
                 "its scores are optimistic")

    hyperparameters = {**COMPARE_DEFAULTS, **(hyperparameters or {})}
    if method not in ("lora", "full"):
        raise UserError(f"--method {method!r}: use lora or full")
    known = default_hyperparameters(method)
    unknown = sorted(k for k in hyperparameters if k not in known)
    if unknown:
        raise UserError(f"hyperparameters {unknown} are not constants of finetune/{method}.py; see its --help")
    for fixed in ("order", "epochs"):
        if fixed in hyperparameters:
            raise UserError(f"{fixed!r} is set per variant: use --{fixed}s instead of --hyperparameters")
    device, dtype = device_and_dtype(None, hyperparameters.get("precision"))
    style = get_prompt_style(prompt_style)
    rows = []
    for variant in variants:
        run_dir = out_dir / variant.name
        log(f"=== {variant.name}: training on {variant.data_dir} (order {variant.order}"
             + (f", {variant.epochs} epoch(s))" if variant.epochs is not None else ")"))
        clock = time.perf_counter()
        summary = train_variant(method, checkpoint_dir, variant, run_dir, hyperparameters, resume)
        train_seconds, clock = time.perf_counter() - clock, time.perf_counter()
        model = load_finetuned(checkpoint_dir, run_dir, method, device, dtype)
        log(f"=== {variant.name}: evaluating")
        with torch.inference_mode():
            losses = reference_loss(model, scored, micro_batch_size=batch_size) if scored else None
            answers = [{"answer": a.text, "finished": a.finished}
                       for a in answer_prompts(model, tokenizer, style, prompts, max_new_tokens,
                                               batch_size=batch_size)]
            ifeval_result = ifeval_scores(model, tokenizer, style, ifeval_set, ifeval_max_new_tokens,
                                          batch_size) if ifeval_set else None
        del model
        train, _, _ = data[variant.data_dir]
        rows.append({
            "variant": variant.name, "data_dir": str(variant.data_dir), "order": variant.order,
            "epochs": variant.epochs if variant.epochs is not None else round(summary.get("epochs", 0), 2),
            "train_examples": len(train), "steps": summary.get("steps"),
            "final_train_loss": summary.get("final_train_loss"), "best_val_loss": summary.get("best_val_loss"),
            "eval_loss": losses.mean_nll if losses else None,
            "answer_nll": losses.per_example_mean() if losses else None,
            "ifeval": ifeval_result,
            "eos_rate": sum(a["finished"] for a in answers) / len(answers) if answers else None,
            "contaminated_prompts": len(leaks[str(variant.data_dir)]),
            "weights_from_step": summary.get("weights_from_step"), "epoch_curve": epoch_curve(run_dir),
            "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.perf_counter() - clock, 1),
            "answers": answers, "run_dir": str(run_dir),
        })

    differences_from_baseline(rows, seed)
    judge_info = None
    if judge_checkpoint_dir is not None and len(rows) > 1 and prompts:
        judge_info = _judge_all(judge_checkpoint_dir, rows, prompts, device)
    comparison = {"checkpoint_dir": str(checkpoint_dir), "method": method, "hyperparameters": hyperparameters,
                  "eval_set": eval_set.description, "prompts": prompts, "max_new_tokens": max_new_tokens,
                  "ifeval_prompts": len(ifeval_set), "ifeval_max_new_tokens": ifeval_max_new_tokens,
                  "eval_examples": len(scored), "judge": judge_info, "variants": rows,
                  "contamination": {d: [{"held_out": i, "train": j, "rouge_l": round(s, 3)} for i, j, s in found]
                                    for d, found in leaks.items()},
                  "study": study, "wall_seconds": round(time.perf_counter() - started, 1)}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "comparison.json", json.dumps(comparison, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out_dir / "comparison.md", markdown_report(comparison))
    plot_comparison(rows, out_dir / "comparison.png")
    return comparison


def epoch_curve(run_dir: Path) -> list[dict]:
    """The run's per-epoch train and val losses (overfitting_summary.json), [] if it wrote none."""
    path = Path(run_dir) / "overfitting_summary.json"
    return json.loads(path.read_text()).get("per_epoch", []) if path.is_file() else []


def _judge_all(judge_checkpoint_dir, rows: list[dict], prompts: list[dict], device: torch.device) -> dict:
    model, tokenizer, style = load_model_for_inference(judge_checkpoint_dir, device=str(device))
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
