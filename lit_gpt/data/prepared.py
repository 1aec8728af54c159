"""The prepared-dataset format, written and read here only (by `prepare`, `mix` and the filters alike).

A prepared dataset is a directory with train.pt and test.pt, each `torch.save(list[dict])`, every dict a normalized
example plus `input_ids` and `labels` (1-D int64 of equal length, -100 where masked, the last trained label the
tokenizer's EOS) and `truncated` (bool); and manifest.json beside them: counts, every setting, the tokenizer's and
the prompt style's fingerprints, and a `fingerprint` over the settings and the inputs, so that a preparation is
redone exactly when one of them changed.
"""

import hashlib
import json
from pathlib import Path

import torch

from lit_gpt.data.tokenize import IGNORE_INDEX
from lit_gpt.file_names import MANIFEST_FILE, TEST_FILE, TRAIN_FILE
from lit_gpt.utils import UserError, atomic_path, atomic_write_json, read_json

RAW_DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".arrow")  # what scripts/prepare_json.py reads


def settings_fingerprint(settings: dict) -> str:
    """16 hex digits of the SHA-256 of the settings as canonical JSON: equal settings, equal fingerprint."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


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


def load_prepared(data_dir: "str | Path", tokenizer=None) -> tuple[list[dict], list[dict], dict]:
    """(train examples, test examples, manifest) of a prepared dataset. With a tokenizer, refuses data prepared with
    another one (its ids would mean other tokens)."""
    data_dir = Path(data_dir)
    hint = _prepare_hint(data_dir)
    if data_dir.is_file():
        raise UserError(f"{data_dir}: a file, not a prepared dataset (a folder with {TRAIN_FILE}, {TEST_FILE} and "
                        f"{MANIFEST_FILE}); {hint}")
    for file in (TRAIN_FILE, TEST_FILE, MANIFEST_FILE):
        if not (data_dir / file).is_file():
            raise UserError(f"{data_dir}: no {file}; {hint}")
    manifest = read_json(data_dir / MANIFEST_FILE, "dataset manifest", fix=hint)
    if not manifest:
        raise UserError(f"{data_dir / MANIFEST_FILE}: not a valid manifest; {hint}")
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
