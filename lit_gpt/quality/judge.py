"""A judge model that rates (instruction, input, response) on a scale (AlpaGasus, Chen et al. 2023; also the
self-curation step of backtranslation).

The score is the expected value of the digit the judge would write after "Score:", from the probabilities of the
digit tokens in one batched forward pass (no sampling, no parsing); or, with score_from="generate", the number in its
greedy answer (`parse_score`).
"""

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.infer.answer import continue_batch
from lit_gpt.quality.scored_records import ScoringExample, fit_ids, right_padded
from lit_gpt.utils import UserError

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

    def prompt_ids(self, example: ScoringExample) -> tuple[list[int], bool]:
        request = self.rating.format(example.instruction, example.input, example.output)
        return fit_ids(encode_prompt(self.tokenizer, self.style, request).tolist() + self.prefix_ids, self.max_seq_length)

    @torch.inference_mode()
    def score(self, examples: Sequence[ScoringExample]) -> list[dict]:
        """One dict per example: {"score": float or None, "digit_mass" or "answer": ..., "truncated": bool}."""
        prompts = [self.prompt_ids(e) for e in examples]
        device = self.model.wte.weight.device
        if self.score_from == "generate":
            answers = continue_batch(self.model, self.tokenizer, [ids for ids, _ in prompts], self.max_new_tokens,
                                     batch_size=len(prompts))
            return [{"score": parse_score(a.text, self.rating.low, self.rating.high), "answer": a.text,
                     "truncated": truncated} for a, (_, truncated) in zip(answers, prompts)]
        sequences = [ids for ids, _ in prompts]
        idx = right_padded(sequences, self.pad_id, device)
        last = torch.zeros_like(idx, dtype=torch.bool)  # right padding: read each row's own last prompt position
        last[torch.arange(len(sequences)), torch.tensor([len(s) - 1 for s in sequences])] = True
        logits = self.model(idx, output_mask=last)  # (B, vocab), rows in order
        scores, mass = expected_score(logits, self.digit_ids)
        return [{"score": None if math.isnan(s) else round(s, 6), "digit_mass": round(m, 6), "truncated": t}
                for s, m, (_, t) in zip(scores.tolist(), mass.tolist(), prompts)]
