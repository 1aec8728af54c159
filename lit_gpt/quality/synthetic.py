"""Generating instruction data: Self-Instruct / Alpaca-style task generation from seed tasks with its filters (length,
keyword blacklist, punctuation/non-ASCII start, ROUGE-L < 0.7 to the pool), and instruction backtranslation (Li et
al. 2023, "Humpback") with self-curation by a judge (`lit_gpt.quality.judge`).
"""

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from lit_gpt.data.records import iter_records
from lit_gpt.data.similarity import near_duplicates, rouge_l_tokens, word_tokens
from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.infer.answer import continue_batch
from lit_gpt.quality.judge import Judge
from lit_gpt.quality.scored_records import ScoringExample, fit_ids
from lit_gpt.utils import UserError

# ======================================================================================================================
# Self-Instruct (Wang et al. 2022) as Alpaca used it
# ======================================================================================================================
BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw",
             "plot", "go to", "video", "audio", "music", "flowchart", "diagram")  # tasks a text model cannot do
_BLACKLIST_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in BLACKLIST) + r")\b")
NO_INPUT = "<noinput>"


@dataclass
class InstructionFilter:
    min_words: int = 3
    max_words: int = 150
    rouge_threshold: float = 0.7  # reject when ROUGE-L >= this against any instruction in the pool


def instruction_rejection(instruction: str, config: InstructionFilter = InstructionFilter()) -> Optional[str]:
    """Why a generated instruction is rejected on its own (before the similarity check), or None."""
    text = instruction.strip()
    if not text:
        return "empty_instruction"
    n_words = len(text.split())
    if n_words < config.min_words:
        return "too_few_words"
    if n_words > config.max_words:
        return "too_many_words"
    if _BLACKLIST_RE.search(text.lower()):
        return "blacklisted_word"
    if text.startswith("Write a program"):  # Alpaca: a program's output cannot be checked from text
        return "asks_for_program"
    if not text[0].isalnum():
        return "starts_with_punctuation"
    if not text[0].isascii():
        return "non_ascii_start"
    return None


def filter_candidates(candidates: Sequence[dict], pool: Sequence[str],
                      config: InstructionFilter = InstructionFilter()) -> tuple[list[dict], list[tuple[dict, str]]]:
    """(accepted, [(rejected, reason)]). Candidates are {instruction, input, output}; accepted ones join the pool
    for the candidates after them, so the batch itself holds no near-duplicates."""
    accepted, rejected, survivors = [], [], []
    for c in candidates:
        reason = instruction_rejection(c.get("instruction", ""), config)
        if reason is None and not (c.get("output") or "").strip():
            reason = "empty_output"
        if reason:
            rejected.append((c, reason))
        else:
            survivors.append(c)
    if not survivors:
        return accepted, rejected
    # against the pool in one go (pool as texts_a so the bound's vocabulary is the small batch's)
    similar_to_pool = {j for _, j, _ in near_duplicates(list(pool), [c["instruction"] for c in survivors],
                                                       config.rouge_threshold)} if pool else set()
    accepted_tokens: list[list[str]] = []
    for j, c in enumerate(survivors):
        tokens = word_tokens(c["instruction"])
        if j in similar_to_pool or any(rouge_l_tokens(tokens, t) >= config.rouge_threshold for t in accepted_tokens):
            rejected.append((c, "similar_to_pool"))
            continue
        accepted.append(c)
        accepted_tokens.append(tokens)
    return accepted, rejected


def self_instruct_request(examples: Sequence[dict], n_new: int) -> tuple[str, str]:
    """(request for the model, the text its answer is pre-filled with) for generating tasks after `examples`."""
    blocks = [format_task(i + 1, ex) for i, ex in enumerate(examples)]
    first_new = len(examples) + 1
    request = (
        "You write tasks for training an AI assistant. Each task has an instruction, an optional input that the "
        "instruction refers to (write <noinput> when there is none) and a good output. Make the tasks diverse: "
        "vary the verbs, the topics and the kind of task (open questions, classification, rewriting, brainstorming, "
        "reasoning, writing); phrase some as questions and some as imperatives; keep instructions to one or two "
        "sentences. Every task must be doable by a text-only assistant, so nothing about images, audio or files. "
        f"Here are {len(examples)} examples:\n\n" + "\n\n".join(blocks)
        + f"\n\nNow write {n_new} new tasks in the same format, numbered from {first_new}.")
    return request, f"### Task {first_new}\nInstruction:"


def format_task(number: int, task: dict) -> str:
    return (f"### Task {number}\nInstruction: {task['instruction'].strip()}\n"
            f"Input: {(task.get('input') or '').strip() or NO_INPUT}\nOutput: {task['output'].strip()}")


_TASK_SPLIT_RE = re.compile(r"^\s*#+\s*Task\s+\d+\s*:?\s*$", re.MULTILINE | re.IGNORECASE)
_TASK_FIELDS_RE = re.compile(r"^\s*Instruction:\s*(.*?)\s*^\s*Input:\s*(.*?)\s*^\s*Output:\s*(.*?)\s*$",
                             re.DOTALL | re.MULTILINE | re.IGNORECASE)


def parse_generated_tasks(text: str, complete: bool = True) -> list[dict]:
    """Tasks in a generated continuation ("### Task N / Instruction: / Input: / Output:"). When the generation was
    cut off by the token limit (complete=False) the last task may be unfinished and is dropped, as Alpaca did."""
    blocks = [b for b in _TASK_SPLIT_RE.split(text)]
    if not complete and len(blocks) > 0:
        blocks = blocks[:-1]
    tasks = []
    for block in blocks:
        match = _TASK_FIELDS_RE.search(block)
        if not match:
            continue
        instruction, input, output = (g.strip() for g in match.groups())
        instruction = re.sub(r"^(?:instruction:\s*)+", "", instruction, flags=re.IGNORECASE)  # a repeated label
        if input.lower() in (NO_INPUT, "<no input>", "none", "n/a", ""):
            input = ""
        tasks.append({"instruction": instruction, "input": input, "output": output})
    return tasks


# ======================================================================================================================
# Instruction backtranslation (Li et al. 2023)
# ======================================================================================================================
BACKWARD_REQUEST = (
    "Below is a text. Write the instruction or question a user could have given an AI assistant for which this text "
    "would be the ideal reply. Write only the instruction, as the user would phrase it.\n\n[Text]\n{text}")
BACKWARD_PREFIX = "Instruction:"


def parse_backtranslated_instruction(text: str) -> str:
    """The instruction in a backward model's answer: up to the first blank line, without a repeated label/quotes."""
    text = text.strip()
    text = re.sub(r"^(?:instruction|question|user)\s*:\s*", "", text, flags=re.IGNORECASE)
    text = re.split(r"\n\s*\n", text, maxsplit=1)[0].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def read_unlabelled(path: "str | Path", field_names: Sequence[str] = ("text", "output", "response", "content")) -> list[str]:
    """Unlabelled texts: a .txt file (documents separated by blank lines) or JSON/JSONL rows with a text field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    if path.suffix == ".txt":
        return [t.strip() for t in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if t.strip()]
    texts = []
    for where, row in iter_records(path):
        value = next((row[k] for k in field_names if isinstance(row.get(k), str)), None)
        if value is None:
            raise UserError(f"{where}: none of the fields {', '.join(field_names)}; "
                            "unlabelled texts need a 'text' field (or a .txt file)")
        texts.append(value)
    return texts


def prompt_with_prefill(tokenizer, style, request: str, prefill: str) -> list[int]:
    """Ids of the request in the model's prompt style with its answer already begun by `prefill`."""
    return encode_prompt(tokenizer, style, request).tolist() + tokenizer.encode_ids(prefill)


@dataclass
class SelfInstructConfig:
    num_prompt_tasks: int = 3  # seed tasks shown per request (Alpaca: 3)
    tasks_per_request: int = 5  # new tasks asked for per request
    max_new_tokens: int = 512
    temperature: float = 1.0
    top_p: Optional[float] = 0.95
    max_requests: Optional[int] = None  # stop after this many model calls even if short of the target
    seed: int = 0
    batch_size: int = 8  # requests generated together (continuous batching), never more than the target needs


def self_instruct(model, tokenizer, style, seeds: Sequence[dict], num_instructions: int,
                  config: SelfInstructConfig = SelfInstructConfig(),
                  filter_config: InstructionFilter = InstructionFilter(),
                  on_progress: Optional[Callable[[list[dict], dict], None]] = None) -> tuple[list[dict], dict]:
    """Generates up to `num_instructions` new tasks from the seeds; returns (tasks, stats).

    Each request shows `num_prompt_tasks` random seed tasks and asks for more in the same format; the tasks parsed
    from the answer go through `filter_candidates` against the pool (seed + accepted instructions), answer after
    answer. Up to `batch_size` requests are generated together, but no more than the tasks still missing need
    (`tasks_per_request` each), so a run stops about where one request at a time would."""
    if not seeds:
        raise UserError("no seed tasks: the seed file needs rows with instruction and output")
    rng = random.Random(config.seed)
    generator = torch.Generator(device=model.wte.weight.device).manual_seed(config.seed)
    pool = [s["instruction"] for s in seeds]
    accepted: list[dict] = []
    stats = {"requests": 0, "parsed": 0, "accepted": 0, "rejected": {}}
    max_requests = config.max_requests if config.max_requests is not None else 10 * num_instructions + 10
    while len(accepted) < num_instructions and stats["requests"] < max_requests:
        needed = -(-(num_instructions - len(accepted)) // config.tasks_per_request)
        count = min(config.batch_size, needed, max_requests - stats["requests"])
        requests = [_self_instruct_request(model, tokenizer, style, seeds, rng, config) for _ in range(count)]
        stats["requests"] += count
        runnable = [(ids, prefill) for ids, prefill in requests if len(ids) < model.config.block_size]
        if len(runnable) < count:
            stats["rejected"]["prompt_too_long"] = stats["rejected"].get("prompt_too_long", 0) + count - len(runnable)
        answers = continue_batch(model, tokenizer, [ids for ids, _ in runnable], config.max_new_tokens,
                                 batch_size=count, temperature=config.temperature, top_p=config.top_p,
                                 generator=generator)
        for (_, prefill), answer in zip(runnable, answers):
            candidates = parse_generated_tasks(prefill + answer.text, complete=answer.finished)
            stats["parsed"] += len(candidates)
            kept, rejected = filter_candidates(candidates, pool, filter_config)
            for _, reason in rejected:
                stats["rejected"][reason] = stats["rejected"].get(reason, 0) + 1
            kept = kept[:num_instructions - len(accepted)]
            accepted += kept
            pool += [c["instruction"] for c in kept]
        stats["accepted"] = len(accepted)
        if on_progress is not None:
            on_progress(accepted, stats)
    return accepted, stats


def _self_instruct_request(model, tokenizer, style, seeds: Sequence[dict], rng: random.Random,
                           config: SelfInstructConfig) -> "tuple[list[int], str]":
    """One request's prompt ids (random seed tasks, dropped until the prompt leaves room for an answer) and the
    text its answer begins with."""
    examples = rng.sample(list(seeds), min(config.num_prompt_tasks, len(seeds)))
    while True:
        request, prefill = self_instruct_request(examples, config.tasks_per_request)
        ids = prompt_with_prefill(tokenizer, style, request, prefill)
        if len(ids) + min(config.max_new_tokens, 64) <= model.config.block_size or len(examples) == 1:
            return ids, prefill
        examples = examples[:-1]


GENERATION_POOL = 16  # backtranslation writes instructions for 16 x batch_size texts per call (progress between)


@dataclass
class BacktranslateConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0  # greedy: one most likely instruction per text
    top_p: Optional[float] = None
    min_score: float = 4.0  # keep pairs the curator rates at least this (Humpback's A4 set; 5 for A5)
    batch_size: int = 8
    seed: int = 0


def backtranslate(model, tokenizer, style, texts: Sequence[str], curator: "Judge",
                  config: BacktranslateConfig = BacktranslateConfig(),
                  on_progress: Optional[Callable[[int, int], None]] = None) -> tuple[list[dict], dict]:
    """Instruction backtranslation: for each unlabelled text, the backward model writes the instruction the text
    answers; the curator then rates each (instruction, text) pair 1-5 and pairs >= min_score are kept.
    Returns (every pair with its score_curation and kept flag, stats)."""
    generator = torch.Generator(device=model.wte.weight.device).manual_seed(config.seed)
    prefill_ids = tokenizer.encode_ids(BACKWARD_PREFIX)
    pairs = []
    room = model.config.block_size - config.max_new_tokens - len(prefill_ids)
    pool = config.batch_size * GENERATION_POOL  # continuous batching: batch_size rows in flight over a pool of texts
    for start in range(0, len(texts), pool):
        chunk = texts[start:start + pool]
        prompts = [fit_ids(encode_prompt(tokenizer, style, BACKWARD_REQUEST.format(text=t.strip())).tolist(), room)[0]
                   + prefill_ids for t in chunk]
        answers = continue_batch(model, tokenizer, prompts, config.max_new_tokens, batch_size=config.batch_size,
                                 temperature=config.temperature, top_p=config.top_p, generator=generator)
        pairs += [{"instruction": parse_backtranslated_instruction(a.text), "input": "", "output": t}
                  for a, t in zip(answers, chunk)]
        if on_progress is not None:
            on_progress(len(pairs), len(texts))
    stats = {"texts": len(texts), "empty_instruction": 0, "below_min_score": 0, "unscored": 0, "kept": 0}
    to_rate = [ScoringExample(i, p["instruction"], "", p["output"]) for i, p in enumerate(pairs) if p["instruction"]]
    for start in range(0, len(to_rate), config.batch_size):
        batch = to_rate[start:start + config.batch_size]
        for example, result in zip(batch, curator.score(batch)):
            pairs[example.index]["score_curation"] = result["score"]
    for p in pairs:
        score = p.setdefault("score_curation", None)
        p["kept"] = score is not None and score >= config.min_score
        if not p["instruction"]:
            stats["empty_instruction"] += 1
        elif score is None:
            stats["unscored"] += 1
        elif not p["kept"]:
            stats["below_min_score"] += 1
        else:
            stats["kept"] += 1
    return pairs, stats
