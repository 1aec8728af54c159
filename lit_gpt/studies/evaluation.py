"""What every run of a study is evaluated on (`held_out_set`), and the evaluation of one model (`evaluate_model`).

- Reference-answer loss per answer style: the held-out set's answers (--eval_path, the metric `answer_nll`) and each
  of --reference_sets (`answer_nll:<name>`: e.g. Self-Instruct's human answers, LIMA's long answers, GPT-4's),
  tokenized like training data in the variants' tokenizer and prompt style (`lit_gpt.eval.run.reference_examples`).
  Each set is scored once by `lit_gpt.eval.reference_loss`, which sums each answer's loss with and without its
  end-of-turn tokens (`_no_eos`) from the same forward passes, because a model that has learned to stop gains most
  of its loss advantage on that one token. Both token-weighted (long answers weigh more) and per answer (every answer
  once: the per-item score the statistics use).
- IFEval: prompt-level verdicts, each answer's length in words (the covariate of the length-controlled view) and
  whether it echoes its prompt (`lit_gpt.eval.echo`).
- EOS rate: greedy answers to --eval_prompts held-out prompts that stop within --max_new_tokens (and the judge's input).

Held-out prompts that near-duplicate a variant's training instructions (ROUGE-L >= CONTAMINATION_THRESHOLD) are
counted per set and warned about: they flatter that variant.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from lit_gpt.data.mixing import NearDuplicateFinder, instruction_key
from lit_gpt.data.prepared import load_prepared, settings_fingerprint
from lit_gpt.data.tokenize import IGNORE_INDEX, tokenize_examples
from lit_gpt.eval import ifeval
from lit_gpt.eval.echo import echo_flags
from lit_gpt.eval.held_out import eval_rows, seeded_sample
from lit_gpt.eval.reference_loss import reference_loss
from lit_gpt.eval.run import reference_examples, run_ifeval
from lit_gpt.infer.answer import answer_prompts
from lit_gpt.prompts.base import PromptStyle
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.studies.analysis import HELD_OUT
from lit_gpt.studies.report import CONTAMINATION_THRESHOLD
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError, log


@dataclass
class EvalSet:
    description: str
    prompts: list  # dicts with instruction, input and (maybe None) output
    scored: list  # prepared examples (input_ids, labels) of the prompts that have a reference answer


def build_eval_set(eval_path: Optional[Path], tokenizer, prompt_style: str, max_seq_length: int,
                   variant_tests: dict) -> EvalSet:
    if eval_path is None:  # the union of the variants' test sets, each instruction once
        seen, scored = set(), []
        for examples in variant_tests.values():
            for example in examples:
                if instruction_key(example) not in seen:
                    seen.add(instruction_key(example))
                    scored.append(example)
        names = ", ".join(variant_tests)
        description = f"union of the variants' test sets ({names}): {len(scored)} examples"
        return EvalSet(description, [_prompt(e) for e in scored], scored)
    eval_path = Path(eval_path)
    if eval_path.is_dir():
        _, test, manifest = load_prepared(eval_path, tokenizer)
        if manifest.get("prompt_style") != prompt_style:
            raise UserError(f"{eval_path}: prepared with prompt style {manifest.get('prompt_style')!r}, the variants "
                            f"with {prompt_style!r}; prepare it again with --prompt_style {prompt_style}")
        return EvalSet(f"{eval_path}/test.pt: {len(test)} examples", [_prompt(e) for e in test], test)
    rows = eval_rows(eval_path)
    with_answer = [{**r, "source": "eval", "id": f"eval-{i}"} for i, r in enumerate(rows) if r["output"]]
    for row in with_answer:
        if not row.get("messages"):
            row.pop("messages", None)
    scored, _ = tokenize_examples(with_answer, tokenizer, get_prompt_style(prompt_style), max_seq_length)
    return EvalSet(f"{eval_path}: {len(rows)} prompts, {len(scored)} with a reference answer", rows, scored)


def _prompt(example: dict) -> dict:
    return {"instruction": example["instruction"], "input": example.get("input", ""), "output": example.get("output")}


@dataclass
class HeldOut:
    """What every run is evaluated on, in the variants' tokenizer and prompt style."""
    eval_set: EvalSet
    prompts: list[dict]  # answered greedily: the EOS rate and the judge
    references: dict[str, list[dict]]  # answer style -> scored examples (HELD_OUT first: --eval_path's answers)
    descriptions: dict[str, str]  # answer style -> where its answers come from
    ifeval: list  # IFEval prompts
    tokenizer: Tokenizer
    style: PromptStyle

    def fingerprint(self, settings) -> str:
        """Changes when anything the evaluation of a run depends on changes (an earlier run's evaluation is reused
        only under the same fingerprint)."""
        return settings_fingerprint({
            "prompts": [p["instruction"] for p in self.prompts], "ifeval": [p.key for p in self.ifeval],
            "references": {name: [e["instruction"] + str(len(e["input_ids"])) for e in examples]
                           for name, examples in self.references.items()},
            "style": self.style.name, "max_new_tokens": settings.max_new_tokens,
            "ifeval_max_new_tokens": settings.ifeval_max_new_tokens})


def held_out_set(settings, tokenizer: Tokenizer, prompt_style: str, max_seq_length: int,
                 variant_tests: dict) -> HeldOut:
    """The held-out set, the reference sets and the seeded samples of them that are answered and scored."""
    ifeval_set = ifeval.load_prompts() if settings.ifeval_prompts else []
    if settings.ifeval_prompts > 0:
        ifeval_set = seeded_sample(ifeval_set, settings.ifeval_prompts, f"{settings.seed}/ifeval")
    style = get_prompt_style(prompt_style)
    eval_set = build_eval_set(settings.eval_path, tokenizer, prompt_style, max_seq_length, variant_tests)
    prompts = seeded_sample(eval_set.prompts, settings.eval_prompts, settings.seed)
    references = {HELD_OUT: seeded_sample(eval_set.scored, settings.eval_examples, settings.seed + 1)}
    descriptions = {HELD_OUT: eval_set.description}
    for name, path in settings.reference_sets.items():
        examples = reference_examples(path, tokenizer, style, max_seq_length)
        references[name] = seeded_sample(examples, settings.eval_examples, f"{settings.seed}/{name}")
        descriptions[name] = str(path)
    references = {name: kept for name, examples in references.items()
                  if (kept := [e for e in examples if _scorable(e, tokenizer.eos_id)])}
    log(f"held-out set: {eval_set.description}; {len(prompts)} prompts answered; answers scored: "
        + (", ".join(f"{name} {len(examples)}" for name, examples in references.items()) or "none"))
    return HeldOut(eval_set, prompts, references, descriptions, ifeval_set, tokenizer, style)


def _scorable(example: dict, eos_id: Optional[int]) -> bool:
    """An answer with a token besides its end-of-turn one (else the loss without EOS has nothing to score)."""
    labels = example["labels"][1:]
    return bool(((labels != IGNORE_INDEX) & (labels != eos_id)).any())


# ---- contamination ---------------------------------------------------------------------------------------------------
def contamination(train: Sequence[dict], prompts: Sequence[dict]) -> list[tuple[int, int, float]]:
    """(held-out index, train index, ROUGE-L) for held-out prompts whose instruction near-duplicates a training one."""
    pairs = NearDuplicateFinder("exact", CONTAMINATION_THRESHOLD).pairs(prompts, train)
    best: dict[int, tuple[int, int, float]] = {}
    for i, j, score in pairs:
        if i not in best or score > best[i][2]:
            best[i] = (i, j, score)
    return sorted(best.values())


def warn_of_contamination(data: dict, held_out: HeldOut) -> dict[str, dict[str, list]]:
    """data dir -> answer style -> `contamination` of its training examples by that set's prompts (the held-out
    set: all its prompts); a warning for each found."""
    sets = {HELD_OUT: held_out.eval_set.prompts,
            **{name: [_prompt(e) for e in examples] for name, examples in held_out.references.items()
               if name != HELD_OUT}}
    leaks = {}
    for data_dir, (train, _, _) in data.items():
        leaks[str(data_dir)] = {}
        for name, prompts in sets.items():
            found = contamination(train, prompts)
            leaks[str(data_dir)][name] = found
            if found:
                i, j, score = found[0]
                log(f"warning: {data_dir}: {len(found)} of {len(prompts)} {name} prompts near-duplicate training "
                    f"instructions (ROUGE-L >= {CONTAMINATION_THRESHOLD}), e.g. {prompts[i]['instruction'][:80]!r} ~ "
                    f"{train[j]['instruction'][:80]!r} ({score:.2f}); its scores on them are optimistic")
    return leaks


# ---- one model ----------------------------------------------------------------------------------------------------
def answer_losses(model, examples: Sequence[dict], eos_id: Optional[int], batch_size: int) -> dict:
    """One answer style's loss, token-weighted and per answer, with and without the end-of-turn token (both from the
    same forward passes)."""
    result = {"answers": len(examples), "cut": sum(bool(e.get("truncated")) for e in examples)}
    loss = reference_loss(model, examples, micro_batch_size=batch_size, eos_id=eos_id)
    for suffix, part in (("", loss), ("_no_eos", loss.without_eos)):
        if part is None:  # every scored token is an end-of-turn token
            raise ValueError("the answers have no text tokens to score without their end-of-turn tokens")
        result[f"token_nll{suffix}"] = part.mean_nll
        result[f"tokens{suffix}"] = part.tokens
        result[f"answer_nll{suffix}"] = part.per_example_mean()
    return result


def ifeval_scores(model, tokenizer, style, prompts: Sequence, max_new_tokens: int, batch_size: int) -> dict:
    """IFEval of one model: the four accuracies and, per prompt, the verdicts, echo flags and answer lengths."""
    answers, result = run_ifeval(model, tokenizer, style, prompts, max_new_tokens, batch_size)
    texts = [a.text for a in answers]
    return {**result.metrics, "prompt_strict": result.prompt_strict, "prompt_loose": result.prompt_loose,
            "echo": echo_flags([p.prompt for p in prompts], texts), "answer_words": [len(t.split()) for t in texts],
            "finished_share": sum(a.finished for a in answers) / len(answers), "responses": texts}


@torch.inference_mode()
def evaluate_model(model, held_out: HeldOut, settings, style: Optional[PromptStyle] = None,
                   tokenizer: Optional[Tokenizer] = None, with_losses: bool = True) -> dict:
    """Every measure of one model on the held-out set. `style`/`tokenizer`: the model's own when they are not the
    variants' (an instruction-tuned reference); `with_losses`: False when its tokens or format differ (the answers'
    losses would not be comparable)."""
    style, tokenizer = style or held_out.style, tokenizer or held_out.tokenizer
    batch = settings.eval_batch_size
    losses = {name: answer_losses(model, examples, tokenizer.eos_id, batch)
              for name, examples in held_out.references.items()} if with_losses else {}
    answers = [{"answer": a.text, "finished": a.finished}
               for a in answer_prompts(model, tokenizer, style, held_out.prompts, settings.max_new_tokens,
                                       batch_size=batch)]
    scores = ifeval_scores(model, tokenizer, style, held_out.ifeval, settings.ifeval_max_new_tokens,
                           batch) if held_out.ifeval else None
    return {"losses": losses, "ifeval": scores, "answers": answers,
            "eos_rate": sum(a["finished"] for a in answers) / len(answers) if answers else None}
