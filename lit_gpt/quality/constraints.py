"""Verifiable constraints: instructions given rules that a program checks, and answers scored by those checks.

IFEval (Zhou et al. 2023) checks 25 kinds of instruction that a program can verify: "your entire response should be
in lowercase", "answer with at least 300 words", "wrap the entire output in JSON", "end with a postscript starting
with P.S.". lm-eval implements each kind as a class that writes its own description from drawn arguments and checks
a response. `add_constraints` draws kinds and arguments with those classes (no two conflicting kinds in one row) and
appends the descriptions to the instructions of any dataset, keeping each kind and its arguments beside the row
("constraints": [{"id", "kwargs"}]); `ConstraintScorer` gives an answer the share of its row's constraints that it
follows (IFEval's strict check). Two sampled answers to such a prompt, ranked by that share, are a preference pair
whose label no judge model gave (`scripts/score_dataset.py --method constraints`, then `prepare_preferences.py
--rank_by score_constraints`).

The kinds and the checkers are IFEval's own: a model tuned on such pairs and then scored on IFEval meets prompts it
has not seen but kinds of constraint it was trained to follow. Report it as such.
"""

import random
from typing import Optional, Sequence

from lit_gpt.eval import ifeval
from lit_gpt.quality.scored_records import ScoringExample
from lit_gpt.utils import UserError

REPEAT_PROMPT = "combination:repeat_prompt"  # its description and check quote the request it is given


def constraint_kinds() -> list[str]:
    """The ids of the kinds of constraint, e.g. change_case:english_lowercase (IFEval's 25)."""
    return sorted(ifeval.instruction_registry()[0])


def draw_constraints(instruction: str, count: int, rng: random.Random, kinds: Sequence[str]) -> list[dict]:
    """Up to `count` constraints for `instruction`, of different kinds that do not conflict (fewer when `kinds`
    run out): [{"id", "kwargs", "description"}]. lm-eval's classes draw their arguments from the `random` module:
    it is seeded from `rng` for each draw and the caller's state restored."""
    registry, conflicts = ifeval.instruction_registry()
    drawn: list[dict] = []
    state = random.getstate()
    try:
        while len(drawn) < count:
            allowed = [k for k in kinds if not any(_conflict(k, c["id"], conflicts) for c in drawn)]
            if not allowed:
                break
            kind = rng.choice(allowed)
            random.seed(rng.getrandbits(64))
            checker = registry[kind](kind)
            description = (checker.build_description(prompt_to_repeat=instruction) if kind == REPEAT_PROMPT
                           else checker.build_description())
            drawn.append({"id": kind, "kwargs": dict(checker.get_instruction_args() or {}),
                          "description": description})
    finally:
        random.setstate(state)
    return drawn


def _conflict(a: str, b: str, conflicts: dict) -> bool:
    """Kinds a and b cannot go together: the same kind, or either lists the other (lm-eval lists some one way)."""
    return a == b or b in conflicts.get(a, ()) or a in conflicts.get(b, ())


def add_constraints(rows: Sequence[dict], count: int, seed: int, kinds: Optional[Sequence[str]] = None) -> list:
    """Each row ({"instruction", "input", ...}) with `count` constraints: their descriptions appended to the
    instruction (after a space), their kinds and arguments in "constraints", any "output" left out (it was written
    without them). A row's draw depends only on `seed` and its position."""
    kinds = checked_kinds(kinds, count)
    constrained = []
    for position, row in enumerate(rows):
        drawn = draw_constraints(row["instruction"], count, random.Random(f"{seed}:{position}"), kinds)
        text = " ".join([row["instruction"].rstrip()] + [c["description"] for c in drawn])
        kept = {k: v for k, v in row.items() if k not in ("instruction", "output", "constraints")}
        constrained.append({"instruction": text, **kept,
                            "constraints": [{"id": c["id"], "kwargs": c["kwargs"]} for c in drawn]})
    return constrained


def checked_kinds(kinds: Optional[Sequence[str]], count: int) -> list[str]:
    """The kinds to draw from (default: all), checked with `count` (--kinds, --count)."""
    known = constraint_kinds()
    kinds = known if kinds is None else list(kinds)
    unknown = sorted(set(kinds) - set(known))
    if unknown:
        raise UserError(f"--kinds: unknown constraint kind(s) {', '.join(unknown)}; the kinds are: {', '.join(known)}")
    if count < 1 or not kinds:
        raise UserError("--count must be at least 1 and --kinds must name at least one kind")
    return kinds


def checked_constraints(value, where: str) -> list[dict]:
    """A row's "constraints" field, checked: a non-empty list of {"id": a known kind, "kwargs": an object}."""
    known = set(constraint_kinds())
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: \"constraints\" must be a non-empty list of {{\"id\", \"kwargs\"}} (rows written "
                        "by scripts/add_constraints.py)")
    for c in value:
        if not isinstance(c, dict) or c.get("id") not in known or not isinstance(c.get("kwargs", {}), dict):
            raise UserError(f"{where}: constraint {str(c)[:80]} is not {{\"id\": a kind of constraint, \"kwargs\": "
                            "an object}; see scripts/add_constraints.py --help for the kinds")
    return value


class ConstraintScorer:
    """score = the share of a row's constraints that its output follows (IFEval's strict check), 0 to 1."""

    @property
    def settings(self) -> dict:
        return {"check": "ifeval strict"}

    def score(self, examples: Sequence[ScoringExample]) -> list[dict]:
        results = []
        for e in examples:
            constraints = checked_constraints(e.constraints, f"row {e.index + 1}")
            try:
                verdicts = ifeval.strict_verdicts([c["id"] for c in constraints],
                                                  [c.get("kwargs", {}) for c in constraints],
                                                  e.instruction, e.output, key=e.index)
            except Exception as error:  # arguments the kind's class cannot take (a hand-edited file)
                raise UserError(f"row {e.index + 1}: its constraints cannot be checked ({type(error).__name__}: "
                                f"{str(error)[:120]}); write them with scripts/add_constraints.py") from None
            results.append({"score": sum(verdicts) / len(verdicts)})
        return results
