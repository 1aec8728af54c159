"""The records data-quality tools score, and their files: the (instruction, input, output) each record is scored
on (`ScoringExample`), the columns a score adds to the record, where the scored records go by default and where
their scores sidecar lives (`lit_gpt.quality.scoring.ScoreCache`), and the two helpers the model-based scorers share
for building their inputs. The records are read and written by lit_gpt.data.records (`load_records`,
`write_records`).

Scoring methods (one column each, added to every record): `alpagasus` (a judge model's 0-5 rating,
`lit_gpt.quality.judge`), `ifd` (Instruction-Following Difficulty, `lit_gpt.quality.ifd`), `heuristics`
(rule-based flags, `lit_gpt.quality.heuristics`) and `constraints` (the share of a row's verifiable constraints its
answer follows, `lit_gpt.quality.constraints`).
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from lit_gpt.data.normalize import BadRecord, normalize

METHODS = ("alpagasus", "ifd", "heuristics", "constraints")
SCORE_COLUMNS = {"alpagasus": "score_alpagasus", "ifd": "score_ifd", "heuristics": "heuristics_pass",
                 "constraints": "score_constraints"}
FLAGS_COLUMN = "heuristics_flags"
# ======================================================================================================================
# Model-based scoring
# ======================================================================================================================
@dataclass
class ScoringExample:
    """What a method scores of record `index`; its content_hash keys the record's entry in the scores sidecar."""
    index: int
    instruction: str
    input: str
    output: str
    constraints: Optional[list] = None  # the record's verifiable constraints (`lit_gpt.quality.constraints`), if any

    @property
    def content_hash(self) -> str:
        scored = [self.instruction, self.input, self.output] + ([self.constraints] if self.constraints else [])
        return hashlib.sha256(json.dumps(scored).encode()).hexdigest()[:16]


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
    """The columns a scoring result adds to its record."""
    if method == "heuristics":
        return {FLAGS_COLUMN: result["flags"], SCORE_COLUMNS[method]: result["score"]}
    return {SCORE_COLUMNS[method]: result["score"]}


# ======================================================================================================================
# Scored records and their files
# ======================================================================================================================
def scoring_example(index: int, record: dict) -> ScoringExample:
    """The instruction/input/output a record is scored on (the first exchange of a conversation). A record the data
    pipeline would reject (empty output, ...) keeps whatever text it has: the heuristics flag it, the models score
    what is there, and the filter decides."""
    try:
        text = normalize(record)
    except BadRecord:
        text = {k: record.get(k) if isinstance(record.get(k), str) else "" for k in ("instruction", "input", "output")}
    return ScoringExample(index, text.get("instruction") or "", text.get("input") or "", text.get("output") or "",
                          record.get("constraints") if isinstance(record, dict) else None)


def default_output(data_path: Path, tag: str) -> Path:
    """Where records read from `data_path` go when scored or filtered: <stem>.<tag>.json(l) beside it."""
    suffix = data_path.suffix if data_path.suffix in (".json", ".jsonl") else ".jsonl"
    return data_path.with_name(f"{data_path.stem}.{tag}{suffix}")


def scores_sidecar_path(output: Path, method: str) -> Path:
    """The scores sidecar of `method` beside the scored records `output` (see ScoreCache)."""
    return output.with_name(f"{output.name}.{method}.scores.jsonl")
