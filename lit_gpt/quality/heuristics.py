"""Rule-based quality flags: empty/short/long answers, refusals, noise, the instruction copied as the answer."""

import re
from dataclasses import asdict, dataclass
from typing import Sequence

from lit_gpt.data.similarity import word_tokens
from lit_gpt.quality.scored_records import ScoringExample

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


class HeuristicScorer:
    def __init__(self, config: HeuristicConfig = HeuristicConfig()) -> None:
        self.config = config

    @property
    def settings(self) -> dict:
        return asdict(self.config)

    def score(self, examples: Sequence[ScoringExample]) -> list[dict]:
        out = []
        for e in examples:
            flags = heuristic_flags(e.instruction, e.input, e.output, self.config)
            out.append({"score": 0 if flags else 1, "flags": flags})
        return out
