"""Rows of Hugging Face datasets, read with the `datasets` library: a Hub dataset by id (`--dataset_id ORG/NAME`
with `--subset`, `--split`, `--revision`) or a local .parquet / .arrow file.

Where the data goes: datasets' own cache (HF_DATASETS_CACHE, by default ~/.cache/huggingface/datasets). A Hub dataset
(and a local Parquet file) is converted once into memory-mapped Arrow files there, shared by every destination and
tokenizer, reused on the next run and offline (HF_HUB_OFFLINE=1); a local .arrow file is memory-mapped where it is.
Those Arrow files are what a preparation's fingerprint hashes.

Rows come out as JSON rows would: plain Python values (str, int, float, bool, None, lists, dicts; dates as ISO text;
binary values such as images are left out, as None). The token (HF_TOKEN or --access_token) goes to huggingface_hub
only, as for models (lit_gpt/hub/download.py); every failure is one `UserError` line naming the flag and what exists.
"""

import contextlib
import datetime
import decimal
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from lit_gpt.hub.download import (NETWORK_ERRORS, HubUnreachable, check_repo_id, hub_endpoint, resolve_token,
                                  translate_hub_errors)
from lit_gpt.utils import UserError

DATASET_SUFFIXES = (".parquet", ".arrow")
PARQUET_CONVERSION = "refs/convert/parquet"  # the Hub's auto-converted Parquet branch: one folder per subset
BATCH_ROWS = 1000


@dataclass
class HubDataset:
    """A loaded split: `dataset` (a datasets.Dataset), `label` for messages ("org/name (split train)") and what the
    manifest records (`options`: dataset_id, subset, split, revision)."""
    dataset: Any
    label: str
    options: dict = field(default_factory=dict)


def is_dataset_file(path: "str | Path") -> bool:
    return Path(path).suffix.lower() in DATASET_SUFFIXES


def load_dataset_file(path: "str | Path") -> Any:
    """A local .parquet (converted to Arrow in datasets' cache) or .arrow file (memory-mapped: datasets' own
    cache and save_to_disk files, or an Arrow IPC/Feather file) as a datasets.Dataset."""
    import datasets
    import pyarrow

    path = Path(path)
    try:
        if path.suffix.lower() == ".arrow":
            try:
                return datasets.Dataset.from_file(str(path))  # the streaming format datasets writes
            except pyarrow.ArrowInvalid:
                import pyarrow.feather

                return datasets.Dataset(datasets.table.InMemoryTable(pyarrow.feather.read_table(str(path))))
        with _quiet_datasets(errors_too=True):  # a bad file is our one-line error, not datasets' log line too
            return datasets.Dataset.from_parquet(str(path))
    except (pyarrow.ArrowException, datasets.exceptions.DatasetsError, ValueError, OSError) as e:
        kind = "Arrow" if path.suffix.lower() == ".arrow" else "Parquet"
        raise UserError(f"{path}: cannot read it as {kind} ({_first_line(_root_cause(e))}); write it again "
                        "(e.g. with datasets' to_parquet) or convert it") from None


def load_hub_dataset(dataset_id: str, subset: Optional[str] = None, split: str = "train",
                     revision: Optional[str] = None, access_token: Optional[str] = None) -> HubDataset:
    """One split of a Hub dataset through datasets' builder (what `datasets.load_dataset` does): the repo's Parquet,
    JSON, CSV, ... files, its configs (subsets) and splits. revision refs/convert/parquet reads the Hub's Parquet
    conversion, whose subsets are folders. Errors name the flag to fix and list what the dataset has."""
    import datasets

    dataset_id = check_repo_id(dataset_id)
    token = resolve_token(access_token)
    commit = _commit(dataset_id, revision, token)  # None: the Hub is unreachable or offline; datasets' cache decides
    where = dataset_id + (f"@{revision}" if revision else "")
    builder_kwargs: dict = {"name": subset}
    if revision == PARQUET_CONVERSION:  # one folder per subset, no configs in a card
        folder = _conversion_folder(dataset_id, commit, subset, token) if commit else subset
        builder_kwargs = {"data_dir": folder}
    with _translate_datasets_errors(dataset_id, token), _quiet_datasets():
        try:
            builder = datasets.load_dataset_builder(dataset_id, revision=commit or revision, token=token,
                                                    **builder_kwargs)
        except ValueError as e:
            if "config" not in str(e).lower():
                raise
            configs = datasets.get_dataset_config_names(dataset_id, revision=commit or revision, token=token)
            if subset is None:
                raise UserError(f"{where}: the dataset has several subsets; pass --subset, one of: "
                                f"{', '.join(configs)}") from None
            raise UserError(f"{where}: no subset {subset!r} (--subset); the dataset has: "
                            f"{', '.join(configs)}") from None
        splits = list(builder.config.data_files or {}) or list(builder.info.splits or {})
        for name in _split_names(split):
            if splits and name not in splits:
                of = f" subset {subset!r}" if subset else ""
                raise UserError(f"{where}: no split {name!r} (--split); the dataset{of} has: {', '.join(splits)}")
        builder.download_and_prepare()
        dataset = builder.as_dataset(split=split)
    label = f"{dataset_id} ({', '.join(filter(None, [subset and f'subset {subset}', f'split {split}']))})"
    # not the commit: offline it is unknown, and the Arrow files' hashes already pin the content
    return HubDataset(dataset, label, {"dataset_id": dataset_id, "subset": subset, "split": split,
                                       "revision": revision})


def dataset_rows(dataset: Any, label: str) -> Iterator[tuple[str, dict]]:
    """(where, row) for each row of a datasets.Dataset, read in Arrow batches; rows as plain Python values."""
    arrow = dataset.with_format("arrow")
    number = 0
    for batch in arrow.iter(batch_size=BATCH_ROWS):
        for row in batch.to_pylist():
            number += 1
            yield f"{label}: row {number}", {str(k): plain(v) for k, v in row.items()}


def dataset_files(dataset: Any) -> list[Path]:
    """The Arrow files behind a datasets.Dataset (what the preparation's fingerprint hashes)."""
    return [Path(f["filename"]) for f in dataset.cache_files]


def plain(value: Any) -> Any:
    """A value as JSON would hold it: dates and times as ISO text, decimals as floats, binary as None."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None
    return str(value)


# ---- helpers ---------------------------------------------------------------------------------------------------------
def _commit(dataset_id: str, revision: Optional[str], token: Optional[str]) -> Optional[str]:
    """The commit of `revision` (default main), asked of the Hub first: one request that says at once whether the
    dataset and revision exist, and for a gated dataset a second one whether the token may read it (datasets' own
    messages for these lose the Hub's error). None when the Hub cannot be reached (or HF_HUB_OFFLINE is set):
    datasets then uses what it cached before, or fails."""
    from huggingface_hub import HfApi

    with translate_hub_errors(dataset_id, token, repo_type="dataset"):
        try:
            info = HfApi().dataset_info(dataset_id, revision=revision, token=token)
            if info.gated:
                HfApi().auth_check(dataset_id, repo_type="dataset", token=token)
            return info.sha
        except NETWORK_ERRORS:
            return None


def _conversion_folder(dataset_id: str, revision: str, subset: Optional[str], token: Optional[str]) -> str:
    """The folder of `subset` in the Parquet conversion; without --subset the only one there is."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFolder

    with translate_hub_errors(dataset_id, token, repo_type="dataset"):
        entries = HfApi().list_repo_tree(dataset_id, revision=revision, repo_type="dataset", token=token)
        folders = sorted(e.path for e in entries if isinstance(e, RepoFolder) and "/" not in e.path)
    where = f"{dataset_id}@{PARQUET_CONVERSION}"
    if subset is None and len(folders) == 1:
        return folders[0]
    if subset is None:
        raise UserError(f"{where}: the conversion has several subsets; pass --subset, one of: {', '.join(folders)}")
    if subset not in folders:
        raise UserError(f"{where}: no subset {subset!r} (--subset); the conversion has: "
                        f"{', '.join(folders) or '(no folders)'}")
    return subset


def _split_names(split: str) -> list[str]:
    """The split names in a split expression: "train", "train[:100]", "train+validation[:10%]"."""
    return [re.sub(r"\[.*\]$", "", part.strip()) for part in split.split("+") if part.strip()]


@contextlib.contextmanager
def _translate_datasets_errors(dataset_id: str, token: Optional[str]) -> Iterator[None]:
    """datasets wraps the Hub's errors (gated, not found, no network) in its own: one line each, as for models."""
    import datasets

    try:
        yield
    except UserError:
        raise
    except Exception as e:
        hub_error = _hub_cause(e)
        if hub_error is not None:
            with translate_hub_errors(dataset_id, token, repo_type="dataset"):
                raise hub_error from None
        # no network (or HF_HUB_OFFLINE) and nothing cached: datasets says ConnectionError, or "Couldn't find" it
        if isinstance(e, ConnectionError) or (isinstance(e, FileNotFoundError) and "Couldn't find" in str(e)):
            raise HubUnreachable(f"{dataset_id}: cannot reach the Hugging Face Hub at {hub_endpoint()} (or "
                                 "HF_HUB_OFFLINE is set) and datasets has no cached copy; check the network "
                                 "connection (or HF_ENDPOINT / proxy settings) and retry") from None
        if isinstance(e, (datasets.exceptions.DatasetsError, ValueError, FileNotFoundError)):
            raise UserError(f"{dataset_id}: datasets cannot load it ({_first_line(e)})") from None
        raise


def _hub_cause(error: BaseException) -> Optional[BaseException]:
    from huggingface_hub.errors import HfHubHTTPError

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (HfHubHTTPError, *NETWORK_ERRORS)):
            return error
        error = error.__cause__ or error.__context__
    return None


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def _quiet_datasets(errors_too: bool = False) -> Iterator[None]:
    """datasets' progress bars only on a terminal (as our own), and huggingface_hub's warnings off ("Repo card
    metadata block was not found", retries): an error stays one line. datasets' own warnings (e.g. that it uses
    its cached copy because the Hub is unreachable) still show; its error logs too unless `errors_too`."""
    import datasets
    from huggingface_hub.utils import logging as hub_logging

    bars_were_off = datasets.utils.are_progress_bars_disabled()
    hub_verbosity, verbosity = hub_logging.get_verbosity(), datasets.logging.get_verbosity()
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()
    hub_logging.set_verbosity_error()
    if errors_too:
        datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        if not bars_were_off:
            datasets.enable_progress_bars()
        hub_logging.set_verbosity(hub_verbosity)
        datasets.logging.set_verbosity(verbosity)
