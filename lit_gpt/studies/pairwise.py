"""Every later arm of a comparison against the first, the baseline (`lit_gpt.studies.compare`): a judge model's
pairwise preference between their answers, asked in both orders because small judges prefer a position. Each run of
an arm is judged against the baseline's run of the same seed index, and the preferences of all runs are pooled.
"""

from typing import Sequence

import torch

from lit_gpt.infer.load import load
from lit_gpt.quality.judge import Judge, RatingPrompt
from lit_gpt.quality.scored_records import ScoringExample
from lit_gpt.studies.report import TIE_BAND
from lit_gpt.utils import log

PAIRWISE_PROMPT = RatingPrompt(
    name="pairwise",
    request=(
        "You are comparing two AI assistant responses to the same instruction. Decide which one follows the "
        "instruction better: more accurate, more helpful, complete and to the point.\n\n"
        "[Instruction]\n{instruction}\n\n[Input]\n{input}\n\n{response}\n\n"
        "Which response is better? Write only its number, 1 or 2. Do not let the order, the length or the style of "
        "the responses sway you."),
    low=1, high=2, answer_prefix="Better response:")


def pairwise_preference(judge: Judge, prompts: Sequence[dict], answers_a: Sequence[str], answers_b: Sequence[str],
                        batch_size: int = 4) -> list[dict]:
    """Per prompt: the judge's probability that answer b is better than answer a, asked in both orders."""

    def pair(prompt: dict, first: str, second: str, index: int) -> ScoringExample:
        both = f"[Response 1]\n{first.strip() or '(empty)'}\n\n[Response 2]\n{second.strip() or '(empty)'}"
        return ScoringExample(index, prompt["instruction"], prompt.get("input") or "", both)

    results = []
    for start in range(0, len(prompts), batch_size):
        chunk = range(start, min(start + batch_size, len(prompts)))
        b_second = judge.score([pair(prompts[i], answers_a[i], answers_b[i], i) for i in chunk])
        b_first = judge.score([pair(prompts[i], answers_b[i], answers_a[i], i) for i in chunk])
        for r2, r1 in zip(b_second, b_first):
            # score 1 = "response 1 is better", 2 = "response 2"; in [1, 2] as an expectation
            p_second = None if r2["score"] is None else r2["score"] - 1
            p_first = None if r1["score"] is None else 2 - r1["score"]
            known = [p for p in (p_second, p_first) if p is not None]
            results.append({"p_b_better": sum(known) / len(known) if known else None,
                            "b_second": p_second, "b_first": p_first})
    return results


def win_rate(preferences: Sequence[dict]) -> dict:
    values = [p["p_b_better"] for p in preferences if p["p_b_better"] is not None]
    wins = sum(v > 0.5 + TIE_BAND for v in values)
    losses = sum(v < 0.5 - TIE_BAND for v in values)
    ties = len(values) - wins - losses
    consistent = sum((p["b_second"] > 0.5) == (p["b_first"] > 0.5) for p in preferences
                     if p["b_second"] is not None and p["b_first"] is not None)
    return {"win_rate": (wins + 0.5 * ties) / len(values) if values else None, "wins": wins, "ties": ties,
            "losses": losses, "mean_preference": sum(values) / len(values) if values else None,
            "order_consistent": consistent / len(values) if values else None}


def judge_arms(judge_checkpoint_dir, arms: list[dict], prompts: list[dict], device: torch.device) -> dict:
    """Adds each trained arm's pooled `win_rate` against the baseline (the first arm) to it as "judge"; marks every
    answer with the judge's probability that it beats the baseline's. Returns what the report says of the judge."""
    judge_model = load(judge_checkpoint_dir, device=device)
    judge = Judge(judge_model.model, judge_model.tokenizer, judge_model.style, rating=PAIRWISE_PROMPT)
    baseline = arms[0]
    log(f"=== judging every arm against {baseline['name']} with {judge_checkpoint_dir}")
    for arm in arms[1:]:
        if arm["role"] not in ("arm", "aa_control"):
            continue
        pooled = []
        for base_run, run in zip(baseline["runs"], arm["runs"]):
            answers = run["evaluation"]["answers"]
            preferences = pairwise_preference(judge, prompts, [a["answer"] for a in base_run["evaluation"]["answers"]],
                                              [a["answer"] for a in answers])
            for answer, preference in zip(answers, preferences):
                answer["p_better_than_baseline"] = preference["p_b_better"]
            pooled += preferences
        arm["judge"] = win_rate(pooled)
    del judge_model
    return {"checkpoint_dir": str(judge_checkpoint_dir), "baseline": baseline["name"], "tie_band": TIE_BAND,
            "prompt": PAIRWISE_PROMPT.request}
