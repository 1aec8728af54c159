"""Mixing instruction datasets (`scripts/mix_datasets.py`): several inputs -> one prepared dataset.

Inputs are prepared dataset directories (train.pt / test.pt / manifest.json of `lit_gpt.data.prepare`) and, when
convenient, normalized record files (JSON / JSONL / CSV rows that `lit_gpt.data.normalize` understands), which are
split and tokenized here with the same settings as the prepared inputs (or those of --checkpoint_dir). Prepared
inputs must share the tokenizer, the prompt style and max_seq_length: their token ids are concatenated as they are.

How much of each input goes into the training set (test sets are never sampled):
- `weights`: a fraction of each input's usable training examples (1 = all, 0.5 = a seeded random half, 2 = every
  example twice); "usable" means left after the cleaning below, so the counts in the output are exact.
- `counts`: that many examples of each input.
Asking for more than an input has is an error unless `allow_oversample` is set; then every example is repeated
as often as it fits whole and a seeded random part of them once more. Sampled examples keep their order; train.pt
lists the inputs one after the other (the training loop's --order decides the order it trains in).

Cleaning, in input order (an earlier input wins every conflict, so list the input you trust most first):
1. test set = the union of the inputs' test sets without exact duplicates and without near-duplicates across inputs;
2. a training example is dropped as `duplicate` when its whole conversation (case and spacing aside) equals one
   already taken, as `test_overlap` when its instruction equals or near-duplicates a test instruction (the test set
   must measure generalisation, so nothing of it may be trained on), and as `near_duplicate` when its instruction
   near-duplicates one taken from an earlier input. Near-duplicates within one input are left alone: the
   dataset's authors chose them (e.g. one paragraph with several questions).
3. the input is sampled from what is left, and what it contributes is what later inputs are compared against.

Near-duplicate: ROUGE-L F >= `near_dup_threshold` (0.7, Self-Instruct's rule) between the instructions, and, when
either example has an input, between the inputs too: "Summarize this paragraph." over two different paragraphs is
not a duplicate, nor are two different questions about one paragraph. Up to EXACT_SEARCH_LIMIT texts in all, every
pair is checked exactly (`lit_gpt.data.similarity.near_duplicates`, pruned by an LCS bound). Above it the all-pairs search
grows quadratically (20k texts = 2*10^8 pairs), so MinHash/LSH over word sets proposes candidates in about linear
time and ROUGE-L confirms them (no false positives; LSH is probabilistic, so a true pair can be missed). The
manifest records which search was used and why. The 0.7 rule also joins instructions made from one template
("Identify which instrument is string or percussion: Kpanlogo, Shamisen" vs "...: Agiarut, Agung", 0.78) and very
short questions ("What is a homonym?" vs "What is a haiku?", 0.75); the manifest counts what it dropped, and a
higher --near_dup_threshold keeps more.

The destination is never one of the inputs (nor contains or lies inside one) and is not written over when it holds a
model, a prepared (not mixed) dataset or a mixture of other sources, unless `overwrite` (`prepared.check_destination`).
"""

import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from lit_gpt.data.normalize import BadRecord, conversation, normalize
from lit_gpt.data.prepare import model_block_size, split_examples
from lit_gpt.data.prepared import (check_destination, length_stats, load_prepared, settings_fingerprint,
                                   source_fingerprint, trained_token_share, write_prepared)
from lit_gpt.data.records import load_records
from lit_gpt.data.similarity import NearDuplicateFinder
from lit_gpt.data.tokenize import tokenize_examples
from lit_gpt.prompts.styles import default_prompt_style, get_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError, check_output, file_sha256

EXACT_SEARCH_LIMIT = 20_000  # texts (train + test of all inputs); above it near-duplicates are found by MinHash/LSH
MUST_MATCH = ("tokenizer_fingerprint", "prompt_style", "max_seq_length")
DROP_REASONS = ("duplicate", "test_overlap", "near_duplicate")
MIX_VERSION = 1


# ---- texts compared ------------------------------------------------------------------------------------------------
def instruction_text(example: dict) -> str:
    """The instruction with its input (when there is one), as one text."""
    extra = example.get("input") or ""
    return f"{example['instruction']}\n{extra}" if extra.strip() else example["instruction"]


def _squeezed(text: str) -> str:
    return " ".join(str(text).lower().split())


def instruction_key(example: dict) -> str:
    return _squeezed(instruction_text(example))


def content_key(example: dict) -> str:
    """Exact-duplicate key: the whole conversation, case and spacing aside."""
    turns = [[m["role"], _squeezed(m["content"]), _squeezed(m.get("input", ""))] for m in conversation(example)]
    return hashlib.sha256(json.dumps(turns).encode()).hexdigest()


# ---- inputs ----------------------------------------------------------------------------------------------------------
@dataclass
class MixInput:
    path: Path
    kind: str  # "prepared" or "records"
    name: str
    train: list
    test: list
    manifest: dict = field(default_factory=dict)
    fingerprint: str = ""
    report: dict = field(default_factory=dict)


def load_input(path: Path, settings: Optional[dict] = None, tokenizer=None, seed: int = 42,
               test_split_fraction: float = 0.05) -> MixInput:
    """A prepared dataset directory, or a record file tokenized with `settings` (prompt_style, max_seq_length,
    mask_inputs, truncation) and `tokenizer`."""
    path = Path(path)
    if path.is_dir():
        train, test, manifest = load_prepared(path)
        name = manifest.get("name") or path.name
        return MixInput(path, "prepared", name, train, test, manifest, manifest.get("fingerprint", ""))
    if not path.is_file():
        raise UserError(f"{path}: not found; pass prepared dataset directories (data/<name>) or JSON/JSONL "
                        "record files")
    if settings is None or tokenizer is None:
        raise UserError(f"{path}: a record file must be tokenized; pass --checkpoint_dir (its tokenizer) or mix it "
                        "with a prepared dataset whose tokenizer directory still exists")
    style = get_prompt_style(settings["prompt_style"])
    style.check_tokenizer(tokenizer)

    name = path.name.split(".")[0]
    examples, bad = [], Counter()
    for i, record in enumerate(load_records(path), 1):
        try:
            example = normalize(record, source=name)
        except BadRecord as e:
            bad[str(e)] += 1
            continue
        example.setdefault("id", f"{name}-{i}")
        examples.append(example)
    if not examples:
        raise UserError(f"{path}: no usable rows ({dict(bad)}); rows need instruction and output fields (or a "
                        "conversation); prepare other layouts with their scripts/prepare_*.py first")
    rows_train, rows_test = split_examples(examples, test_split_fraction, seed)
    args = (tokenizer, style, settings["max_seq_length"], settings.get("mask_inputs", True),
            settings.get("truncation", "truncate"))
    train, dropped_train = tokenize_examples(rows_train, *args)
    test, dropped_test = tokenize_examples(rows_test, *args)
    skipped = dict(bad + dropped_train + dropped_test)
    manifest = {"name": name, "tokenizer_fingerprint": tokenizer.fingerprint, "prompt_style": style.name,
                "max_seq_length": settings["max_seq_length"], "skipped_rows": skipped,
                "test_split_fraction": test_split_fraction}
    return MixInput(path, "records", name, train, test, manifest, file_sha256(path))


def check_compatible(inputs: Sequence[MixInput]) -> None:
    """One error naming every setting on which the inputs disagree."""
    problems = []
    for key in MUST_MATCH:
        values = {str(i.path): i.manifest.get(key) for i in inputs}
        if len(set(map(str, values.values()))) > 1:
            problems.append(f"{key} differs (" + ", ".join(f"{p}: {v}" for p, v in values.items()) + ")")
    if problems:
        raise UserError("cannot mix " + ", ".join(str(i.path) for i in inputs) + ": " + "; ".join(problems)
                        + "; prepare them again with the same --checkpoint_dir, --prompt_style and --max_seq_length")


# ---- the mix ---------------------------------------------------------------------------------------------------------
def requested_counts(available: int, weight: Optional[float], count: Optional[int]) -> int:
    return count if count is not None else int(round(weight * available))


def sample_indices(available: int, requested: int, rng: random.Random, allow_oversample: bool,
                   where: str) -> list[int]:
    """`requested` indices into range(available) in their original order; repeats only with allow_oversample."""
    if requested <= available:
        return sorted(rng.sample(range(available), requested))
    if not allow_oversample:
        raise UserError(f"{where}: asks for {requested} training examples but only {available} are available (after "
                        "removing duplicates and test overlap); ask for at most that many, or pass "
                        "--allow_oversample true to repeat examples")
    if available == 0:
        raise UserError(f"{where}: no training example left to repeat (all were duplicates or overlapped the test set)")
    whole, rest = divmod(requested, available)
    return list(range(available)) * whole + sorted(rng.sample(range(available), rest))


def mix(
    inputs: Sequence["str | Path"],
    destination_path: "str | Path",
    weights: Optional[Sequence[float]] = None,
    counts: Optional[Sequence[int]] = None,
    seed: int = 42,
    allow_oversample: bool = False,
    near_dup_threshold: float = 0.7,
    dedup_method: str = "auto",
    checkpoint_dir: Optional["str | Path"] = None,
    test_split_fraction: float = 0.05,
    name: Optional[str] = None,
    overwrite: bool = False,
) -> dict:
    """Mixes the inputs into destination_path/{train.pt, test.pt, manifest.json}; returns the manifest.
    See the module docstring for what weights/counts mean and how duplicates and test overlap are removed, and when
    `overwrite` is needed."""
    started = time.perf_counter()
    inputs = [Path(p) for p in inputs]
    destination_path = Path(destination_path)
    weights = _check_mix_args(inputs, weights, counts)
    check_output(destination_path, {"--inputs": inputs, "--checkpoint_dir": checkpoint_dir}, "--destination_path")

    loaded = _load_inputs(inputs, checkpoint_dir, seed, test_split_fraction)
    check_compatible(loaded)
    # which data the mix is made of, whatever the weights or the inputs' tokenization: their sources
    sources = settings_fingerprint(sorted(source_fingerprint(i.manifest) or i.fingerprint for i in loaded))
    check_destination(destination_path, "mixture", sources, inputs, overwrite)
    n_texts = sum(len(i.train) + len(i.test) for i in loaded)
    if dedup_method == "auto":
        dedup_method = "exact" if n_texts <= EXACT_SEARCH_LIMIT else "minhash"
    finder = NearDuplicateFinder(dedup_method, near_dup_threshold, seed)

    test = _mix_test_sets(loaded, finder)
    train = _mix_train_sets(loaded, test, finder, weights, counts, seed, allow_oversample)
    if not train:
        raise UserError(f"{', '.join(map(str, inputs))}: the mix has no training example; raise --weights/--counts")

    settings = _mix_settings(loaded, weights, counts, seed, allow_oversample, near_dup_threshold, dedup_method,
                             n_texts)
    manifest = _mix_manifest(name or destination_path.name, loaded, train, test, settings, sources, started)
    write_prepared(destination_path, train, test, manifest)
    return manifest


def _check_mix_args(inputs: Sequence[Path], weights: Optional[Sequence[float]],
                    counts: Optional[Sequence[int]]) -> Optional[Sequence[float]]:
    """One clear line for each impossible request; returns the weights (all 1 when neither weights nor counts)."""
    if len(inputs) < 1:
        raise UserError("--inputs: give at least one dataset")
    if weights is not None and counts is not None:
        raise UserError("pass either --weights or --counts, not both")
    amounts = weights if weights is not None else counts
    if amounts is not None and len(amounts) != len(inputs):
        raise UserError(f"{'--weights' if weights is not None else '--counts'} has {len(amounts)} values for "
                        f"{len(inputs)} inputs; give one per input, in the same order")
    if weights is not None and any(w < 0 for w in weights):
        raise UserError(f"--weights {list(weights)}: must be >= 0")
    if counts is not None and any(int(c) != c or c < 0 for c in counts):
        raise UserError(f"--counts {list(counts)}: must be whole numbers >= 0")
    if weights is None and counts is None:
        weights = [1.0] * len(inputs)
    return weights


def _mix_train_sets(inputs: Sequence[MixInput], test: list[dict], finder: NearDuplicateFinder,
                    weights: Optional[Sequence[float]], counts: Optional[Sequence[int]], seed: int,
                    allow_oversample: bool) -> list[dict]:
    """The training set, input by input: each input's usable examples (cleaned against the test set and what earlier
    inputs contributed), sampled by its weight or count. Each input's counts go to its report."""
    train: list[dict] = []
    taken_keys: set[str] = set()  # content keys of the examples taken so far
    test_keys = {instruction_key(e) for e in test}
    for k, item in enumerate(inputs):
        pool, dropped = _usable_train_examples(item, test, test_keys, train, taken_keys, finder)
        weight = weights[k] if weights is not None else None
        count = int(counts[k]) if counts is not None else None
        requested = requested_counts(len(pool), weight, count)
        rng = random.Random(f"mix/{seed}/{k}")
        chosen = sample_indices(len(pool), requested, rng, allow_oversample, f"{item.path} (input {k + 1})")
        chosen_set = set(chosen)
        for i, e in enumerate(pool):  # not taken: a later input may contribute the same example
            if i not in chosen_set:
                taken_keys.discard(content_key(e))
        train.extend(pool[i] for i in chosen)
        item.report["train"] = {"in": len(item.train), **({"weight": weight} if weight is not None else {}),
                                "requested": requested, "available": len(pool), "taken": len(chosen),
                                "unique_taken": len(chosen_set), "dropped": dict(dropped)}
    return train


def _usable_train_examples(item: MixInput, test: list[dict], test_keys: set[str], train: list[dict],
                           taken_keys: set[str], finder: NearDuplicateFinder) -> tuple[list[dict], Counter]:
    """The input's training examples that are neither duplicates of one already taken, nor (near-)copies of a test
    instruction, nor near-duplicates of an earlier input's; and how many were dropped for each reason. The keys of
    the usable ones are added to taken_keys."""
    candidates, dropped = [], Counter({reason: 0 for reason in DROP_REASONS})
    for example in item.train:
        key = content_key(example)
        if key in taken_keys:
            dropped["duplicate"] += 1
        elif instruction_key(example) in test_keys:
            dropped["test_overlap"] += 1
        else:
            taken_keys.add(key)  # also catches a repeat inside this input
            candidates.append(example)
    bad = {i for i, _, _ in finder.pairs(candidates, test)}
    dropped["test_overlap"] += len(bad)
    near = {i for i, _, _ in finder.pairs(candidates, train)} - bad
    dropped["near_duplicate"] += len(near)
    pool = [e for i, e in enumerate(candidates) if i not in bad and i not in near]
    for i, e in enumerate(candidates):  # dropped ones may come back as exact repeats from a later input
        if i in bad or i in near:
            taken_keys.discard(content_key(e))
    return pool, dropped


def _mix_settings(inputs: Sequence[MixInput], weights: Optional[Sequence[float]], counts: Optional[Sequence[int]],
                  seed: int, allow_oversample: bool, near_dup_threshold: float, dedup_method: str,
                  n_texts: int) -> dict:
    """What decides the mix (recorded in the manifest; the fingerprint is taken over it)."""
    why = (f"{n_texts} instructions <= {EXACT_SEARCH_LIMIT}: every pair checked exactly (bound-pruned ROUGE-L)"
           if dedup_method == "exact" else
           f"{n_texts} instructions: all-pairs ROUGE-L grows quadratically, MinHash/LSH proposes "
           "candidates from word sets, ROUGE-L confirms them; LSH may miss a few true pairs")
    return {
        "mix_version": MIX_VERSION, "seed": seed, "allow_oversample": allow_oversample,
        "weights": list(weights) if weights is not None else None,
        "counts": [int(c) for c in counts] if counts is not None else None,
        "near_duplicates": {"measure": "ROUGE-L F of the instructions (and of the inputs when there are any)",
                            "threshold": near_dup_threshold, "method": dedup_method, "why": why},
        "inputs": [{"path": str(i.path), "kind": i.kind, "name": i.name, "fingerprint": i.fingerprint}
                   for i in inputs],
    }


def _mix_manifest(name: str, inputs: Sequence[MixInput], train: list[dict], test: list[dict], settings: dict,
                  sources: str, started: float) -> dict:
    """The mixture's manifest: the first input's tokenization settings, the settings, per-input and total counts."""
    fingerprint_settings = {**settings, "inputs": [i["fingerprint"] for i in settings["inputs"]]}
    first = inputs[0].manifest
    kept = train + test
    return {
        "name": name,
        "kind": "mixture",
        "source_fingerprint": sources,
        **{key: first.get(key) for key in ("prompt_style", "prompt_style_fingerprint", "tokenizer_fingerprint",
                                           "tokenizer_dir", "tokenizer_backend", "bos_id", "eos_id", "use_bos",
                                           "max_seq_length")},
        **{key: _agreed(inputs, key) for key in ("mask_inputs", "truncation", "masking")},
        "fingerprint": settings_fingerprint(fingerprint_settings),
        **settings,
        "per_input": [{"path": str(i.path), "name": i.name, **i.report} for i in inputs],
        "counts": {"train": len(train), "test": len(test), "unique_train": len({content_key(e) for e in train})},
        "sources": dict(sorted(Counter(e.get("source", "unknown") for e in kept).items())),
        "train_sources": dict(sorted(Counter(e.get("source", "unknown") for e in train).items())),
        "token_lengths": length_stats(kept),
        "trained_token_share": trained_token_share(kept),
        "seconds": round(time.perf_counter() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _agreed(inputs: Sequence[MixInput], key: str):
    values = {json.dumps(i.manifest.get(key)) for i in inputs}
    if len(values) == 1:
        return inputs[0].manifest.get(key)
    return {str(i.path): i.manifest.get(key) for i in inputs}


def _load_inputs(paths: Sequence[Path], checkpoint_dir, seed: int, test_split_fraction: float) -> list[MixInput]:
    """Prepared inputs first (they fix the tokenization settings), then record files tokenized to match."""
    prepared = {p: load_input(p) for p in paths if p.is_dir()}
    settings, tokenizer = None, None
    if any(not p.is_dir() for p in paths):
        reference = next(iter(prepared.values()), None)
        recorded = Path(reference.manifest.get("tokenizer_dir") or "") if reference is not None else None
        if checkpoint_dir is None and recorded is not None and recorded.is_dir():
            checkpoint_dir = recorded
        if checkpoint_dir is not None:
            tokenizer = Tokenizer(checkpoint_dir)
            if reference is not None:
                settings = {k: reference.manifest.get(k) for k in ("prompt_style", "max_seq_length", "mask_inputs",
                                                                    "truncation")}
            else:
                settings = {"prompt_style": default_prompt_style(checkpoint_dir).name,
                            "max_seq_length": model_block_size(Path(checkpoint_dir)), "mask_inputs": True,
                            "truncation": "truncate"}
    return [prepared[p] if p in prepared else load_input(p, settings, tokenizer, seed, test_split_fraction)
            for p in paths]


def _mix_test_sets(inputs: Sequence[MixInput], finder: NearDuplicateFinder) -> list[dict]:
    """The union of the test sets: exact repeats (same instruction) dropped, near-duplicates across inputs dropped."""
    test: list[dict] = []
    seen: set[str] = set()
    for item in inputs:
        unique, duplicates = [], 0
        for example in item.test:
            key = instruction_key(example)
            if key in seen:
                duplicates += 1
            else:
                seen.add(key)
                unique.append(example)
        near = {i for i, _, _ in finder.pairs(unique, test)}
        for i in near:
            seen.discard(instruction_key(unique[i]))
        kept = [e for i, e in enumerate(unique) if i not in near]
        test.extend(kept)
        item.report["test"] = {"in": len(item.test), "kept": len(kept),
                               "dropped": {"duplicate": duplicates, "near_duplicate": len(near)}}
    return test


def summary_table(manifest: dict) -> str:
    """The per-input counts as a small text table."""
    header = ["input", "requested", "available", "taken", "duplicate", "near-dup", "test overlap", "test kept"]
    rows = []
    for item in manifest["per_input"]:
        t = item["train"]
        rows.append([item["path"], t["requested"], t["available"], t["taken"], t["dropped"]["duplicate"],
                     t["dropped"]["near_duplicate"], t["dropped"]["test_overlap"], item["test"]["kept"]])
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(str(v).rjust(w) if c else str(v).ljust(w) for c, (v, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    return "\n".join(lines)
