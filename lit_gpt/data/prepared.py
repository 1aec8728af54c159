"""The prepared-dataset format, written and read here only (by `prepare`, `mix` and the filters alike).

A prepared dataset is a directory with train.pt and test.pt, each `torch.save(list[dict])`, every dict a normalized
example plus `input_ids` and `labels` (1-D int64 of equal length, -100 where masked, the last trained label the
tokenizer's EOS) and `truncated` (bool); and manifest.json beside them: counts, every setting, the tokenizer's and
the prompt style's fingerprints, and a `fingerprint` over the settings and the inputs, so that a preparation is
redone exactly when one of them changed. Its `source_fingerprint` says which dataset it is whatever the settings (the
input files' hashes; a mixture's: its inputs'): a destination holding another dataset, a dataset of another kind or a
model is not written over without --overwrite (`check_destination`). Preference pairs
(lit_gpt/data/preferences.py) are prepared the same way; their manifest says "format": "preference", and
`load_prepared` hands each kind only to a reader that asks for it.
"""

import hashlib
import json
from pathlib import Path

import torch

from lit_gpt.data.tokenize import IGNORE_INDEX
from lit_gpt.file_names import (HF_CONFIG_FILE, LIT_CONFIG_FILE, LIT_WEIGHTS_FILE, LORA_WEIGHTS_FILE, MANIFEST_FILE,
                                TEST_FILE, TRAIN_FILE)
from lit_gpt.utils import UserError, atomic_path, atomic_write_json
from lit_gpt.json_files import read_json

DATASET_FILES = (TRAIN_FILE, TEST_FILE, MANIFEST_FILE)  # what writing a dataset replaces in its destination
MODEL_FILES = (LIT_WEIGHTS_FILE, LORA_WEIGHTS_FILE, LIT_CONFIG_FILE, HF_CONFIG_FILE)  # a checkpoint or a run
INSTRUCTION_FORMAT = "instructions"  # a manifest without "format" holds instruction examples
RAW_DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".arrow")  # what scripts/prepare_json.py reads


def settings_fingerprint(settings: dict) -> str:
    """16 hex digits of the SHA-256 of the settings as canonical JSON: equal settings, equal fingerprint."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def source_fingerprint(manifest: dict) -> "str | None":
    """Which dataset a manifest describes, whatever its settings: its `source_fingerprint`, else (written before it
    was recorded) the hashes of its input files; None when it names neither."""
    if manifest.get("source_fingerprint"):
        return manifest["source_fingerprint"]
    files = manifest.get("source_files")
    if isinstance(files, list) and files and all(isinstance(f, dict) and "sha256" in f for f in files):
        return settings_fingerprint(sorted(f["sha256"] for f in files))
    return None


def check_destination(destination: "str | Path", kind: str, source: str, inputs: list, overwrite: bool) -> None:
    """Refuses to write a dataset (`kind` "prepared" or "mixture", made from `inputs`, whose content has the source
    fingerprint `source`) over a destination holding a model, a dataset of the other kind, or another dataset unless
    `overwrite`. Another dataset: other content from other paths; the same files edited, the same content copied
    elsewhere, or the same data with other settings are the same dataset, replaced as before (an unfinished one with
    no manifest too)."""
    destination = Path(destination)
    if overwrite or not destination.is_dir():
        return
    manifest = read_manifest(destination)
    model = [name for name in MODEL_FILES if (destination / name).is_file()]
    existing = manifest.get("kind", "prepared")
    if model:
        what = f"a model ({model[0]})"
    elif manifest and existing != kind:
        what = f"a dataset of another kind ({existing}, {manifest.get('name')})"
    elif manifest and source_fingerprint(manifest) not in (None, source) and _input_paths(manifest) != {
            Path(p).resolve() for p in inputs}:
        what = (f"another dataset ({manifest.get('name')}, made from other inputs: source fingerprint "
                f"{source_fingerprint(manifest)}, this one {source})")
    else:
        return
    raise UserError(f"--destination_path {destination}: holds {what}; choose another --destination_path, or "
                    "pass --overwrite true to replace it")


def _input_paths(manifest: dict) -> set:
    """The files (a preparation) or directories and files (a mixture) a manifest says its dataset was made from."""
    entries = manifest.get("source_files") if manifest.get("kind", "prepared") == "prepared" else manifest.get("inputs")
    return {Path(e["path"]).resolve() for e in entries or [] if isinstance(e, dict) and isinstance(e.get("path"), str)}


def write_prepared(destination: "str | Path", train: list, test: list, manifest: dict) -> None:
    """train.pt, test.pt and manifest.json into `destination`. Both tensor files are written completely beside the
    old ones first, so a failure (a full disk) leaves an earlier preparation as it was; only then the old manifest
    goes, the new files are renamed into place and the new manifest is written last: nothing ever reads a
    half-updated dataset as complete."""
    destination = Path(destination)
    flag = "--destination_path"
    with atomic_path(destination / TRAIN_FILE, flag) as train_tmp, atomic_path(destination / TEST_FILE, flag) as test_tmp:
        torch.save(train, train_tmp)
        torch.save(test, test_tmp)
        (destination / MANIFEST_FILE).unlink(missing_ok=True)
    atomic_write_json(destination / MANIFEST_FILE, manifest)


def read_manifest(data_dir: "str | Path") -> dict:
    """The manifest of a prepared dataset, or {} when there is none (or it cannot be read: `read_json`)."""
    path = Path(data_dir) / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        return read_json(path, "dataset manifest")
    except UserError:
        return {}


def is_prepared(data_dir: "str | Path", fingerprint: str) -> bool:
    """True when data_dir holds a complete preparation with this fingerprint."""
    data_dir = Path(data_dir)
    return (read_manifest(data_dir).get("fingerprint") == fingerprint and (data_dir / TRAIN_FILE).is_file()
            and (data_dir / TEST_FILE).is_file())


def _prepare_hint(data_dir: Path) -> str:
    """How to make `data_dir` a prepared dataset. A data file (JSON, JSONL, Parquet, Arrow) is prepared into a folder
    of its own, which is what a prepared dataset is; it cannot become one in place."""
    if data_dir.is_file() or data_dir.suffix in RAW_DATA_SUFFIXES:
        folder = data_dir.parent / data_dir.stem if data_dir.parent != Path(".") else Path("data") / data_dir.stem
        return (f"prepare it first: `python scripts/prepare_json.py --data_path {data_dir} --checkpoint_dir <model> "
                f"--destination_path {folder}`, then use {folder} in its place")
    return ("prepare it first, e.g. `python scripts/prepare_alpaca.py --checkpoint_dir <model> --destination_path "
            f"{data_dir}`")


def load_prepared(data_dir: "str | Path", tokenizer=None,
                  format: str = INSTRUCTION_FORMAT) -> tuple[list[dict], list[dict], dict]:
    """(train examples, test examples, manifest) of a prepared dataset of the given format (instruction examples,
    or "preference" pairs). With a tokenizer, refuses data prepared with another one (its ids would mean other
    tokens)."""
    data_dir = Path(data_dir)
    hint = _prepare_hint(data_dir)
    if data_dir.is_file():
        raise UserError(f"{data_dir}: a file, not a prepared dataset (a folder with {TRAIN_FILE}, {TEST_FILE} and "
                        f"{MANIFEST_FILE}); {hint}")
    for file in (TRAIN_FILE, TEST_FILE, MANIFEST_FILE):
        if not (data_dir / file).is_file():
            raise UserError(f"{data_dir}: no {file}; {hint}")
    # a damaged manifest: the folder was prepared, so the fix is to prepare it again, over it
    again = (f"prepare it again: `python scripts/prepare_<source>.py --checkpoint_dir <model> --destination_path "
             f"{data_dir} --overwrite true`")
    manifest = read_json(data_dir / MANIFEST_FILE, "dataset manifest", fix=again)
    if not manifest:
        raise UserError(f"{data_dir / MANIFEST_FILE}: not a valid manifest; {again}")
    found = manifest.get("format", INSTRUCTION_FORMAT)
    if found != format:
        raise UserError(f"{data_dir}: holds {found} data (manifest.json), not {format}; prepare the data for this "
                        f"use (preference pairs: scripts/prepare_preferences.py, instructions: the other prepare "
                        "scripts)")
    if tokenizer is not None and tokenizer.fingerprint != manifest.get("tokenizer_fingerprint"):
        raise UserError(f"{data_dir}: prepared with another tokenizer ({manifest.get('tokenizer_dir')}); prepare it "
                        f"again with --checkpoint_dir {tokenizer.checkpoint_dir}")
    splits = []
    for file in (TRAIN_FILE, TEST_FILE):
        try:
            splits.append(torch.load(data_dir / file, weights_only=True))
        except Exception as e:  # truncated/corrupt pickles raise several exception types
            raise UserError(f"{data_dir / file}: cannot read ({type(e).__name__}); {hint}") from None
    return splits[0], splits[1], manifest


def length_stats(examples: list[dict]) -> dict:
    lengths = sorted(len(e["input_ids"]) for e in examples)
    if not lengths:
        return {}

    def percentile(p: float) -> int:
        return lengths[min(len(lengths) - 1, int(p / 100 * len(lengths)))]

    return {"min": lengths[0], "p50": percentile(50), "p90": percentile(90), "p95": percentile(95),
            "p99": percentile(99), "max": lengths[-1], "mean": round(sum(lengths) / len(lengths), 1)}


def trained_token_share(examples: list[dict]) -> float:
    total = sum(len(e["labels"]) for e in examples)
    trained = sum(int((e["labels"] != IGNORE_INDEX).sum()) for e in examples)
    return round(trained / total, 4) if total else 0.0
