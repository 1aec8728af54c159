"""Answering prompts: the one function every caller uses to get a model's answer to a prompt (`continue_ids`, and
`answer_prompts` for a list of instructions), and what the generate/ scripts print (streamed samples).
"""

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch
from tqdm import tqdm

from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.infer.load import load
from lit_gpt.infer.lookup import DRAFT_TOKENS, check_draft_tokens
from lit_gpt.infer.sampling import generate_batch, sampling_error, stream_answer
from lit_gpt.model import GPT
from lit_gpt.prompts.styles import PromptStyle, get_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError


@dataclass
class Answer:
    text: str
    finished: bool  # False when it stopped at the token limit, not at a stop token


def continue_ids(model: GPT, tokenizer: Tokenizer, prompt_ids: "torch.Tensor | Sequence[int]", max_new_tokens: int,
                 *, temperature: float = 0.0, top_k: Optional[int] = None, top_p: Optional[float] = None,
                 generator: Optional[torch.Generator] = None, stop_strings: Iterable[str] = ()) -> Answer:
    """The model's continuation of `prompt_ids` (greedy by default), decoded without special tokens, stopped at a
    stop id of the tokenizer, a stop string, or after max_new_tokens (fewer when the context has no room for that
    many). A batch of one of `continue_batch`."""
    return continue_batch(model, tokenizer, [prompt_ids], max_new_tokens, temperature=temperature, top_k=top_k,
                          top_p=top_p, generator=generator, stop_strings=stop_strings)[0]


def continue_batch(model: GPT, tokenizer: Tokenizer, prompts: Sequence["torch.Tensor | Sequence[int]"],
                   max_new_tokens: int, *, batch_size: int = 16, temperature: float = 0.0, top_k: Optional[int] = None,
                   top_p: Optional[float] = None, generator: Optional[torch.Generator] = None,
                   stop_strings: Iterable[str] = (), progress: Optional[str] = None,
                   compile: bool = False, prompt_lookup: int = DRAFT_TOKENS) -> list[Answer]:
    """`continue_ids` for many prompts, `batch_size` in flight at a time through `generate_batch` (continuous
    batching: a prompt whose answer ends makes room for the next at once); answers in the prompts' order.
    `progress`: a tqdm bar with that label (and ETA). compile: the decode step through torch.compile
    (`lit_gpt.infer.cache.RowCache`). prompt_lookup: greedy answers take draft tokens copied from earlier in their
    text, as many per step (`lit_gpt.infer.lookup`; 0: one token per step); sampling ignores it."""
    device = next(model.parameters()).device
    prompts = [p.to(device) if isinstance(p, torch.Tensor) else torch.tensor(list(p), dtype=torch.long, device=device)
               for p in prompts]
    if not prompts:
        return []
    stop_strings = tuple(s for s in stop_strings if s)
    tail = max((len(s) for s in stop_strings), default=0) + 8  # tokens enough to hold any stop string
    budgets = [min(max_new_tokens, model.config.block_size - p.numel()) for p in prompts]
    stopped = set()

    def at_stop_string(i: int, ids: list) -> bool:
        if any(s in tokenizer.decode(ids[-tail:]) for s in stop_strings):
            stopped.add(i)
            return True
        return False

    bar = tqdm(total=len(prompts), desc=progress, unit="prompts", disable=None if progress else True, file=sys.stderr)
    new = generate_batch(model, prompts, [max(b, 0) for b in budgets], batch_size=batch_size,
                         temperature=temperature, top_k=top_k, top_p=top_p, eos_id=tokenizer.stop_ids,
                         generator=generator, stop=at_stop_string if stop_strings else None,
                         done=lambda i: bar.update(1), compile=compile, prompt_lookup=prompt_lookup)
    bar.close()
    answers = []
    for i, ids in enumerate(new):
        text = tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((k for k in (text.find(s) for s in stop_strings) if k >= 0), default=-1)
        finished = budgets[i] > 0 and (i in stopped or len(ids) < budgets[i])
        answers.append(Answer(text if cut < 0 else text[:cut], finished))
    return answers


def answer_prompts(model: GPT, tokenizer: Tokenizer, style: "str | PromptStyle", prompts: Sequence[dict],
                   max_new_tokens: int, batch_size: int = 16, progress: Optional[str] = None,
                   **sampling) -> list[Answer]:
    """One answer (stripped) per {"instruction", "input"} prompt, rendered in `style`, generated `batch_size` at a
    time; greedy unless `sampling` (temperature, top_k, top_p, generator) says otherwise. Generation ends at the
    tokenizer's stop ids and the style's stop strings."""
    style = get_prompt_style(style)
    device = next(model.parameters()).device
    ids = [encode_prompt(tokenizer, style, p["instruction"], p.get("input") or "", device=device) for p in prompts]
    answers = continue_batch(model, tokenizer, ids, max_new_tokens, batch_size=batch_size, progress=progress,
                             stop_strings=style.stop_strings, **sampling)
    return [Answer(a.text.strip(), a.finished) for a in answers]


def check_sampling_args(max_new_tokens: int, temperature: float, top_k: Optional[int], top_p: Optional[float],
                        num_samples: int = 1, prompt_lookup: int = 0) -> None:
    if max_new_tokens < 1:
        raise UserError(f"--max_new_tokens {max_new_tokens}: must be at least 1")
    check_draft_tokens(prompt_lookup)
    error = sampling_error(temperature, top_k, top_p)
    if error is not None:
        raise UserError(error)
    if num_samples < 1:
        raise UserError(f"--num_samples {num_samples}: must be at least 1")


def generate_answers(checkpoint_dir: "str | Path | None", lora_path: "str | Path | None", prompt: str, input: str = "",
                     *, max_new_tokens: int, temperature: float, top_k: Optional[int], top_p: Optional[float],
                     num_samples: int, precision: Optional[str], seed: int, device: Optional[str],
                     prompt_style: Optional[str] = None, force: bool = False, compile: bool = False,
                     prompt_lookup: int = DRAFT_TOKENS) -> None:
    """What generate/base.py, full.py and lora.py run: check the flags, load the checkpoint (LoRA merged into its
    base; `force`: also into a base with other weights than the ones it was trained on), prompt it in the style it was trained with (or `prompt_style`: `plain` feeds BOS, if the tokenizer uses
    one, and the prompt text as it is) and stream `num_samples` answers to stdout."""
    check_sampling_args(max_new_tokens, temperature, top_k, top_p, num_samples, prompt_lookup)
    loaded = load(checkpoint_dir, lora_path, device, precision, force=force, prompt_style=prompt_style)
    style = loaded.style
    loaded.print_summary(style)
    prompt_ids = encode_prompt(loaded.tokenizer, style, prompt, input, device=loaded.device)
    generate_samples(loaded.model, loaded.tokenizer, prompt_ids, num_samples=num_samples,
                     max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                     stop_strings=style.stop_strings, seed=seed, compile=compile, prompt_lookup=prompt_lookup)


def encode_conversation(tokenizer: Tokenizer, style: PromptStyle, messages: list[dict], max_tokens: int,
                        device: Optional[torch.device] = None) -> tuple[Optional[torch.Tensor], list[dict]]:
    """Prompt ids (`lit_gpt.data.tokenize.encode_prompt`) for a conversation that ends with a user message, and the messages
    they encode: the oldest exchanges are dropped (a system message stays) until the prompt fits in max_tokens. The
    ids are None when even the last user message alone does not fit."""
    system = messages[:1] if messages and messages[0].get("role") == "system" else []
    rest = messages[len(system):]
    while True:
        ids = encode_prompt(tokenizer, style, system + rest, device=device)
        if ids.numel() <= max_tokens:
            return ids, system + rest
        if len(rest) <= 1:
            return None, system + rest
        rest = rest[2:]  # the oldest user message and its answer


def generate_samples(model: GPT, tokenizer: Tokenizer, prompt_ids: torch.Tensor, *, num_samples: int = 1,
                     max_new_tokens: int = 100, temperature: float = 0.8, top_k: Optional[int] = 50,
                     top_p: Optional[float] = None, stop_strings: Iterable[str] = (), seed: int = 1234,
                     compile: bool = False, prompt_lookup: int = 0) -> list[str]:
    """The generate scripts' output: each sample streamed to stdout (a blank line between samples), speed to stderr.
    compile: the decode step through torch.compile (the first sample pays the compile); prompt_lookup: draft tokens
    per step when greedy (`lit_gpt.infer.lookup`)."""
    torch.manual_seed(seed)
    texts = []
    for i in range(num_samples):
        if i:
            print()
        t0 = time.perf_counter()
        n, text = stream_answer(model, tokenizer, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                                top_p=top_p, stop_strings=stop_strings, compile=compile,
                                prompt_lookup=prompt_lookup)
        seconds = time.perf_counter() - t0
        print(flush=True)
        print(f"Sample {i + 1}: {n} tokens in {seconds:.2f} s ({n / seconds:.1f} tokens/s)", file=sys.stderr)
        texts.append(text)
    if prompt_ids.device.type == "cuda":
        print(f"Peak GPU memory: {torch.cuda.max_memory_allocated(prompt_ids.device) / 1e9:.2f} GB", file=sys.stderr)
    return texts
