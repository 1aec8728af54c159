"""Held-out evaluation rows from a file in any of the layouts people use: the data pipeline's (Alpaca, Dolly,
conversations, ...), Vicuna's {"text"}, Self-Instruct's {"instruction", "instances": [{"input", "output"}]},
MT-bench's {"turns"}. Each row is {instruction, input, output or None, messages}; rows without an answer still serve
as prompts (`lit_gpt.studies.evaluation`'s EOS rate and judge, `lit_gpt.eval.run`'s reference loss skips them).
"""

import random
from pathlib import Path

from lit_gpt.data.normalize import BadRecord, normalize
from lit_gpt.data.records import load_records
from lit_gpt.utils import UserError


def eval_rows(path: Path) -> list[dict]:
    """{instruction, input, output or None} per row of an eval file (see the module docstring for the layouts)."""
    rows = []
    for number, record in enumerate(load_records(path), 1):
        try:
            example = normalize(record)
            rows.append({"instruction": example["instruction"], "input": example["input"],
                         "output": example["output"], "messages": example.get("messages")})
            continue
        except BadRecord:
            pass
        turns = record.get("turns") if isinstance(record.get("turns"), list) else []
        instruction = next((v for v in (record.get("instruction"), record.get("text"), record.get("question"),
                                        record.get("prompt"), *turns[:1]) if isinstance(v, str) and v.strip()), None)
        if instruction is None:
            raise UserError(f"{path}: row {number}: no instruction (looked for instruction, text, question, prompt, "
                            "turns); give rows with an instruction and optionally an output")
        instances = record.get("instances") if isinstance(record.get("instances"), list) else []
        first = instances[0] if instances and isinstance(instances[0], dict) else {}
        output = next((v for v in (record.get("output"), record.get("response"), record.get("answer"),
                                   first.get("output")) if isinstance(v, str) and v.strip()), None)
        rows.append({"instruction": instruction, "input": str(record.get("input") or first.get("input") or ""),
                     "output": output})
    if not rows:
        raise UserError(f"{path}: no rows")
    return rows


def seeded_sample(items: list, count: int, seed) -> list:
    """`count` of the items, drawn with `seed`, in their order (all of them when there are no more): a declared
    random sample of a benchmark, the same for every model evaluated with the same seed."""
    if len(items) <= count:
        return items
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), count))]
