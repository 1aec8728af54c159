"""Reading sources into records: JSON arrays, JSON Lines and CSV files (optionally gzipped), Parquet and Arrow files
and Hub datasets (both read with `datasets`: lit_gpt/data/hub_datasets.py), with one column mapping; and getting the
source in the first place (`open_source`: a local path, a Hub dataset by id, a Hub dataset file or a URL, downloaded
once).

A record is the source's row as a dict, its keys renamed by `columns` (our field name -> the source's column name).
`iter_records` yields (where, record) so that every later message can name the file (or dataset) and row.
`iter_jsonl` is the one JSON Lines reader (also of IFEval files and score sidecars); `write_records` writes records
back as JSON or JSONL.
"""

import csv
import gzip
import io
import json
import sys
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

from lit_gpt.data.hub_datasets import (HubDataset, dataset_files, dataset_rows, is_dataset_file, load_dataset_file,
                                       load_hub_dataset)
from lit_gpt.hub.download import download_dataset_file
from lit_gpt.json_files import UTF16_BOMS, UTF16_PROBLEM, JSONBoundsError, parse_json
from lit_gpt.utils import UserError, atomic_path

CONVERSATION_KEYS = ("messages", "conversations")


def read_text(path: "str | Path") -> str:
    """The file as text: UTF-8 (a BOM is allowed), .gz decompressed; one-line errors for missing, empty, non-UTF-8
    (UTF-16 named as such)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise UserError(f"{path}: not a valid gzip file ({e}); download it again") from None
    if data.startswith(UTF16_BOMS):
        raise UserError(f"{path}: {UTF16_PROBLEM}; save the file as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
                        "save the file as UTF-8") from None
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    return text


def guess_format(path: "str | Path") -> str:
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".arrow"):
        return suffix[1:]
    if suffix == ".json":  # a JSON array, or (as many Hub files named .json are) one object per line
        return "json" if read_text(path).lstrip().startswith("[") else "jsonl"
    raise UserError(f"{path}: cannot tell the file format from its name; pass --format json, jsonl or csv "
                    "(or name it .parquet / .arrow)")


class Skipped(str):
    """What a reader yields in place of a record for a row it leaves out by design (P3's wrong answer choices): the
    reason. prepare counts it among the rows read and the dropped ones (whatever --on_bad_row says), so that the
    manifest's counts add up to the rows of the files."""


@dataclass(frozen=True)
class Source:
    """What a prepare script reads: local files, or one split of a Hub dataset (`hub`, read with `datasets`).
    `files` are what the preparation's fingerprint hashes (for a Hub dataset: its Arrow files in datasets' cache)."""
    files: tuple
    hub: Optional[HubDataset] = None

    @property
    def name(self) -> str:
        """The default dataset name: the Hub dataset's NAME, else the first file's name without extensions."""
        if self.hub is not None:
            return self.hub.options["dataset_id"].split("/")[-1]
        return Path(self.files[0]).name.split(".")[0]

    @property
    def options(self) -> dict:
        return dict(self.hub.options) if self.hub is not None else {}


@dataclass(frozen=True)
class Origin:
    """Where a script's rows come from when --dataset_id is not given: `data_path` (one file, or the files a script
    picked, named `flag` in messages), else the script's default download (a `url`, or `filenames` of the Hub
    dataset repo `repo_id`) into destination_path/source; with none of these, `no_source` is the error."""
    data_path: Union[Path, str, list, None] = None
    destination_path: Optional[Path] = None
    url: Optional[str] = None
    repo_id: Optional[str] = None
    filenames: tuple = ()
    flag: str = "--data_path"
    no_source: Optional[str] = None


def open_source(origin: Origin, dataset_id: Optional[str] = None, subset: Optional[str] = None, split: str = "train",
                revision: Optional[str] = None, access_token: Optional[str] = None) -> Source:
    """The script's source: the Hub dataset `dataset_id` (its `split` of `subset` at `revision`) when given, else the
    origin's local file(s), else its default download. Errors name the flag."""
    if dataset_id is not None:
        if origin.data_path is not None:
            raise UserError(f"{origin.flag} and --dataset_id name two sources; pass one of them")
        hub = load_hub_dataset(dataset_id, subset, split, revision, access_token)
        return Source(tuple(dataset_files(hub.dataset)), hub)
    stray = [flag for flag, value, default in (("--subset", subset, None), ("--split", split, "train"),
                                               ("--revision", revision, None)) if value != default]
    if stray:
        raise UserError(f"{', '.join(stray)} go(es) with --dataset_id, which is not given; for a local file pass "
                        f"{origin.flag} alone")
    destination = Path(origin.destination_path or ".")
    if origin.data_path is not None:
        paths = origin.data_path if isinstance(origin.data_path, list) else [origin.data_path]
        return Source(tuple(fetch_source(Path(p), destination, flag=origin.flag) for p in paths))
    if origin.url is not None:
        return Source((fetch_source(None, destination, url=origin.url),))
    if origin.repo_id is not None and origin.filenames:
        return Source(tuple(fetch_source(None, destination, repo_id=origin.repo_id, filename=name,
                                         access_token=access_token) for name in origin.filenames))
    raise UserError(origin.no_source or f"no source given: pass {origin.flag} (a file) or --dataset_id ORG/NAME")


def iter_records(path: "str | Path | Source", format: Optional[str] = None, columns: Optional[dict] = None,
                 required: Iterable[str] = ()) -> Iterator[tuple[str, dict]]:
    """Yields (where, record) for each row: `where` names file and row for messages ("data.csv: row 3 (line 5)").

    path: a file, or a `Source` (its files one after the other, or its Hub dataset). format: of a text file,
    "json" (an array of objects), "jsonl" (one object per line) or "csv" (with a header row; quoted fields may span
    lines); None guesses from the file name. A .parquet or .arrow file is read as such (with `datasets`) whatever
    the format. columns maps our field names to the file's column names, e.g.
    {"instruction": "question", "output": "answer"}. required: fields the first row must have (after the mapping;
    rows with a conversation under "messages"/"conversations" need none); a missing one is a one-line error."""
    columns = dict(columns or {})
    if isinstance(path, Source):
        if path.hub is not None:
            yield from _dataset_records(path.hub.dataset, path.hub.label, columns, required)
        for file in () if path.hub is not None else path.files:
            yield from iter_records(file, format, columns, required)
        return
    path = Path(path)
    if is_dataset_file(path):
        yield from _dataset_records(load_dataset_file(path), str(path), columns, required)
        return
    format = format or guess_format(path)
    if format == "csv":
        rows = _csv_rows(path)
    elif format == "json":
        rows = _json_rows(path)
    elif format == "jsonl":
        rows = iter_jsonl(path)
    else:
        raise UserError(f"{path}: unknown format {format!r}; use json, jsonl or csv")
    first = True
    unseen = set(columns.values())  # a mapped column that no row has is a typo, not an optional field
    for where, row in rows:
        if columns:
            unseen.difference_update(row)
            row = _rename(row, columns)
        if first:
            first = False
            _check_columns(path, row, columns, required, format)
        yield where, row
    if unseen:
        what = "field" if format in ("json", "jsonl") else "column"
        raise UserError(f"{path}: no row has the {what}(s) {', '.join(map(repr, sorted(unseen)))} named in --columns; "
                        "fix the --columns mapping")


def load_records(path: "str | Path", format: Optional[str] = None, columns: Optional[dict] = None,
                 required: Iterable[str] = ()) -> list[dict]:
    """All rows of a JSON/JSONL/CSV/Parquet/Arrow file as dicts (see `iter_records`), e.g. for filtering or mixing
    datasets."""
    return [record for _, record in iter_records(path, format, columns, required)]


def _rename(row: dict, columns: dict) -> dict:
    mapped = {field: row[column] for field, column in columns.items() if column in row}
    row = {k: v for k, v in row.items() if k not in columns.values()}
    row.update(mapped)
    return row


def _dataset_records(dataset, label: str, columns: dict, required: Iterable[str]) -> Iterator[tuple[str, dict]]:
    """The rows of a datasets.Dataset, renamed by `columns`; the columns are checked against its schema first."""
    names = list(dataset.column_names)
    unknown = [column for column in columns.values() if column not in names]
    if unknown:
        raise UserError(f"{label}: no column(s) {', '.join(map(repr, unknown))} named in --columns (its columns: "
                        f"{', '.join(names)}); fix the --columns mapping")
    _check_columns(label, dict.fromkeys(_rename(dict.fromkeys(names), columns)), columns, required, "dataset")
    for where, row in dataset_rows(dataset, label):
        yield where, _rename(row, columns) if columns else row


def _check_columns(path: "Path | str", row: dict, columns: dict, required: Iterable[str], format: str) -> None:
    if any(key in row for key in CONVERSATION_KEYS):
        return
    for field in required:
        if field not in row:
            found = ", ".join(repr(k) for k in row) or "none"
            what = "field" if format in ("json", "jsonl") else "column"
            if field in columns:
                raise UserError(f"{path}: no {columns[field]!r} {what} to use as {field!r} (found: {found}); "
                                "fix the --columns mapping")
            row_1 = "" if format == "dataset" else " row 1 has"  # a dataset's columns are its schema's
            raise UserError(f"{path}:{row_1} no {field!r} {what} (found: {found}); rename it in the file or map "
                            f"it with --columns '{{\"{field}\": \"<{what} name>\"}}'")


def _csv_rows(path: Path) -> Iterator[tuple[str, dict]]:
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except csv.Error as e:
        raise UserError(f"{path}:1: malformed CSV header ({e})") from None
    header = [h.strip() for h in header]
    duplicates = [h for h, n in Counter(header).items() if n > 1]
    if duplicates:
        raise UserError(f"{path}:1: the header names column {duplicates[0]!r} twice; rename one of them")
    row_number, line = 0, reader.line_num
    while True:
        start = line + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise UserError(f"{path}: row {row_number + 1} (line {start}): malformed CSV ({e}); a field with commas, "
                            'quotes or newlines must be quoted as "...", with quotes inside doubled ("")') from None
        line = reader.line_num
        if not values:
            continue  # blank line
        row_number += 1
        if len(values) != len(header):
            raise UserError(f"{path}: row {row_number} (line {start}): {len(values)} fields, but the header has "
                            f"{len(header)}; quote fields that contain commas")
        yield f"{path}: row {row_number} (line {start})", dict(zip(header, values))


def _json_rows(path: Path) -> Iterator[tuple[str, dict]]:
    text = read_text(path)
    try:
        data = parse_json(text, allow_nan=True)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix the file") from None
    except JSONBoundsError as e:  # a crafted file: a number of 10^6 digits, nesting 100,000 deep
        raise UserError(f"{path}: {e}; fix the file") from None
    if isinstance(data, dict):  # {"data": [...]} / {"train": [...]}: the one list of rows inside
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise UserError(f"{path}: expected a JSON array of rows (or an object holding one)")
        data = lists[0]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of rows, found {type(data).__name__}")
    for i, row in enumerate(data, 1):
        if not isinstance(row, dict):
            raise UserError(f"{path}: row {i}: expected a JSON object, found {type(row).__name__}")
        yield f"{path}: row {i}", row


def iter_jsonl(path: "str | Path") -> Iterator[tuple[str, dict]]:
    """Yields (where, object) for each line of a JSON Lines file (every JSONL file the toolkit reads: records, IFEval
    prompts and responses, score sidecars); `where` is "file:LINE" for messages. Blank lines are skipped; a line that
    is not a JSON object is a one-line error naming file:LINE. Read as `read_text` reads (gzip, BOM, UTF-8 errors)."""
    path = Path(path)
    # split on \n only: JSON strings may contain U+2028 and other characters str.splitlines() would split on
    for line_number, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            row = parse_json(line, first_line=line_number, allow_nan=True)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not valid JSON ({e.msg}); fix or delete the line") from None
        except JSONBoundsError as e:  # "line N holds ..." names the line itself
            raise UserError(f"{path if str(e).startswith('line ') else where}: {e}; fix or delete the line") from None
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a JSON object, found {type(row).__name__}")
        yield where, row


def write_records(path: "str | Path", records: Sequence[dict]) -> Path:
    """Writes records atomically: a JSON array for .json, one object per line otherwise (.jsonl)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            if path.suffix == ".json":
                json.dump(list(records), f, ensure_ascii=False, indent=2)
                f.write("\n")
            else:
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def fetch_source(data_path: Optional[Path], destination_path: Path, *, repo_id: Optional[str] = None,
                 filename: Optional[str] = None, url: Optional[str] = None,
                 access_token: Optional[str] = None, flag: str = "--data_path") -> Path:
    """The source file: `data_path` when given (the script's `flag` names it in messages), else downloaded once
    (from a Hub dataset repo or a URL) into destination_path/source and reused from there."""
    if data_path is not None:
        data_path = Path(data_path)
        if not data_path.exists():
            raise UserError(f"{data_path}: file not found ({flag})")
        if data_path.is_dir():
            raise UserError(f"{data_path}: a folder; {flag} takes the file itself")
        return data_path
    cache_dir = Path(destination_path) / "source"
    if repo_id is not None:
        return download_dataset_file(repo_id, filename, access_token, cache_dir=cache_dir)
    if url is None:
        raise UserError("no source given: pass --data_path")
    target = cache_dir / url.rstrip("/").rsplit("/", 1)[-1]
    if target.is_file():
        return target
    print(f"downloading {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                while block := response.read(1 << 20):
                    f.write(block)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"{url}: cannot download ({reason}); check the network, or download the file yourself and "
                        "pass --data_path") from None
    return target
