"""Chat with a checkpoint (optionally + LoRA weights) in its prompt style, multi-turn, streaming the answers.

    python generate/chat.py --checkpoint_dir out/full/alpaca
    python generate/chat.py --lora_path out/lora/alpaca/lit_model.pth.lora

Each answer is generated from the whole conversation so far, rendered in the prompt style the model was trained with
(prompt_style.json); when it outgrows the model's context the oldest exchanges are dropped. Commands: /reset starts a
new conversation, /exit (or end of input, Ctrl-D) quits. Messages about the model go to stderr.
"""

import importlib.util
import sys
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

import torch

from lit_gpt.infer.answer import check_sampling_args, encode_conversation
from lit_gpt.infer.load import load
from lit_gpt.infer.lookup import DRAFT_TOKENS
from lit_gpt.infer.sampling import stream_answer
from lit_gpt.utils import UserError, run_cli

COMMANDS = {"/reset": "start a new conversation", "/exit": "quit (so does end of input, Ctrl-D)"}


def read_message() -> Optional[str]:
    """The user's next line, or None at end of input."""
    sys.stdout.write(">> User: ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if line and not sys.stdin.isatty():  # piped input: echo it, so that stdout reads as a transcript
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
    return line.rstrip("\n") if line else None


def main(*, checkpoint_dir: Optional[Path] = None, lora_path: Optional[Path] = None, system: Optional[str] = None,
         max_new_tokens: int = 256, temperature: float = 0.7, top_k: Optional[int] = 50,
         top_p: Optional[float] = None, precision: Optional[str] = None, seed: int = 1234,
         device: Optional[str] = None, force: bool = False, compile: bool = False,
         prompt_lookup: int = DRAFT_TOKENS) -> None:
    """Chat with a model.

    Args:
        checkpoint_dir: the checkpoint; with --lora_path the base checkpoint (default: the one the LoRA run recorded)
        lora_path: lit_model.pth.lora written by finetune/lora.py (or its output directory)
        system: a system message for the conversation (styles without a system slot put it before the first message)
        max_new_tokens: most tokens per answer
        temperature: sampling temperature; 0 = greedy
        top_k: sample among the k most likely tokens only
        top_p: sample from the smallest set of tokens whose probability sums to top_p (nucleus sampling)
        precision: 32-true, bf16-true or 16-true; default bf16 where the hardware has it natively, else float32
        seed: random seed, for reproducible answers
        device: cpu, cuda, cuda:1, ...; default cuda when available
        force: merge the LoRA weights even into a base whose weights differ from the ones they were trained on
        compile: the decode step through torch.compile: faster tokens after a one-off compile in the first answer
            (about a minute on a CPU; needs a C++ compiler there)
        prompt_lookup: greedy (--temperature 0) only: up to this many draft tokens per step, copied from earlier in
            the conversation and kept where greedy decoding agrees (the answer is the same); 0 = one token per step
    """
    check_sampling_args(max_new_tokens, temperature, top_k, top_p, prompt_lookup=prompt_lookup)
    loaded = load(checkpoint_dir, lora_path, device, precision, force=force)
    loaded.print_summary()
    model, tokenizer, style = loaded.model, loaded.tokenizer, loaded.style
    max_prompt_tokens = model.config.block_size - max_new_tokens
    if max_prompt_tokens < 1:
        raise UserError(f"--max_new_tokens {max_new_tokens}: leaves no room for the conversation in the model's "
                        f"context of {model.config.block_size} tokens; lower it")
    print("commands: " + "; ".join(f"{c} {what}" for c, what in COMMANDS.items()), file=sys.stderr)

    torch.manual_seed(seed)
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    while True:
        text = read_message()
        if text is None:
            print()
            break
        if text.strip() == "/exit":
            break
        if text.strip() == "/reset":
            messages = list(start)
            print("(new conversation)", file=sys.stderr)
            continue
        if not text.strip():
            continue
        prompt_ids, kept = encode_conversation(tokenizer, style, messages + [{"role": "user", "content": text}],
                                               max_prompt_tokens, device=loaded.device)
        if prompt_ids is None:
            print(f"(that message is longer than the {max_prompt_tokens} tokens the context leaves with "
                  f"--max_new_tokens {max_new_tokens}; send a shorter one)", file=sys.stderr)
            continue
        if len(kept) < len(messages) + 1:
            print(f"(the oldest {(len(messages) + 1 - len(kept)) // 2} exchange(s) no longer fit the context and were "
                  "dropped)", file=sys.stderr)
        sys.stdout.write(">> Assistant: ")
        sys.stdout.flush()
        _, answer = stream_answer(model, tokenizer, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                                  top_p=top_p, stop_strings=style.stop_strings, compile=compile,
                                  prompt_lookup=prompt_lookup)
        print(flush=True)
        messages = kept + [{"role": "assistant", "content": answer}]


if __name__ == "__main__":
    run_cli(main)
