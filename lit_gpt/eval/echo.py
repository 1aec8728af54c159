"""Echo detection: answers that repeat the prompt instead of answering it.

A weakly tuned model often copies its prompt. Under IFEval such a copy can pass checks by accident (the prompt names
the keyword to include, is long enough for a "at least N words" rule, has no comma ...), so a fine-tune that echoes
more can look better. An answer is an echo when it starts with the whole prompt (whitespace and case ignored) or
when its ROUGE-L F against the prompt is >= ECHO_ROUGE_L (`lit_gpt.data.similarity.rouge_l`, over words). Studies
report IFEval accuracy as scored and with every echo counted as a failure (the same prompts, so both stay paired
across arms), and the passes by echo apart.
"""

from typing import Sequence

from lit_gpt.data.similarity import rouge_l

ECHO_ROUGE_L = 0.8  # an answer this similar to its prompt restates it (a real answer shares far fewer words in order)


def _squeezed(text: str) -> str:
    return " ".join(text.split()).lower()


def is_echo(prompt: str, answer: str) -> bool:
    """True when `answer` repeats `prompt`: the prompt as its prefix, or ROUGE-L F >= ECHO_ROUGE_L."""
    prompt, answer = _squeezed(prompt), _squeezed(answer)
    if not prompt or not answer:
        return False
    return answer.startswith(prompt) or rouge_l(prompt, answer) >= ECHO_ROUGE_L


def echo_flags(prompts: Sequence[str], answers: Sequence[str]) -> list[bool]:
    if len(prompts) != len(answers):
        raise ValueError(f"{len(answers)} answers for {len(prompts)} prompts")
    return [is_echo(p, a) for p, a in zip(prompts, answers)]


def without_echoes(passed: Sequence[bool], echoes: Sequence[bool]) -> list[bool]:
    """The verdicts with every echo counted as a failure (an echo is no answer, whatever a rule checker says)."""
    return [bool(p) and not e for p, e in zip(passed, echoes)]
