"""One evaluation run: the tasks of scripts/evaluate.py on one model, and the files it leaves.

Tasks:
- `ifeval`: the model answers IFEval's prompts in its chat format, greedily, with lm-eval's generation budget
  (1280 new tokens), batched; `lit_gpt.eval.ifeval` scores the answers with lm-eval's rule checkers.
- `reference_loss`: answer-token NLL of held-out reference answers (`lit_gpt.eval.reference_loss`).
- `harness`: any lm-eval harness task through `lit_gpt.eval.harness` (needs the task's data: network or local).

`results.json` holds every number with the settings and package versions (`EvalReport`), `results.md` a table,
`ifeval_responses.jsonl` the answers in IFEval's own response format (score them again with `--responses`) with each
prompt's verdicts, `reference_loss.jsonl` each answer's NLL. Files are written to temporary names and renamed.
"""

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional, Sequence

from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.tokenize import encode_prompt, tokenize_examples
from lit_gpt.eval import ifeval
from lit_gpt.eval.held_out import eval_rows, seeded_sample
from lit_gpt.eval.reference_loss import ReferenceLoss, reference_loss
from lit_gpt.infer.answer import continue_batch
from lit_gpt.infer.lookup import DRAFT_TOKENS
from lit_gpt.model import GPT
from lit_gpt.prompts.styles import PromptStyle
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError, atomic_write_json, atomic_write_text

TASKS = ("ifeval", "reference_loss", "harness")
IFEVAL_MAX_NEW_TOKENS = 1280  # lm-eval's ifeval task: max_gen_toks
IFEVAL_SAMPLE_SEED = 0  # evaluate.py --ifeval_sample N: the same N prompts for every model


@dataclass
class EvalReport:
    model: str
    prompt_style: str
    tasks: list
    settings: dict
    versions: dict
    ifeval: Optional[dict] = None  # lm-eval's four metric names, per-instruction-type accuracy, counts
    reference_loss: Optional[dict] = None  # mean_nll, perplexity, tokens, examples (per-example in the .jsonl)
    harness: Optional[dict] = None  # lm-eval's results per task
    seconds: dict = field(default_factory=dict)  # wall time per task

    def to_dict(self) -> dict:
        return asdict(self)


def parse_tasks(tasks: "str | Sequence[str]") -> list:
    names = [t for t in (tasks.replace(",", " ").split() if isinstance(tasks, str) else tasks) if t]
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise UserError(f"--tasks {' '.join(names) or '(none)'}: choose from {', '.join(TASKS)} "
                        "(e.g. --tasks \"ifeval reference_loss\")")
    return names


def check_task_inputs(tasks: Sequence[str], reference_data: Optional[Path], harness_tasks: Sequence[str]) -> None:
    """What each task needs besides the model (checked before the model is loaded)."""
    if "reference_loss" in tasks and reference_data is None:
        raise UserError("--tasks reference_loss needs --reference_data: a prepared dataset dir or a JSON/JSONL file "
                        "of instructions with reference answers (e.g. ../shared/datasets/alpaca_gpt4/sample_999.json)")
    if reference_data is not None and not Path(reference_data).exists():
        raise UserError(f"--reference_data {reference_data}: no such file or directory")
    if "harness" in tasks and not harness_tasks:
        raise UserError("--tasks harness needs --harness_tasks (e.g. \"arc_easy hellaswag\")")


def versions() -> dict:
    found = {"python": platform.python_version()}
    for package in ("torch", "lm-eval", "nltk", "transformers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


# ---- ifeval -------------------------------------------------------------------------------------------------------
def ifeval_answers(model: GPT, tokenizer: Tokenizer, style: PromptStyle, prompts: Sequence, max_new_tokens: int,
                   batch_size: int, prompt_lookup: int = DRAFT_TOKENS) -> list:
    """The model's greedy answer (`Answer`: text, and whether it ended before the budget) to each IFEval prompt, a
    single user turn in its chat format (prompt_lookup: draft tokens per step, `lit_gpt.infer.lookup`)."""
    device = next(model.parameters()).device
    ids = [encode_prompt(tokenizer, style, p.prompt, device=device) for p in prompts]
    return continue_batch(model, tokenizer, ids, max_new_tokens, batch_size=batch_size,
                          stop_strings=style.stop_strings, progress="ifeval", prompt_lookup=prompt_lookup)


def ifeval_sample_of(prompts: Sequence, n: int) -> list:
    """evaluate.py --ifeval_sample N: a seeded random sample of N prompts, in file order, the same for every model."""
    return seeded_sample(prompts, n, IFEVAL_SAMPLE_SEED)


def ifeval_sample_prompts(eval_dir: Path, n: int) -> frozenset:
    """The prompt texts that --ifeval_sample n draws from the IFEval file the evaluation in `eval_dir` read."""
    if n < 1:
        raise UserError(f"--without_ifeval_sample {n}: must be at least 1")
    try:
        path = json.loads((Path(eval_dir) / "results.json").read_text())["settings"].get("ifeval_path")
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{eval_dir}/results.json: not readable as an evaluate.py result ({error})") from None
    return frozenset(p.prompt for p in ifeval_sample_of(ifeval.load_prompts(path and Path(path)), n))


def run_ifeval(model: GPT, tokenizer: Tokenizer, style: PromptStyle, prompts: Sequence, max_new_tokens: int,
               batch_size: int, prompt_lookup: int = DRAFT_TOKENS) -> "tuple[list, ifeval.IFEvalResult]":
    """The model's answers to IFEval prompts and their scores (what evaluate.py and compare_datasets.py run)."""
    answers = ifeval_answers(model, tokenizer, style, prompts, max_new_tokens, batch_size, prompt_lookup)
    return answers, ifeval.score(prompts, [a.text for a in answers])


def write_ifeval_outputs(path: Path, prompts: Sequence, responses: Sequence[str], result,
                         finished: Optional[Sequence[bool]] = None) -> None:
    lines = []
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        row = {"key": prompt.key, "prompt": prompt.prompt, "response": response,
               "instruction_id_list": prompt.instruction_id_list,
               "strict": result.strict_verdicts[i], "loose": result.loose_verdicts[i]}
        if finished is not None:
            row["finished"] = finished[i]  # False: cut at the token budget
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---- reference loss ------------------------------------------------------------------------------------------------
def reference_examples(path: Path, tokenizer: Tokenizer, style: PromptStyle, max_seq_length: int,
                       limit: Optional[int] = None) -> list:
    """Tokenized (instruction, reference answer) examples: a prepared dataset dir (its test.pt; prepared for this
    model's prompt style), or a JSON/JSONL/CSV file of rows with an answer (Alpaca, Dolly, conversations, ...)."""
    path = Path(path)
    if path.is_dir():
        _, test, manifest = load_prepared(path, tokenizer)
        if manifest.get("prompt_style") != style.name:
            raise UserError(f"{path}: prepared with prompt style {manifest.get('prompt_style')!r}, the model uses "
                            f"{style.name!r}; prepare it again with --prompt_style {style.name}, or pass the raw file")
        examples = test
    else:
        rows = [r for r in eval_rows(path) if r["output"]]
        if not rows:
            raise UserError(f"{path}: no row has a reference answer (output/response/answer)")
        rows = [{k: v for k, v in {**r, "source": "reference", "id": f"ref-{i}"}.items()
                 if not (k == "messages" and not v)} for i, r in enumerate(rows[:limit] if limit else rows)]
        examples, _ = tokenize_examples(rows, tokenizer, style, max_seq_length)
    examples = examples[:limit] if limit else examples
    if not examples:
        raise UserError(f"{path}: no example to score")
    return examples


def write_reference_outputs(path: Path, examples: Sequence[dict], result: ReferenceLoss) -> None:
    lines = [json.dumps({"id": e.get("id"), "instruction": e.get("instruction"), "nll": nll, "tokens": n})
             for e, nll, n in zip(examples, result.per_example_nll, result.per_example_tokens)]
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---- the run ---------------------------------------------------------------------------------------------------
def evaluate(model: GPT, tokenizer: Tokenizer, style: PromptStyle, description: str, tasks: Sequence[str],
             out_dir: Path, *, limit: Optional[int] = None, ifeval_sample: Optional[int] = None,
             batch_size: int = 16, max_new_tokens: int = IFEVAL_MAX_NEW_TOKENS, ifeval_path: Optional[Path] = None,
             reference_data: Optional[Path] = None, harness_tasks: Sequence[str] = (),
             harness_kwargs: Optional[dict] = None, prompt_lookup: int = DRAFT_TOKENS) -> EvalReport:
    """Runs `tasks` and writes results.json, results.md and the per-item files into out_dir."""
    settings = dict(limit=limit, ifeval_sample=ifeval_sample, batch_size=batch_size, max_new_tokens=max_new_tokens,
                    greedy=True, prompt_lookup=prompt_lookup, ifeval_path=str(ifeval_path) if ifeval_path else None,
                    reference_data=str(reference_data) if reference_data else None,
                    harness_tasks=list(harness_tasks), dtype=str(next(model.parameters()).dtype),
                    device=str(next(model.parameters()).device))
    report = EvalReport(description, style.name, list(tasks), settings, versions())
    check_task_inputs(tasks, reference_data, harness_tasks)
    out_dir.mkdir(parents=True, exist_ok=True)
    if "ifeval" in tasks:
        start = time.perf_counter()
        prompts = ifeval.load_prompts(ifeval_path)
        prompts = ifeval_sample_of(prompts, ifeval_sample) if ifeval_sample else prompts
        prompts = prompts[:limit] if limit else prompts
        answers, result = run_ifeval(model, tokenizer, style, prompts, max_new_tokens, batch_size, prompt_lookup)
        write_ifeval_outputs(out_dir / "ifeval_responses.jsonl", prompts, [a.text for a in answers], result,
                             [a.finished for a in answers])
        report.ifeval = {**result.to_dict(), "cut_at_budget": sum(not a.finished for a in answers)}
        report.seconds["ifeval"] = round(time.perf_counter() - start, 1)
    if "reference_loss" in tasks:
        start = time.perf_counter()
        examples = reference_examples(reference_data, tokenizer, style, model.config.block_size, limit)
        result = reference_loss(model, examples, micro_batch_size=batch_size)
        write_reference_outputs(out_dir / "reference_loss.jsonl", examples, result)
        report.reference_loss = {k: v for k, v in result.to_dict().items() if not k.startswith("per_example")}
        report.seconds["reference_loss"] = round(time.perf_counter() - start, 1)
    if "harness" in tasks:
        from lit_gpt.eval.harness import run_harness

        start = time.perf_counter()
        report.harness = run_harness(model, tokenizer, list(harness_tasks), limit=limit, batch_size=batch_size,
                                     **(harness_kwargs or {}))
        report.seconds["harness"] = round(time.perf_counter() - start, 1)
    write_report(out_dir, report)
    return report


def write_report(out_dir: Path, report: EvalReport) -> None:
    atomic_write_json(out_dir / "results.json", report.to_dict())
    atomic_write_text(out_dir / "results.md", markdown_table(report))


def markdown_table(report: EvalReport) -> str:
    lines = [f"# Evaluation of {report.model}", "", f"prompt style `{report.prompt_style}`; settings: "
             + ", ".join(f"{k}={v}" for k, v in report.settings.items() if v not in (None, [], ())), "",
             "| task | metric | value |", "|---|---|---|"]
    if report.ifeval:
        for metric in ifeval.METRICS:
            lines.append(f"| ifeval | {metric} | {100 * report.ifeval[metric]:.2f} |")
        lines.append(f"| ifeval | prompts | {report.ifeval['prompts']} |")
        if "cut_at_budget" in report.ifeval:
            lines.append(f"| ifeval | answers cut at the token budget | {report.ifeval['cut_at_budget']} |")
    if report.reference_loss:
        r = report.reference_loss
        lines += [f"| reference_loss | mean NLL (nats/token) | {r['mean_nll']:.4f} |",
                  f"| reference_loss | perplexity | {r['perplexity']:.3f} |",
                  f"| reference_loss | answers / tokens | {r['examples']} / {r['tokens']} |"]
    for task, metrics in (report.harness or {}).items():
        for metric, value in metrics.items():
            if isinstance(value, (int, float)):
                lines.append(f"| {task} | {metric} | {value:.4f} |")
    lines += ["", "wall time: " + ", ".join(f"{k} {v} s" for k, v in report.seconds.items())]
    return "\n".join(lines) + "\n"


def score_responses_file(responses_path: Path, out_dir: Path, ifeval_path: Optional[Path] = None) -> EvalReport:
    """`--responses FILE.jsonl`: IFEval scores of answers produced elsewhere (IFEval's response format)."""
    start = time.perf_counter()
    prompts = ifeval.load_prompts(ifeval_path)
    by_prompt = ifeval.read_responses(responses_path)
    responses = ifeval.match_responses(prompts, by_prompt, responses_path)
    result = ifeval.score(prompts, responses)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_ifeval_outputs(out_dir / "ifeval_responses.jsonl", prompts, responses, result)
    report = EvalReport(str(responses_path), "(responses given)", ["ifeval"], {"responses": str(responses_path)},
                        versions(), ifeval=result.to_dict(), seconds={"ifeval": round(time.perf_counter() - start, 1)})
    write_report(out_dir, report)
    return report
