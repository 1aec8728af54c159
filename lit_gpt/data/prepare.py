"""The preparation every scripts/prepare_*.py runs:

    (where, record) pairs from a source adapter -> normalized examples (bad rows skipped and counted, or an error
    naming file and row) -> seeded train/test split -> prompt style -> token ids and labels
    -> train.pt / test.pt + manifest.json (`lit_gpt.data.prepared`)

A preparation is skipped when the destination already holds one with the same fingerprint (settings, tokenizer,
prompt style, input files). It is refused (without --overwrite true) where the destination holds another dataset, a
mixture or a model, or lies inside the checkpoint; the destination is locked while it is written. What rows
become is an `ExampleFormat`: instruction examples by default, preference pairs with
`lit_gpt.data.preferences.PREFERENCES`.
"""

import random
import sys
import time
from dataclasses import dataclass
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Literal, Optional

from tqdm import tqdm

from lit_gpt.checkpoint import check_checkpoint_dir
from lit_gpt.config import Config
from lit_gpt.data.normalize import BadRecord, conversation, is_multi_turn, normalize
from lit_gpt.data.prepared import (DATASET_FILES, INSTRUCTION_FORMAT, check_destination, is_prepared, length_stats,
                                   read_manifest,
                                   settings_fingerprint, trained_token_share, write_prepared)
from lit_gpt.data.records import Origin, Skipped, Source, iter_records, open_source
from lit_gpt.data.tokenize import tokenize_examples
from lit_gpt.prompts.styles import PromptStyle, default_prompt_style, get_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError, check_output, file_sha256, output_lock

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
    return {"multi_turn": sum(is_multi_turn(conversation(e)) for e in examples),
            "token_lengths": length_stats(examples), "trained_token_share": trained_token_share(examples)}


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
    overwrite: bool = False,
    options: Optional[dict] = None,
    source_flag: str = "--data_path",
    example_format: "ExampleFormat | None" = None,
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
        overwrite: replace what the destination holds even when it is another dataset, a mixture or a model
        options: the adapter's own settings, recorded in the manifest and fingerprint
        source_flag: the flag that named source_files, for messages
        example_format: what the rows become (default: instruction examples; preference pairs)
    """
    started = time.perf_counter()
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, tokenizer_only=True)
    _check_prepare_args(truncation, on_bad_row, test_split_fraction)
    tokenizer, style, max_seq_length = _tokenization(checkpoint_dir, prompt_style, max_seq_length)
    destination_path = Path(destination_path) if destination_path is not None else Path("data") / name
    source_files = [Path(p) for p in source_files]

    settings = {
        "pipeline_version": PIPELINE_VERSION, "name": name,
        "source_files": [{"path": str(p), "sha256": file_sha256(p)} for p in source_files],
        "options": options or {}, "tokenizer_fingerprint": tokenizer.fingerprint, "prompt_style": style.name,
        "prompt_style_fingerprint": style.fingerprint, "max_seq_length": max_seq_length, "mask_inputs": mask_inputs,
        "truncation": truncation, "test_split_fraction": test_split_fraction, "seed": seed, "on_bad_row": on_bad_row,
    }
    example_format = example_format or INSTRUCTIONS
    if example_format is not INSTRUCTIONS:  # instruction data keeps the fingerprints it always had
        settings["format"] = example_format.name
    fingerprint_settings = {**settings, "source_files": sorted(f["sha256"] for f in settings["source_files"])}
    fingerprint = settings_fingerprint(fingerprint_settings)
    settings["source_fingerprint"] = settings_fingerprint(fingerprint_settings["source_files"])
    check_output(destination_path, {"--checkpoint_dir": checkpoint_dir, source_flag: source_files},
                 "--destination_path", writes=DATASET_FILES)
    check_destination(destination_path, "prepared", settings["source_fingerprint"], source_files, overwrite)
    with output_lock(destination_path, "--destination_path"):
        if not force and is_prepared(destination_path, fingerprint):
            print(f"{destination_path}: already prepared from the same input with the same tokenizer, prompt style "
                  f"and settings (fingerprint {fingerprint}); nothing to do (--force true prepares it again)")
            return read_manifest(destination_path)
        return _prepare_into(destination_path, records, settings, fingerprint, source_files, checkpoint_dir,
                             tokenizer, style, example_format, started)


def _prepare_into(destination_path: Path, records: Iterable[tuple[str, dict]], settings: dict, fingerprint: str,
                  source_files: list[Path], checkpoint_dir: Path, tokenizer: Tokenizer, style: PromptStyle,
                  example_format: "ExampleFormat", started: float) -> dict:
    """The preparation itself: rows read and normalized, split, tokenized, written with their manifest."""
    name, on_bad_row, mask_inputs = settings["name"], settings["on_bad_row"], settings["mask_inputs"]
    examples, dropped, dropped_rows, rows_in = _collect(records, name, on_bad_row, example_format.normalize)
    if not examples:
        reasons = ", ".join(f"{n} {reason}" for reason, n in dropped.items()) or "no rows"
        raise UserError(f"{', '.join(map(str, source_files))}: no usable rows ({reasons})")
    train, test = _split_and_tokenize(examples, settings, tokenizer, style, example_format.tokenize, dropped)
    manifest = {
        **settings,
        "fingerprint": fingerprint,
        "tokenizer_dir": str(checkpoint_dir.resolve()),
        "tokenizer_backend": tokenizer.backend,
        "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id, "use_bos": tokenizer.use_bos,
        "masking": "prompt tokens masked (-100), answers and their EOS trained" if mask_inputs
                   else "every token trained",
        **_prepared_counts(rows_in, examples, train, test, dropped, example_format.summary(train + test)),
        "dropped_rows": dropped_rows,
        "seconds": round(time.perf_counter() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_prepared(destination_path, train, test, manifest)
    _print_summary(destination_path, manifest)
    return manifest


def _check_prepare_args(truncation: str, on_bad_row: str, test_split_fraction: float) -> None:
    if truncation not in ("truncate", "drop"):
        raise UserError(f"--truncation {truncation!r}: use truncate or drop")
    if on_bad_row not in ("skip", "error"):
        raise UserError(f"--on_bad_row {on_bad_row!r}: use skip or error")
    if not 0 <= test_split_fraction < 1:
        raise UserError(f"--test_split_fraction {test_split_fraction}: must be at least 0 and below 1")


def _tokenization(checkpoint_dir: Path, prompt_style: Optional[str],
                  max_seq_length: Optional[int]) -> tuple[Tokenizer, PromptStyle, int]:
    """The tokenizer, the prompt style (default: the checkpoint's) and max_seq_length (default: its block size)."""
    tokenizer = Tokenizer(checkpoint_dir)
    style = get_prompt_style(prompt_style) if prompt_style else default_prompt_style(checkpoint_dir)
    style.check_tokenizer(tokenizer)
    if max_seq_length is None:
        max_seq_length = model_block_size(checkpoint_dir)
    if max_seq_length < 2:
        raise UserError(f"--max_seq_length {max_seq_length}: too short to hold a prompt and an answer")
    return tokenizer, style, max_seq_length


def _split_and_tokenize(examples: list[dict], settings: dict, tokenizer: Tokenizer, style: PromptStyle,
                        tokenize: Callable, dropped: Counter) -> tuple[list[dict], list[dict]]:
    """The seeded train/test split, each part tokenized; what tokenization drops is added to `dropped`."""
    fraction, max_seq_length = settings["test_split_fraction"], settings["max_seq_length"]
    train_rows, test_rows = split_examples(examples, fraction, settings["seed"])
    if fraction > 0 and not test_rows:
        print(f"warning: {len(examples)} rows x --test_split_fraction {fraction} rounds to no test example: "
              "training will have no validation; use more rows or a larger --test_split_fraction")
    how = (tokenizer, style, max_seq_length, settings["mask_inputs"], settings["truncation"])
    train, train_dropped = tokenize(train_rows, *how, progress="tokenizing train")
    test, test_dropped = tokenize(test_rows, *how, progress="tokenizing test")
    if not train:
        source_files = [f["path"] for f in settings["source_files"]]
        raise UserError(f"{', '.join(source_files)}: every training example is longer than "
                        f"max_seq_length={max_seq_length} ({dict(train_dropped)}); raise --max_seq_length")
    dropped.update(train_dropped)
    dropped.update(test_dropped)
    return train, test


def _prepared_counts(rows_in: int, examples: list[dict], train: list[dict], test: list[dict],
                     dropped: Counter, summary: dict) -> dict:
    """The manifest's counts and statistics of the prepared examples."""
    kept = train + test
    return {
        "counts": {
            "rows_in": rows_in, "rows_valid": len(examples), "rows_out": len(kept), "train": len(train),
            "test": len(test), "dropped": dict(sorted(dropped.items())), "truncated": sum(e["truncated"] for e in kept),
            "multi_turn": summary["multi_turn"],
        },
        "sources": dict(sorted(Counter(e["source"] for e in kept).items())),
        "token_lengths": summary["token_lengths"],
        "trained_token_share": summary["trained_token_share"],
    }


def _print_summary(destination_path: Path, manifest: dict) -> None:
    counts, lengths = manifest["counts"], manifest["token_lengths"]
    dropped_text = ", ".join(f"{n} {reason}" for reason, n in counts["dropped"].items()) or "none"
    print(f"{destination_path}: {counts['train']} train + {counts['test']} test examples from {counts['rows_in']} rows "
          f"(dropped: {dropped_text}; truncated: {counts['truncated']}); prompt style {manifest['prompt_style']}, "
          f"max_seq_length {manifest['max_seq_length']}, token lengths p50/p99/max "
          f"{lengths['p50']}/{lengths['p99']}/{lengths['max']}; {manifest['seconds']} s")


def prepare_source(origin: Origin, read: Callable[[Source], Iterable[tuple[str, dict]]],
                   example_format: "ExampleFormat | None" = None, /, *,
                   name: Optional[str] = None, options: Optional[dict] = None, dataset_id: Optional[str] = None,
                   subset: Optional[str] = None, split: str = "train", revision: Optional[str] = None,
                   access_token: Optional[str] = None, **kwargs) -> dict:
    """What every prepare script runs: its source opened (--dataset_id, else `origin`: --data_path or the script's
    default download), its rows read by `read(source)`, then `prepare` into `example_format` (positional, so that it
    is no flag; default: instruction examples). The flags below are every script's, defined here once.

    Args:
        dataset_id: a Hugging Face dataset ORG/NAME to read instead of a local file or the default download (Parquet,
            JSON, CSV, ... read with `datasets`, cached in datasets' cache), e.g. --dataset_id tatsu-lab/alpaca
        subset: the dataset's subset (config), e.g. --subset en; needed when it has several
        split: the split to read (default: train), e.g. validation, train[:1000]
        revision: branch, tag or commit of the dataset repo, e.g. refs/convert/parquet (the Hub's Parquet conversion;
            its subsets are its folders)
        access_token: Hugging Face token for gated or private datasets (default: $HF_TOKEN; never printed or saved)
    """
    check_checkpoint_dir(kwargs.get("checkpoint_dir"), tokenizer_only=True)  # before a download that may be large
    source = open_source(origin, dataset_id, subset, split, revision, access_token)
    return prepare(read(source), name=name or source.name, source_files=list(source.files),
                   destination_path=origin.destination_path, options={**(options or {}), **source.options},
                   source_flag="--dataset_id" if dataset_id is not None else origin.flag,
                   example_format=example_format, **kwargs)


def mapped_file_command(description: str, flag_help: dict, no_source: str,
                        example_format: "ExampleFormat | None" = None, required: tuple = ()) -> Callable:
    """The `main` of a script that prepares any file or Hub dataset whose fields --columns renames
    (scripts/prepare_json.py), for `run_cli`: its flags are written here once, their help in
    the script's words (`flag_help`: data_path, columns, name); the rows become `example_format`, each needing the
    `required` fields."""
    def main(data_path: Optional[Path] = None, columns: Optional[dict] = None,
             format: Optional[Literal["json", "jsonl"]] = None, name: Optional[str] = None,
             destination_path: Optional[Path] = None, **kwargs) -> dict:
        origin = Origin(data_path, destination_path, no_source=no_source)
        read = partial(iter_records, format=format, columns=columns, required=required)
        return prepare_source(origin, read, example_format, name=name,
                              options={"columns": columns or {}, "format": format}, **kwargs)

    main.__doc__ = f"""{description}

    Args:
        data_path: {flag_help["data_path"]}
        columns: {flag_help["columns"]}
        format: json or jsonl (default: from the file name and content)
        name: {flag_help["name"]}
        destination_path: output directory
    """
    return main


def _collect(records: Iterable[tuple[str, dict]], name: str, on_bad_row: str,
             normalize_row: Callable = normalize) -> tuple[list, Counter, list, int]:
    examples, dropped, dropped_rows = [], Counter(), []
    rows_in = 0
    for where, record in tqdm(records, desc="reading rows", unit="rows", disable=None, file=sys.stderr):
        rows_in += 1
        if isinstance(record, Skipped):  # left out by design: counted, never an error
            dropped[str(record)] += 1
            continue
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


def model_block_size(checkpoint_dir: Path) -> int:
    try:
        return Config.from_checkpoint(checkpoint_dir).block_size
    except UserError as e:
        raise UserError(f"{e}; or pass --max_seq_length") from None
