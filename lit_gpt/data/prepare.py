"""The preparation every scripts/prepare_*.py runs:

    (where, record) pairs from a source adapter -> normalized examples (bad rows skipped and counted, or an error
    naming file and row) -> seeded train/test split -> prompt style -> token ids and labels
    -> train.pt / test.pt + manifest.json (`lit_gpt.data.prepared`)

A preparation is skipped when the destination already holds one with the same fingerprint (settings, tokenizer,
prompt style, input files). What rows become is an `ExampleFormat`: instruction examples by default, preference
pairs with `lit_gpt.data.preferences.PREFERENCES`.
"""

import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, Optional

from tqdm import tqdm

from lit_gpt.config import Config
from lit_gpt.data.normalize import BadRecord, normalize
from lit_gpt.data.prepared import (INSTRUCTION_FORMAT, is_prepared, length_stats, read_manifest, settings_fingerprint,
                                   trained_token_share, write_prepared)
from lit_gpt.data.records import Origin, Source, open_source
from lit_gpt.data.tokenize import tokenize_examples
from lit_gpt.prompts.styles import default_prompt_style, get_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError, file_sha256

PIPELINE_VERSION = 1  # bump when a change to the pipeline changes what prepared data contains
SHOWN_DROPPED_ROWS = 20  # the manifest lists this many dropped rows with their location


@dataclass(frozen=True)
class ExampleFormat:
    """What a preparation makes of rows: `normalize` (row, source -> example, or BadRecord), `tokenize` (called as
    `tokenize_examples`: kept examples and a Counter of drop reasons) and `summary` (kept examples -> the manifest's
    multi_turn count, token_lengths and trained_token_share). `name` goes into the manifest as its "format"."""
    name: str
    normalize: Callable
    tokenize: Callable
    summary: Callable


def instruction_summary(examples: list[dict]) -> dict:
    return {"multi_turn": sum(1 for e in examples if e.get("messages")), "token_lengths": length_stats(examples),
            "trained_token_share": trained_token_share(examples)}


INSTRUCTIONS = ExampleFormat(INSTRUCTION_FORMAT, normalize, tokenize_examples, instruction_summary)


def split_examples(examples: list, test_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded random split; both parts keep the source order."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = round(len(examples) * test_fraction)
    test_index = set(order[:n_test])
    return ([e for i, e in enumerate(examples) if i not in test_index],
            [e for i, e in enumerate(examples) if i in test_index])


def prepare(
    records: Iterable[tuple[str, dict]],
    name: str,
    source_files: list[Path],
    checkpoint_dir: Optional[Path] = None,
    destination_path: Optional[Path] = None,
    max_seq_length: Optional[int] = None,
    test_split_fraction: float = 0.05,
    seed: int = 42,
    prompt_style: Optional[str] = None,
    mask_inputs: bool = True,
    truncation: Literal["truncate", "drop"] = "truncate",
    on_bad_row: Literal["skip", "error"] = "skip",
    force: bool = False,
    options: Optional[dict] = None,
    example_format: ExampleFormat = INSTRUCTIONS,
) -> dict:
    """Prepares instruction data for fine-tuning: tokenized train.pt/test.pt and manifest.json.

    Args:
        records: (where, row) pairs from a source adapter; read only when the preparation is not up to date
        name: dataset name (default destination data/<name>, default source of rows without one, ids)
        source_files: the input files; their hashes decide whether an earlier preparation can be reused
        checkpoint_dir: the model's checkpoint directory; its tokenizer and block size are used (required)
        destination_path: where train.pt, test.pt and manifest.json go (default: data/<name>)
        max_seq_length: longest example in tokens (default: the model's block size)
        test_split_fraction: share of the rows held out in test.pt
        seed: seed of the train/test split
        prompt_style: how rows are rendered, e.g. alpaca, chatml, llama2-chat (default: the checkpoint's own chat
            format for instruct models, alpaca for base models)
        mask_inputs: train on the answers only (false also trains on the prompt tokens, as Lit-GPT did)
        truncation: what happens to an example longer than max_seq_length: truncate its answer (keeping the EOS) or
            drop it; both are counted in the manifest
        on_bad_row: skip rows that cannot be used (empty output, ...; counted in the manifest) or stop with an error
        force: prepare again even when the destination is up to date
        options: the adapter's own settings, recorded in the manifest and fingerprint
        example_format: what the rows become (instruction examples; preference pairs)
    """
    started = time.perf_counter()
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    if truncation not in ("truncate", "drop"):
        raise UserError(f"--truncation {truncation!r}: use truncate or drop")
    if on_bad_row not in ("skip", "error"):
        raise UserError(f"--on_bad_row {on_bad_row!r}: use skip or error")
    if not 0 <= test_split_fraction < 1:
        raise UserError(f"--test_split_fraction {test_split_fraction}: must be at least 0 and below 1")
    tokenizer = Tokenizer(checkpoint_dir)
    style = get_prompt_style(prompt_style) if prompt_style else default_prompt_style(checkpoint_dir)
    if max_seq_length is None:
        max_seq_length = model_block_size(checkpoint_dir)
    if max_seq_length < 2:
        raise UserError(f"--max_seq_length {max_seq_length}: too short to hold a prompt and an answer")
    destination_path = Path(destination_path) if destination_path is not None else Path("data") / name
    source_files = [Path(p) for p in source_files]

    settings = {
        "pipeline_version": PIPELINE_VERSION, "name": name,
        "source_files": [{"path": str(p), "sha256": file_sha256(p)} for p in source_files],
        "options": options or {}, "tokenizer_fingerprint": tokenizer.fingerprint, "prompt_style": style.name,
        "prompt_style_fingerprint": style.fingerprint, "max_seq_length": max_seq_length, "mask_inputs": mask_inputs,
        "truncation": truncation, "test_split_fraction": test_split_fraction, "seed": seed, "on_bad_row": on_bad_row,
    }
    if example_format is not INSTRUCTIONS:  # instruction data keeps the fingerprints it always had
        settings["format"] = example_format.name
    fingerprint_settings = {**settings, "source_files": sorted(f["sha256"] for f in settings["source_files"])}
    fingerprint = settings_fingerprint(fingerprint_settings)
    if not force and is_prepared(destination_path, fingerprint):
        print(f"{destination_path}: already prepared from the same input with the same tokenizer, prompt style and "
              f"settings (fingerprint {fingerprint}); nothing to do (--force true prepares it again)")
        return read_manifest(destination_path)

    examples, dropped, dropped_rows, rows_in = _collect(records, name, on_bad_row, example_format.normalize)
    if not examples:
        reasons = ", ".join(f"{n} {reason}" for reason, n in dropped.items()) or "no rows"
        raise UserError(f"{', '.join(map(str, source_files))}: no usable rows ({reasons})")
    train_rows, test_rows = split_examples(examples, test_split_fraction, seed)
    if test_split_fraction > 0 and not test_rows:
        print(f"warning: {len(examples)} rows x --test_split_fraction {test_split_fraction} rounds to no test example: "
              "training will have no validation; use more rows or a larger --test_split_fraction")
    tokenize = example_format.tokenize
    train, train_dropped = tokenize(train_rows, tokenizer, style, max_seq_length, mask_inputs, truncation,
                                    progress="tokenizing train")
    test, test_dropped = tokenize(test_rows, tokenizer, style, max_seq_length, mask_inputs, truncation,
                                  progress="tokenizing test")
    if not train:
        raise UserError(f"{', '.join(map(str, source_files))}: every training example is longer than "
                        f"max_seq_length={max_seq_length} ({dict(train_dropped)}); raise --max_seq_length")
    dropped.update(train_dropped)
    dropped.update(test_dropped)
    kept = train + test
    summary = example_format.summary(kept)

    manifest = {
        **settings,
        "fingerprint": fingerprint,
        "tokenizer_dir": str(checkpoint_dir.resolve()),
        "tokenizer_backend": tokenizer.backend,
        "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id, "use_bos": tokenizer.use_bos,
        "masking": "prompt tokens masked (-100), answers and their EOS trained" if mask_inputs
                   else "every token trained",
        "counts": {
            "rows_in": rows_in, "rows_valid": len(examples), "rows_out": len(kept), "train": len(train),
            "test": len(test), "dropped": dict(sorted(dropped.items())), "truncated": sum(e["truncated"] for e in kept),
            "multi_turn": summary["multi_turn"],
        },
        "sources": dict(sorted(Counter(e["source"] for e in kept).items())),
        "token_lengths": summary["token_lengths"],
        "trained_token_share": summary["trained_token_share"],
        "dropped_rows": dropped_rows,
        "seconds": round(time.perf_counter() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_prepared(destination_path, train, test, manifest)
    counts = manifest["counts"]
    dropped_text = ", ".join(f"{n} {reason}" for reason, n in counts["dropped"].items()) or "none"
    print(f"{destination_path}: {counts['train']} train + {counts['test']} test examples from {rows_in} rows "
          f"(dropped: {dropped_text}; truncated: {counts['truncated']}); prompt style {style.name}, "
          f"max_seq_length {max_seq_length}, token lengths p50/p99/max "
          f"{manifest['token_lengths']['p50']}/{manifest['token_lengths']['p99']}/{manifest['token_lengths']['max']}; "
          f"{manifest['seconds']} s")
    return manifest


def prepare_source(origin: Origin, read: Callable[[Source], Iterable[tuple[str, dict]]],
                   example_format: ExampleFormat = INSTRUCTIONS, /, *,
                   name: Optional[str] = None, options: Optional[dict] = None, dataset_id: Optional[str] = None,
                   subset: Optional[str] = None, split: str = "train", revision: Optional[str] = None,
                   access_token: Optional[str] = None, **kwargs) -> dict:
    """What every prepare script runs: its source opened (--dataset_id, else `origin`: --data_path or the script's
    default download), its rows read by `read(source)`, then `prepare` into `example_format` (positional, so that it
    is no flag). The flags below are every script's, defined here once.

    Args:
        dataset_id: a Hugging Face dataset ORG/NAME to read instead of a local file or the default download (Parquet,
            JSON, CSV, ... read with `datasets`, cached in datasets' cache), e.g. --dataset_id tatsu-lab/alpaca
        subset: the dataset's subset (config), e.g. --subset en; needed when it has several
        split: the split to read (default: train), e.g. validation, train[:1000]
        revision: branch, tag or commit of the dataset repo, e.g. refs/convert/parquet (the Hub's Parquet conversion;
            its subsets are its folders)
        access_token: Hugging Face token for gated or private datasets (default: $HF_TOKEN; never printed or saved)
    """
    check_checkpoint_dir(kwargs.get("checkpoint_dir"))  # before a download that may be large
    source = open_source(origin, dataset_id, subset, split, revision, access_token)
    return prepare(read(source), name=name or source.name, source_files=list(source.files),
                   destination_path=origin.destination_path, options={**(options or {}), **source.options},
                   example_format=example_format, **kwargs)


def _collect(records: Iterable[tuple[str, dict]], name: str, on_bad_row: str,
             normalize_row: Callable = normalize) -> tuple[list, Counter, list, int]:
    examples, dropped, dropped_rows = [], Counter(), []
    rows_in = 0
    for where, record in tqdm(records, desc="reading rows", unit="rows", disable=None, file=sys.stderr):
        rows_in += 1
        try:
            example = normalize_row(record, source=name)
        except BadRecord as e:
            if on_bad_row == "error":
                raise UserError(f"{where}: {e}; fix the row or pass --on_bad_row skip to drop such rows") from None
            dropped[str(e)] += 1
            if len(dropped_rows) < SHOWN_DROPPED_ROWS:
                dropped_rows.append({"where": where, "reason": str(e)})
            continue
        example.setdefault("id", f"{name}-{rows_in}")
        examples.append(example)
    return examples, dropped, dropped_rows, rows_in


def check_checkpoint_dir(checkpoint_dir: "Path | str | None") -> Path:
    if checkpoint_dir is None:
        raise UserError("--checkpoint_dir is required: tokenization is model-specific "
                        "(e.g. --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct)")
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise UserError(f"{checkpoint_dir}: checkpoint directory not found; download it with "
                        "`python scripts/download.py --repo_id ORG/NAME` (--tokenizer_only is enough for data)")
    return checkpoint_dir


def model_block_size(checkpoint_dir: Path) -> int:
    try:
        return Config.from_checkpoint(checkpoint_dir).block_size
    except UserError as e:
        raise UserError(f"{e}; or pass --max_seq_length") from None
