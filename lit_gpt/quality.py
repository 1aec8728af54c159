"""Data quality: score, filter and generate instruction data ("quality beats quantity").

Scoring methods (one column each, written back beside the rows):
- `alpagasus` (AlpaGasus, Chen et al. 2023): a judge model rates each (instruction, input, response) for accuracy
  and helpfulness on 0-5. The score is the expected value of the digit the judge would write after "Score:",
  from the probabilities of the digit tokens in one batched forward pass (no sampling, no parsing); or, with
  score_from="generate", the first number in its greedy answer (`parse_score`).
- `ifd` (Instruction-Following Difficulty, Li et al. 2023 "Cherry LLM"; Superfiltering showed a GPT-2-sized model
  is enough): loss(response | prompt-formatted instruction) / loss(response alone). Near or above 1 the
  instruction does not help predict the answer (noise or a mismatched pair); high values below 1 mark hard,
  informative examples.
- `heuristics`: rule-based flags (empty/short/long answers, refusals, noise, the instruction copied as the answer).

Scoring is resumable: every finished batch is appended to a sidecar JSONL keyed by row index and content hash, so
a rerun after an interruption scores only the rows not yet done.

Generation: Self-Instruct / Alpaca-style task generation from seed tasks with its filters (length, keyword
blacklist, punctuation/non-ASCII start, ROUGE-L < 0.7 to the pool), and instruction backtranslation (Li et al.
2023, "Humpback") with self-curation by the same rating machinery.
"""

import hashlib
import json
import math
import random
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F

from lit_gpt.text_similarity import near_duplicates, rouge_l_tokens, word_tokens
from lit_gpt.utils import UserError, atomic_path

METHODS = ("alpagasus", "ifd", "heuristics")
SCORE_COLUMNS = {"alpagasus": "score_alpagasus", "ifd": "score_ifd", "heuristics": "heuristics_pass"}
FLAGS_COLUMN = "heuristics_flags"


# ======================================================================================================================
# Rating prompts and score parsing
# ======================================================================================================================
@dataclass(frozen=True)
class RatingPrompt:
    """What the judge is asked. `request` is formatted with instruction/input/response and given to the judge as the
    user turn (in the judge's own prompt style); the judge's answer is pre-filled with `answer_prefix`, so the very
    next token is the score digit."""

    name: str
    request: str
    low: int
    high: int
    answer_prefix: str = "Score:"

    def format(self, instruction: str, input: str, response: str) -> str:
        return self.request.format(instruction=instruction.strip(), input=input.strip() or "(none)",
                                   response=response.strip())


# AlpaGasus' structure: a reviewer's framing with the instruction, input and response, then the request for one
# accuracy/helpfulness score on 0-5 on the first line (an explanation may follow), then "Score:".
ALPAGASUS_PROMPT = RatingPrompt(
    name="alpagasus",
    request=(
        "You are reviewing how well an AI assistant carried out a task. Below are the instruction it was given, "
        "the input that came with the instruction, and the assistant's response.\n\n"
        "[Instruction]\n{instruction}\n\n[Input]\n{input}\n\n[Response]\n{response}\n\n"
        "Rate the response for accuracy and helpfulness with respect to the instruction and the input, on a scale "
        "from 0 to 5, where a higher score means a more accurate and helpful response. Write the score alone on the "
        "first line; an explanation may follow on the next lines. Judge the content only: do not let the length "
        "or the style of the response sway you."),
    low=0, high=5)

# Self-curation of backtranslated pairs (Humpback): is the text a good answer an assistant would give to the
# generated instruction? 1-5.
CURATION_PROMPT = RatingPrompt(
    name="curation",
    request=(
        "Below is an instruction from a user and a candidate answer. Decide how good the answer is as the reply of a "
        "helpful AI assistant to exactly this instruction.\n\n"
        "[Instruction]\n{instruction}\n\n[Answer]\n{response}\n\n"
        "Rate it on a scale from 1 to 5: 1 = the answer does not address the instruction or is mostly irrelevant; "
        "2 = it addresses the instruction only partly or reads like a web page rather than a reply; 3 = it is "
        "helpful but not written as a reply to this instruction; 4 = a clear, complete reply to the instruction "
        "with minor flaws; 5 = an ideal reply: focused, complete, well organised, nothing irrelevant. "
        "Write the score alone on the first line."),
    low=1, high=5)

NUMBER_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10}
_NUMBER = r"\d+(?:\.\d+)?"
_WORD_NUMBER_RE = re.compile(
    r"\b(" + "|".join(NUMBER_WORDS) + r")(?:\s+(?:and\s+a\s+half|point\s+(" + "|".join(NUMBER_WORDS) + r")))?\b")
# "on a scale of 0 to 5", "(0-5)", "from 1 to 5", "between 0 and 5": restated scales are not scores
_SCALE_RE = re.compile(r"(?:scale|range)\s*(?:of|from|is)?\s*" + _NUMBER + r"\s*(?:to|-|–|and)\s*" + _NUMBER
                       + r"|(?:from|between)\s+" + _NUMBER + r"\s*(?:to|-|–|and)\s*" + _NUMBER
                       + r"|\(\s*" + _NUMBER + r"\s*(?:-|–|to)\s*" + _NUMBER + r"\s*\)")
_SCORE_RE = re.compile(r"(?<![\d.])(-?" + _NUMBER + r")(?:\s*(?:/|out\s+of)\s*(" + _NUMBER + r"))?")
# a number right after a score keyword wins over an earlier number ("1. Accuracy ... Overall score: 4")
_KEYWORD_SCORE_RE = re.compile(r"\b(?:score|rating|rate|grade)\w*\b[^\d\n]{0,24}?(?<![\d.])(-?" + _NUMBER
                               + r")(?:\s*(?:/|out\s+of)\s*(" + _NUMBER + r"))?")


def _words_to_digits(text: str) -> str:
    def replace(match: re.Match) -> str:
        value = float(NUMBER_WORDS[match.group(1)])
        if match.group(0).endswith("half"):
            value += 0.5
        elif match.group(2):
            value += NUMBER_WORDS[match.group(2)] / 10
        return f"{value:g}"

    return _WORD_NUMBER_RE.sub(replace, text)


def parse_score(text: Optional[str], low: float = 0, high: float = 5) -> Optional[float]:
    """The score in a judge's free-text answer, or None when there is none or it is out of [low, high].

    Takes the number after a score keyword if there is one, else the first number; "4/5" and "4 out of 5" read 4,
    "8/10" is rescaled to the 0-high scale (4.0); number words count ("four", "four and a half"); restated scales
    ("on a scale of 0 to 5") are skipped; markdown emphasis is ignored."""
    if not text:
        return None
    text = _SCALE_RE.sub(" ", text.lower().replace("*", " ").replace("_", " "))
    match = _KEYWORD_SCORE_RE.search(text) or _SCORE_RE.search(text)
    if match is None:  # only then read number words: "this one deserves 4" is a 4, "Rating: four" a 4
        text = _SCALE_RE.sub(" ", _words_to_digits(text))
        match = _KEYWORD_SCORE_RE.search(text) or _SCORE_RE.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    denominator = float(match.group(2)) if match.group(2) else None
    if denominator is not None and denominator != high:
        if denominator <= 0 or value > denominator:
            return None
        value = value / denominator * high
    if not low <= value <= high:
        return None
    return value


def digit_token_ids(tokenizer, low: int, high: int, answer_prefix: str = "Score:") -> tuple[list[int], dict[int, list[int]]]:
    """(ids of the answer prefix as the tokenizer splits it right before a digit, {digit: token ids spelling it}).

    Tokenizers differ in how "Score: 4" splits ("Ġ4" vs "Ġ" + "4" vs "▁" + "4"), so the prefix is taken from the
    tokenization of the full "Score: 4": everything before the digit's token. Each digit's probability is the sum
    over the single tokens that spell it, with or without a leading space."""
    reference = tokenizer.encode_ids(f"{answer_prefix} {low}")
    if not reference or tokenizer.decode(reference[-1:]).strip() != str(low):
        raise UserError(f"{tokenizer.checkpoint_dir}: the tokenizer has no single token for the digit {low}; "
                        "use score_from='generate' for this judge")
    prefix = reference[:-1]
    ids: dict[int, list[int]] = {}
    for digit in range(low, high + 1):
        variants = []
        full = tokenizer.encode_ids(f"{answer_prefix} {digit}")
        if full[:-1] == prefix and tokenizer.decode(full[-1:]).strip() == str(digit):
            variants.append(full[-1])
        for spelling in (str(digit), f" {digit}"):
            single = tokenizer.encode_ids(spelling)
            if len(single) == 1 and tokenizer.decode(single).strip() == str(digit):
                variants.append(single[0])
        if not variants:
            raise UserError(f"{tokenizer.checkpoint_dir}: the tokenizer has no single token for the digit {digit}; "
                            "use score_from='generate' for this judge")
        ids[digit] = sorted(set(variants))
    return prefix, ids


def expected_score(logits: torch.Tensor, digit_ids: dict[int, list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(expected score, probability mass on the digit tokens) per row of `logits` (B, vocab).

    The probabilities of the digits are renormalised among themselves: E[score] = sum_d d * p(d) / sum_d p(d).
    The mass tells how sure the judge was that a digit comes next at all (a judge that wants to write "The" has
    little mass; its expected score is then less meaningful)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    digit_log_probs = torch.stack([torch.logsumexp(log_probs[:, ids], dim=-1) for ids in digit_ids.values()], dim=-1)
    weights = torch.softmax(digit_log_probs, dim=-1)  # renormalised among the digits, stable for tiny masses
    values = torch.tensor(list(digit_ids), dtype=weights.dtype, device=weights.device)
    return (weights * values).sum(-1), digit_log_probs.exp().sum(-1)


# ======================================================================================================================
# Heuristic flags
# ======================================================================================================================
# a refusal or canned disclaimer wherever it occurs (Alpaca's own: "...which a GPT language model cannot provide")
REFUSAL_ANYWHERE_RE = re.compile(
    r"\bas an ai\b|\bas a (?:large )?language model\b|\bi(?:'m| am) an ai (?:language )?model\b"
    r"|\b(?:gpt|language|ai|the) models? (?:cannot|can't|can not|(?:is|are) unable to|(?:is|are) not able to)\b"
    r"|\bcannot be (?:generated|completed|performed|done|fulfilled|produced) by (?:a |an |the )?(?:gpt |ai )?"
    r"(?:language )?model\b|\bdoes(?: not|n't) meet the requirements of the gpt model\b")
# a refusal when the answer opens with it: an apology that goes on to decline, "I cannot <do the task>", "No output
# because...". An apology letter ("I apologize for the delay") or "I cannot wait to..." in a story is not one.
REFUSAL_OPENING_RE = re.compile(
    r"^(?:(?:i'm|i am|we're|we are) sorry|i apologi[sz]e|sorry|unfortunately)[,.!]?\s+(?:but\s+)?"
    r"(?:i|as an?|the task|this task|the instruction|this instruction|the request|this request)\b"
    r"|^(?:i|we)\s+(?:cannot|can't|can not|am unable to|'m unable to|am not able to|'m not able to|do not have|"
    r"don't have|am not capable of|'m not capable of)\s+(?:\w+\s+)?(?:provide|answer|help|assist|generate|complete|"
    r"create|perform|access|browse|fulfill|comply|write|draw|see|view|display|play|predict|give|determine|know|set|"
    r"make|send|open|search|book|order|schedule|remind|call|execute|run|do that|do this|the ability|physical|"
    r"personal|real-time|opinions)"
    r"|^no output\b")
MARKUP_CHARS = set("-=_*#~`|+")


def _loop_char(c: str) -> bool:
    """Characters whose long runs mean a broken generation ("aaaaaaaa", "!!!!!!!!", U+FFFD U+FFFD ...). Runs of
    digits (295.6666666666), whitespace (indentation) and other ASCII symbols (rules, tables, comment bars) are
    normal."""
    return c.isalpha() or c in "!?" or not (c.isascii() or c.isspace())


@dataclass
class HeuristicConfig:
    min_response_chars: int = 1  # "4" is a fine answer to "What is 2 + 2?"; an answer without letters/digits is not
    max_response_words: int = 4000  # LIMA's longest hand-written answers have ~3,100
    min_letter_share: float = 0.25  # letters+digits among non-space chars (a regex answer has ~0.4), checked from
    # `letter_check_chars` on
    letter_check_chars: int = 20
    max_char_run: int = 12  # e.g. "!!!!!!!!!!!!" or "aaaaaaaaaaaa"
    max_word_run: int = 10  # the same word 10 times in a row: a generation loop ("fa la la la la la la la la" is not)


def _normalized(text: str) -> str:
    return " ".join(word_tokens(text))


def heuristic_flags(instruction: str, input: str, output: str, config: HeuristicConfig = HeuristicConfig()) -> list[str]:
    """The reasons a row looks low-quality; [] means it passes."""
    flags = []
    response = output.strip()
    if not response:
        return ["empty_response"]
    # only ASCII punctuation ("." or "?!") says nothing; an emoji answer to an emoji task does
    if len(response) < config.min_response_chars or all(c.isascii() and not c.isalnum() for c in response):
        flags.append("too_short")
    if len(response.split()) > config.max_response_words:
        flags.append("too_long")
    lowered = response.lower().replace("’", "'")
    if REFUSAL_ANYWHERE_RE.search(lowered) or REFUSAL_OPENING_RE.search(lowered[:200]):
        flags.append("refusal")
    # markdown rules and tables are not noise: leave their characters out of the share
    non_space = [c for c in response if not c.isspace() and c not in MARKUP_CHARS]
    if len(non_space) >= config.letter_check_chars:
        share = sum(c.isalnum() for c in non_space) / len(non_space)
        if share < config.min_letter_share:
            flags.append("low_letter_share")
    longest, run = 1, 1
    for prev, cur in zip(response, response[1:]):
        run = run + 1 if cur == prev and _loop_char(cur) else 1
        longest = max(longest, run)
    if longest >= config.max_char_run:
        flags.append("repeated_chars")
    words = word_tokens(response)
    run = 1
    for prev, cur in zip(words, words[1:]):
        run = run + 1 if cur == prev else 1
        if run >= config.max_word_run and len(cur) > 1 and not cur.isdigit():  # "A A A G" in a song is fine
            flags.append("repeated_words")
            break
    if _normalized(instruction) and _normalized(instruction) == _normalized(response):
        flags.append("copies_instruction")
    return flags


# ======================================================================================================================
# Model-based scoring
# ======================================================================================================================
@dataclass
class Example:
    index: int
    instruction: str
    input: str
    output: str

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps([self.instruction, self.input, self.output]).encode()).hexdigest()[:16]


def encode_prompt_ids(tokenizer, style, instruction: str, input: str = "") -> list[int]:
    """Ids of the prompt the model sees before its answer, BOS included when the model uses one."""
    from lit_gpt.data import encode_prompt

    ids = encode_prompt(tokenizer, style, instruction, input)
    return ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)


def fit_ids(ids: list[int], max_len: int, head_fraction: float = 0.3) -> tuple[list[int], bool]:
    """Cuts the middle out of a too-long prompt: the head keeps the task framing and instruction, the tail keeps the
    question and the answer prefix the score depends on. Returns (ids, truncated)."""
    if len(ids) <= max_len:
        return ids, False
    head = int(max_len * head_fraction)
    return ids[:head] + ids[len(ids) - (max_len - head):], True


def _padded(sequences: list[list[int]], pad_id: int, device) -> torch.Tensor:
    T = max(len(s) for s in sequences)
    batch = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        batch[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return batch.to(device)


class Judge:
    """A model that rates (instruction, input, response) with a RatingPrompt."""

    def __init__(self, model, tokenizer, style, rating: RatingPrompt = ALPAGASUS_PROMPT,
                 max_seq_length: Optional[int] = None, score_from: str = "logits", max_new_tokens: int = 16) -> None:
        if score_from not in ("logits", "generate"):
            raise UserError(f"score_from={score_from!r}: use 'logits' or 'generate'")
        self.model, self.tokenizer, self.style, self.rating = model, tokenizer, style, rating
        self.score_from, self.max_new_tokens = score_from, max_new_tokens
        self.max_seq_length = min(max_seq_length or model.config.block_size, model.config.block_size)
        if score_from == "logits":
            self.prefix_ids, self.digit_ids = digit_token_ids(tokenizer, rating.low, rating.high, rating.answer_prefix)
        else:
            self.prefix_ids = tokenizer.encode_ids(rating.answer_prefix)
            self.max_seq_length -= max_new_tokens
        self.pad_id = tokenizer.eos_id if tokenizer.eos_id is not None else 0

    @property
    def settings(self) -> dict:
        return {"rating_prompt": self.rating.request, "scale": [self.rating.low, self.rating.high],
                "prompt_style": self.style.name, "score_from": self.score_from,
                "max_seq_length": self.max_seq_length, "tokenizer": self.tokenizer.fingerprint}

    def prompt_ids(self, example: Example) -> tuple[list[int], bool]:
        request = self.rating.format(example.instruction, example.input, example.output)
        return fit_ids(encode_prompt_ids(self.tokenizer, self.style, request) + self.prefix_ids, self.max_seq_length)

    @torch.inference_mode()
    def score(self, examples: Sequence[Example]) -> list[dict]:
        """One dict per example: {"score": float or None, "digit_mass" or "answer": ..., "truncated": bool}."""
        prompts = [self.prompt_ids(e) for e in examples]
        device = self.model.wte.weight.device
        if self.score_from == "generate":
            from lit_gpt.generate import generate

            results = []
            for ids, truncated in prompts:
                new = generate(self.model, torch.tensor(ids, device=device), self.max_new_tokens, temperature=0.0,
                               eos_id=self.tokenizer.stop_ids)
                answer = self.tokenizer.decode(new, skip_special_tokens=True)
                results.append({"score": parse_score(answer, self.rating.low, self.rating.high), "answer": answer,
                                "truncated": truncated})
            return results
        sequences = [ids for ids, _ in prompts]
        idx = _padded(sequences, self.pad_id, device)
        last = torch.zeros_like(idx, dtype=torch.bool)  # right padding: read each row's own last prompt position
        last[torch.arange(len(sequences)), torch.tensor([len(s) - 1 for s in sequences])] = True
        logits = self.model(idx, output_mask=last)  # (B, vocab), rows in order
        scores, mass = expected_score(logits, self.digit_ids)
        return [{"score": None if math.isnan(s) else round(s, 6), "digit_mass": round(m, 6), "truncated": t}
                for s, m, (_, t) in zip(scores.tolist(), mass.tolist(), prompts)]


class IFDScorer:
    """Instruction-Following Difficulty: mean cross-entropy of the response tokens with the prompt-formatted
    instruction before them, divided by the same without it.

    Both losses average over exactly the same response tokens: the unconditioned sequence starts with the BOS token
    (or EOS, GPT-2's document separator, when there is no BOS) so its first response token is predicted too."""

    def __init__(self, model, tokenizer, style, max_seq_length: Optional[int] = None) -> None:
        self.model, self.tokenizer, self.style = model, tokenizer, style
        self.max_seq_length = min(max_seq_length or model.config.block_size, model.config.block_size)
        start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
        if start is None:
            raise UserError(f"{tokenizer.checkpoint_dir}: the tokenizer has neither BOS nor EOS; IFD needs a token "
                            "to start the response-only sequence")
        self.start_ids = [start]
        self.pad_id = tokenizer.eos_id if tokenizer.eos_id is not None else 0

    @property
    def settings(self) -> dict:
        return {"prompt_style": self.style.name, "max_seq_length": self.max_seq_length,
                "tokenizer": self.tokenizer.fingerprint}

    def sequences(self, example: Example) -> Optional[tuple[list[int], int, list[int], bool]]:
        """(conditioned ids, where the response starts in them, unconditioned ids, truncated) or None for an empty
        response. Long pairs keep the response's head and the prompt's tail (which holds the answer header)."""
        response = self.tokenizer.encode_ids(example.output)
        if not response:
            return None
        prompt = encode_prompt_ids(self.tokenizer, self.style, example.instruction, example.input)
        max_len = self.max_seq_length
        truncated = len(prompt) + len(response) > max_len
        if truncated:
            response = response[:max(max_len - len(prompt), max_len // 2)]
            prompt = prompt[len(prompt) - (max_len - len(response)):]
        return prompt + response, len(prompt), self.start_ids + response, truncated

    def response_losses(self, sequences: list[tuple[list[int], int]]) -> list[float]:
        """Mean cross-entropy over the tokens from `start` on, for each (ids, start); one forward pass."""
        device = self.model.wte.weight.device
        idx = _padded([ids for ids, _ in sequences], self.pad_id, device)
        predicts = torch.zeros_like(idx, dtype=torch.bool)  # position t predicts token t+1
        targets, counts = [], []
        for row, (ids, start) in enumerate(sequences):
            predicts[row, start - 1:len(ids) - 1] = True
            targets.extend(ids[start:])
            counts.append(len(ids) - start)
        logits = self.model(idx, output_mask=predicts)  # (sum of counts, vocab), row-major = targets' order
        losses = F.cross_entropy(logits.float(), torch.tensor(targets, device=device), reduction="none")
        return [chunk.mean().item() for chunk in losses.split(counts)]

    @torch.inference_mode()
    def score(self, examples: Sequence[Example]) -> list[dict]:
        built = [self.sequences(e) for e in examples]
        present = [b for b in built if b is not None]
        if present:
            conditioned = self.response_losses([(ids, start) for ids, start, _, _ in present])
            alone = self.response_losses([(ids, len(self.start_ids)) for _, _, ids, _ in present])
        results, k = [], 0
        for b in built:
            if b is None:
                results.append({"score": None, "reason": "empty_response"})
                continue
            ifd = conditioned[k] / alone[k] if alone[k] > 0 else None
            results.append({"score": None if ifd is None else round(ifd, 6), "loss_conditioned": round(conditioned[k], 6),
                            "loss_response": round(alone[k], 6), "truncated": b[3]})
            k += 1
        return results


class HeuristicScorer:
    def __init__(self, config: HeuristicConfig = HeuristicConfig()) -> None:
        self.config = config

    @property
    def settings(self) -> dict:
        return asdict(self.config)

    def score(self, examples: Sequence[Example]) -> list[dict]:
        out = []
        for e in examples:
            flags = heuristic_flags(e.instruction, e.input, e.output, self.config)
            out.append({"score": 0 if flags else 1, "flags": flags})
        return out


def result_columns(method: str, result: dict) -> dict:
    """The columns a scoring result adds to its row."""
    if method == "heuristics":
        return {FLAGS_COLUMN: result["flags"], SCORE_COLUMNS[method]: result["score"]}
    return {SCORE_COLUMNS[method]: result["score"]}


# ======================================================================================================================
# Resumable scoring over a dataset
# ======================================================================================================================
class ScoreCache:
    """Sidecar JSONL beside the output: a header line with the settings, then one line per scored row
    ({"index", "hash", "result"}). Appended and flushed after every batch, so an interrupted run loses at most one
    batch; a half-written last line is ignored on reading."""

    def __init__(self, path: Path, method: str, settings: dict, restart: bool = False) -> None:
        self.path = Path(path)
        self.header = {"sidecar": "lit_gpt.quality", "method": method, "settings": settings}
        self.done: dict[int, dict] = {}
        if restart and self.path.exists():
            self.path.unlink()
        if self.path.exists():
            self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as f:
                f.write(json.dumps(self.header, ensure_ascii=False) + "\n")

    def _read(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            header = None
        if header != self.header:
            raise UserError(f"{self.path}: holds scores from other settings or another method (judge, prompt, "
                            "tokenizer or thresholds changed); pass --restart true to score again, or delete the file")
        for line in lines[1:]:
            try:
                entry = json.loads(line)
                self.done[int(entry["index"])] = entry
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # the line being written when the run was killed

    def get(self, example: Example) -> Optional[dict]:
        entry = self.done.get(example.index)
        return entry["result"] if entry is not None and entry.get("hash") == example.content_hash else None

    def add(self, batch: Sequence[Example], results: Sequence[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            for example, result in zip(batch, results):
                entry = {"index": example.index, "hash": example.content_hash, "result": result}
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self.done[example.index] = entry
            f.flush()


def score_examples(examples: Sequence[Example], scorer, cache: ScoreCache, batch_size: int = 8,
                   limit: Optional[int] = None, sort_by_length: bool = True,
                   progress: Optional[Callable[[int, int], None]] = None) -> dict[int, dict]:
    """Scores the examples not yet in the cache (at most `limit` of them, in row order) and returns
    {index: result} for every example scored so far. Batches group similar lengths to waste little padding."""
    pending = [e for e in examples if cache.get(e) is None]
    if limit is not None:
        pending = pending[:max(limit, 0)]
    if sort_by_length:
        pending.sort(key=lambda e: len(e.instruction) + len(e.input) + len(e.output))
    for start in range(0, len(pending), batch_size):
        batch = pending[start:start + batch_size]
        cache.add(batch, scorer.score(batch))
        if progress is not None:
            progress(min(start + batch_size, len(pending)), len(pending))
    return {e.index: r for e in examples if (r := cache.get(e)) is not None}


# ======================================================================================================================
# Reading and writing datasets
# ======================================================================================================================
def read_rows(path: "str | Path", columns: Optional[dict] = None) -> list[dict]:
    """The rows of a JSON/JSONL/CSV dataset as stored (columns: our field -> the file's column, as in prepare_json)."""
    from lit_gpt.data import load_records

    return load_records(path, columns=columns)


def to_example(index: int, row: dict) -> Example:
    """The instruction/input/output a row is scored on (the first exchange of a conversation). A row the data
    pipeline would reject (empty output, ...) keeps whatever text it has: the heuristics flag it, the models score
    what is there, and the filter decides."""
    from lit_gpt.data import BadRecord, normalize

    try:
        record = normalize(row)
    except BadRecord:
        record = {k: row.get(k) if isinstance(row.get(k), str) else "" for k in ("instruction", "input", "output")}
    return Example(index, record.get("instruction") or "", record.get("input") or "", record.get("output") or "")


def write_rows(path: "str | Path", rows: Sequence[dict]) -> Path:
    """Writes rows atomically: a JSON array for .json, one object per line otherwise (.jsonl)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            if path.suffix == ".json":
                json.dump(list(rows), f, ensure_ascii=False, indent=2)
                f.write("\n")
            else:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def default_output(data_path: Path, tag: str) -> Path:
    suffix = data_path.suffix if data_path.suffix in (".json", ".jsonl") else ".jsonl"
    return data_path.with_name(f"{data_path.stem}.{tag}{suffix}")


def sidecar_path(output: Path, method: str) -> Path:
    return output.with_name(f"{output.name}.{method}.scores.jsonl")


# ======================================================================================================================
# Filtering by score
# ======================================================================================================================
def select_rows(rows: Sequence[dict], method: str, min_score: Optional[float] = None,
                top_fraction: Optional[float] = None, max_score: Optional[float] = None) -> tuple[list[int], dict]:
    """(indices of kept rows in their original order, {reason: [dropped indices]}).

    heuristics: keep rows whose heuristics_pass is 1 (reasons = their flags). alpagasus/ifd: drop unscored rows,
    rows above max_score, then keep those >= min_score, or the round(top_fraction * len(rows)) highest-scoring
    ones (ties broken by row order)."""
    if method not in METHODS:
        raise UserError(f"--method {method!r}: use one of {', '.join(METHODS)}")
    column = SCORE_COLUMNS[method]
    dropped: dict[str, list[int]] = {}

    def drop(reason: str, i: int) -> None:
        dropped.setdefault(reason, []).append(i)

    if method == "heuristics" and (min_score is not None or top_fraction is not None or max_score is not None):
        raise UserError("--method heuristics keeps the rows that pass every check; it takes no --min_score, "
                        "--top_fraction or --max_score")
    if method != "heuristics" and (min_score is None) == (top_fraction is None):
        raise UserError("give exactly one of --min_score or --top_fraction")
    if top_fraction is not None and not 0.0 < top_fraction <= 1.0:
        raise UserError(f"--top_fraction {top_fraction}: must be in (0, 1]")
    if not any(column in row for row in rows):
        raise UserError(f"no row has a {column!r} column; score the file first with "
                        f"`python scripts/score_dataset.py --method {method}`")
    if method == "heuristics":
        kept = []
        for i, row in enumerate(rows):
            if row.get(column) is None:
                drop("unscored", i)
            elif row[column]:
                kept.append(i)
            else:
                for flag in row.get(FLAGS_COLUMN) or ["failed"]:
                    drop(flag, i)
        return kept, dropped
    eligible = []
    for i, row in enumerate(rows):
        score = row.get(column)
        if score is None or (isinstance(score, float) and math.isnan(score)):
            drop("unscored", i)
        elif max_score is not None and score > max_score:
            drop("above_max_score", i)
        elif min_score is not None and score < min_score:
            drop("below_min_score", i)
        else:
            eligible.append(i)
    if top_fraction is not None:
        n_keep = min(len(eligible), int(round(top_fraction * len(rows))))
        ranked = sorted(eligible, key=lambda i: (-rows[i][column], i))
        for i in ranked[n_keep:]:
            drop("below_top_fraction", i)
        eligible = sorted(ranked[:n_keep])
    return eligible, dropped


def score_stats(values: Iterable[float]) -> Optional[dict]:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return {"count": len(values), "min": values[0], "median": values[len(values) // 2], "max": values[-1],
            "mean": round(sum(values) / len(values), 6)}


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
    for i, row in enumerate(read_rows(path), 1):
        value = next((row[k] for k in field_names if isinstance(row.get(k), str)), None)
        if value is None:
            raise UserError(f"{path}: row {i} has none of the fields {', '.join(field_names)}; "
                            "unlabelled texts need a 'text' field (or a .txt file)")
        texts.append(value)
    return texts


# ======================================================================================================================
# Generation helper shared by the two generators
# ======================================================================================================================
def generate_text(model, tokenizer, prompt_ids: list[int], max_new_tokens: int, temperature: float,
                  top_p: Optional[float], generator: Optional[torch.Generator] = None) -> tuple[str, bool]:
    """(decoded continuation, finished): finished is False when it stopped at the token limit, not at EOS."""
    from lit_gpt.generate import generate

    device = model.wte.weight.device
    room = model.config.block_size - len(prompt_ids)
    max_new_tokens = min(max_new_tokens, room)
    if max_new_tokens <= 0:
        return "", False
    new = generate(model, torch.tensor(prompt_ids, device=device), max_new_tokens, temperature=temperature,
                   top_p=top_p, eos_id=tokenizer.stop_ids, generator=generator)
    return tokenizer.decode(new, skip_special_tokens=True), len(new) < max_new_tokens


def load_scoring_model(checkpoint_dir: "str | Path", device: Optional[str] = None, precision: Optional[str] = None):
    """(model in eval mode, tokenizer, prompt style) of a checkpoint, on `device` (default: cuda when available)."""
    from lit_gpt.checkpoint import load_model
    from lit_gpt.precision import choose_precision, param_dtype
    from lit_gpt.prompts import load_prompt_style
    from lit_gpt.tokenizer import Tokenizer

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = param_dtype(choose_precision(precision, cuda=device.type == "cuda"))
    model = load_model(checkpoint_dir, device=device, dtype=dtype).eval()
    return model, Tokenizer(checkpoint_dir), load_prompt_style(checkpoint_dir)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prompt_with_prefill(tokenizer, style, request: str, prefill: str) -> list[int]:
    """Ids of the request in the model's prompt style with its answer already begun by `prefill`."""
    return encode_prompt_ids(tokenizer, style, request) + tokenizer.encode_ids(prefill)


@dataclass
class SelfInstructConfig:
    num_prompt_tasks: int = 3  # seed tasks shown per request (Alpaca: 3)
    tasks_per_request: int = 5  # new tasks asked for per request
    max_new_tokens: int = 512
    temperature: float = 1.0
    top_p: Optional[float] = 0.95
    max_requests: Optional[int] = None  # stop after this many model calls even if short of the target
    seed: int = 0


def self_instruct(model, tokenizer, style, seeds: Sequence[dict], num_instructions: int,
                  config: SelfInstructConfig = SelfInstructConfig(),
                  filter_config: InstructionFilter = InstructionFilter(),
                  on_progress: Optional[Callable[[list[dict], dict], None]] = None) -> tuple[list[dict], dict]:
    """Generates up to `num_instructions` new tasks from the seeds; returns (tasks, stats).

    Each request shows `num_prompt_tasks` random seed tasks and asks for more in the same format; the tasks parsed
    from the answer go through `filter_candidates` against the pool (seed + accepted instructions)."""
    if not seeds:
        raise UserError("no seed tasks: the seed file needs rows with instruction and output")
    rng = random.Random(config.seed)
    generator = torch.Generator(device=model.wte.weight.device).manual_seed(config.seed)
    pool = [s["instruction"] for s in seeds]
    accepted: list[dict] = []
    stats = {"requests": 0, "parsed": 0, "accepted": 0, "rejected": {}}
    max_requests = config.max_requests if config.max_requests is not None else 10 * num_instructions + 10
    while len(accepted) < num_instructions and stats["requests"] < max_requests:
        stats["requests"] += 1
        examples = rng.sample(list(seeds), min(config.num_prompt_tasks, len(seeds)))
        while True:  # drop examples until the prompt leaves room for the answer
            request, prefill = self_instruct_request(examples, config.tasks_per_request)
            ids = prompt_with_prefill(tokenizer, style, request, prefill)
            if len(ids) + min(config.max_new_tokens, 64) <= model.config.block_size or len(examples) == 1:
                break
            examples = examples[:-1]
        if len(ids) >= model.config.block_size:
            stats["rejected"]["prompt_too_long"] = stats["rejected"].get("prompt_too_long", 0) + 1
            continue
        text, finished = generate_text(model, tokenizer, ids, config.max_new_tokens, config.temperature,
                                       config.top_p, generator)
        candidates = parse_generated_tasks(prefill + text, complete=finished)
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
    for i, text in enumerate(texts):
        request_ids = encode_prompt_ids(tokenizer, style, BACKWARD_REQUEST.format(text=text.strip()))
        room = model.config.block_size - config.max_new_tokens - len(prefill_ids)
        ids, _ = fit_ids(request_ids, room)
        answer, _ = generate_text(model, tokenizer, ids + prefill_ids, config.max_new_tokens, config.temperature,
                                  config.top_p, generator)
        pairs.append({"instruction": parse_backtranslated_instruction(answer), "input": "", "output": text})
        if on_progress is not None:
            on_progress(i + 1, len(texts))
    stats = {"texts": len(texts), "empty_instruction": 0, "below_min_score": 0, "unscored": 0, "kept": 0}
    to_rate = [Example(i, p["instruction"], "", p["output"]) for i, p in enumerate(pairs) if p["instruction"]]
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
