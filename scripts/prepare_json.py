"""Prepare your own instruction data from a JSON array or JSONL file, with any field names.

    python scripts/prepare_json.py --data_path qa.jsonl --checkpoint_dir ... \
        --columns '{"instruction": "question", "output": "answer"}'

Fields after the mapping: `instruction` and `output` required, `input`, `source`, `id`, `score` optional, other
fields kept as metadata. Rows holding a conversation under `messages` ([{"role", "content"}, ...]) or
`conversations` are used as multi-turn examples.
"""

import sys
from pathlib import Path
from typing import Literal, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_gpt.data.prepare import prepare  # noqa: E402
from lit_gpt.data.records import fetch_source, iter_records  # noqa: E402
from lit_gpt.utils import UserError, run_cli  # noqa: E402


def main(data_path: Optional[Path] = None, columns: Optional[dict] = None,
         format: Optional[Literal["json", "jsonl"]] = None, name: Optional[str] = None,
         destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare a JSON/JSONL file: tokenize, write train.pt/test.pt/manifest.json.

    Args:
        data_path: the JSON (array of objects) or JSONL (one object per line) file
        columns: our field name -> the file's field name, e.g. {"instruction": "question", "output": "answer"}
        format: json or jsonl (default: from the file name and content)
        name: dataset name (default: the file name without extension); default destination data/<name>
        destination_path: output directory
    """
    if data_path is None:
        raise UserError("--data_path is required: the JSON or JSONL file to prepare")
    path = fetch_source(data_path, Path("."))
    name = name or path.name.split(".")[0]
    destination_path = Path(destination_path or Path("data") / name)
    records = iter_records(path, format=format, columns=columns, required=("instruction", "output"))
    return prepare(records, name=name, source_files=[path], destination_path=destination_path,
                   options={"columns": columns or {}, "format": format}, **kwargs)


if __name__ == "__main__":
    run_cli(main)
