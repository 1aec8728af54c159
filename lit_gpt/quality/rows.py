"""The rows that data-quality tools score, and their files: a dataset's rows as stored (JSON/JSONL/CSV in, JSON or
JSONL out, written atomically), the (instruction, input, output) each is scored on, the columns a score adds, and
the two helpers the model-based scorers share for building their inputs.

Scoring methods (one column each, written back beside the rows): `alpagasus` (a judge model's 0-5 rating,
`lit_gpt.quality.judge`), `ifd` (Instruction-Following Difficulty, `lit_gpt.quality.ifd`) and `heuristics`
(rule-based flags, `lit_gpt.quality.heuristics`).
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from lit_gpt.data.normalize import BadRecord, normalize
from lit_gpt.data.records import load_records
from lit_gpt.utils import atomic_path

METHODS = ("alpagasus", "ifd", "heuristics")
SCORE_COLUMNS = {"alpagasus": "score_alpagasus", "ifd": "score_ifd", "heuristics": "heuristics_pass"}
FLAGS_COLUMN = "heuristics_flags"
# ======================================================================================================================
# Model-based scoring
# ======================================================================================================================
@dataclass
class ScoringRow:
    index: int
    instruction: str
    input: str
    output: str

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps([self.instruction, self.input, self.output]).encode()).hexdigest()[:16]


def fit_ids(ids: list[int], max_len: int, head_fraction: float = 0.3) -> tuple[list[int], bool]:
    """Cuts the middle out of a too-long prompt: the head keeps the task framing and instruction, the tail keeps the
    question and the answer prefix the score depends on. Returns (ids, truncated)."""
    if len(ids) <= max_len:
        return ids, False
    head = int(max_len * head_fraction)
    return ids[:head] + ids[len(ids) - (max_len - head):], True


def right_padded(sequences: list[list[int]], pad_id: int, device) -> torch.Tensor:
    T = max(len(s) for s in sequences)
    batch = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        batch[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return batch.to(device)


def result_columns(method: str, result: dict) -> dict:
    """The columns a scoring result adds to its row."""
    if method == "heuristics":
        return {FLAGS_COLUMN: result["flags"], SCORE_COLUMNS[method]: result["score"]}
    return {SCORE_COLUMNS[method]: result["score"]}


# ======================================================================================================================
# Reading and writing datasets
# ======================================================================================================================
def read_rows(path: "str | Path", columns: Optional[dict] = None) -> list[dict]:
    """The rows of a JSON/JSONL/CSV dataset as stored (columns: our field -> the file's column, as in prepare_json)."""
    return load_records(path, columns=columns)


def to_scoring_row(index: int, row: dict) -> ScoringRow:
    """The instruction/input/output a row is scored on (the first exchange of a conversation). A row the data
    pipeline would reject (empty output, ...) keeps whatever text it has: the heuristics flag it, the models score
    what is there, and the filter decides."""
    try:
        record = normalize(row)
    except BadRecord:
        record = {k: row.get(k) if isinstance(row.get(k), str) else "" for k in ("instruction", "input", "output")}
    return ScoringRow(index, record.get("instruction") or "", record.get("input") or "", record.get("output") or "")


def write_rows(path: "str | Path", rows: Sequence[dict]) -> Path:
    """Writes rows atomically: a JSON array for .json, one object per line otherwise (.jsonl)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            if path.suffix == ".json":
                json.dump(list(rows), f, ensure_ascii=False, indent=2)
                f.write("\n")
            else:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def default_output(data_path: Path, tag: str) -> Path:
    suffix = data_path.suffix if data_path.suffix in (".json", ".jsonl") else ".jsonl"
    return data_path.with_name(f"{data_path.stem}.{tag}{suffix}")


def sidecar_path(output: Path, method: str) -> Path:
    return output.with_name(f"{output.name}.{method}.scores.jsonl")
