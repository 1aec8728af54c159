"""Prepare OpenAssistant Conversations (oasst1): the highest-ranked thread of every conversation tree.

    python scripts/prepare_oasst.py --checkpoint_dir ... --languages en,de
    python scripts/prepare_oasst.py --checkpoint_dir ... --dataset_id OpenAssistant/oasst1 --split validation

The source is oasst1's flat message list (2023-04-12_oasst_ready.messages.jsonl.gz): one message per line with
message_id, parent_id (null for a tree's first prompt), role (prompter | assistant), text, lang and rank (0 = the
reply people preferred among its siblings). From each first prompt the thread follows the best-ranked reply at
every step down to a leaf, ending on an assistant answer; deleted or rejected messages are skipped. The Hub's
OpenAssistant/oasst1 (Parquet, --dataset_id) and .parquet / .arrow copies (--data_path) have the same columns.
"""

import importlib.util
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterator, Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.prepare import prepare_source
from lit_gpt.data.records import Origin, Source, iter_records
from lit_gpt.utils import UserError, run_cli

REPO_ID = "OpenAssistant/oasst1"
FILENAME = "2023-04-12_oasst_ready.messages.jsonl.gz"
ROLES = {"prompter": "user", "assistant": "assistant"}


def best_threads(source: "Path | Source", languages: Optional[set]) -> Iterator[tuple[str, dict]]:
    children = defaultdict(list)
    roots = []
    for where, message in iter_records(source, format="jsonl"):
        missing = [k for k in ("message_id", "role", "text") if k not in message]
        if missing or message.get("role") not in ROLES:
            problem = (f"no {missing[0]!r} field" if missing
                       else f"role {message.get('role')!r} is not prompter/assistant")
            raise UserError(f"{where}: {problem}; expected an oasst1 message (message_id, parent_id, role, text)")
        if message.get("deleted") or message.get("review_result") is False:
            continue
        if message.get("parent_id") is None:
            roots.append((where, message))
        else:
            children[message["parent_id"]].append(message)

    def rank(message: dict) -> tuple:  # unranked replies after ranked ones, then the order in the file
        return (message.get("rank") is None, message.get("rank") or 0)

    for where, root in roots:
        if languages and root.get("lang") not in languages:
            continue
        thread = [root]
        while children.get(thread[-1]["message_id"]):
            thread.append(min(children[thread[-1]["message_id"]], key=rank))
        # rows without an answer reach normalize() as a one-message conversation and are counted as dropped
        yield where, {"messages": [{"role": ROLES[m["role"]], "content": m["text"]} for m in thread],
                      "source": "oasst1", "id": root.get("message_tree_id") or root["message_id"],
                      "lang": root.get("lang")}


def main(data_path: Optional[Path] = None, languages: Optional[str] = "en", access_token: Optional[str] = None,
         destination_path: Optional[Path] = None, **kwargs) -> dict:
    """Prepare oasst1: download (or read --data_path), pick the best threads, tokenize, write the data.

    Args:
        data_path: a local oasst1 messages file (.jsonl, .jsonl.gz, .parquet, .arrow) instead of the download
        languages: comma-separated language codes of the conversations to keep, or "all"
        access_token: Hugging Face token (default: $HF_TOKEN)
        destination_path: output directory (default: data/oasst)
    """
    keep = None if not languages or languages == "all" else {s.strip() for s in languages.split(",") if s.strip()}
    origin = Origin(data_path, Path(destination_path or "data/oasst"), repo_id=REPO_ID, filenames=(FILENAME,))
    return prepare_source(origin, lambda source: best_threads(source, keep), name="oasst",
                          options={"languages": sorted(keep) if keep else "all"}, access_token=access_token, **kwargs)


if __name__ == "__main__":
    run_cli(main)
