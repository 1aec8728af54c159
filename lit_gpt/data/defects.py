"""Checks of prepared examples that would silently hurt training (used by scripts/inspect_data.py)."""

from typing import Optional

from lit_gpt.data.tokenize import IGNORE_INDEX


DEFECTS = ("labels differ from input_ids", "trained span lacks EOS", "nothing trained", "empty response",
           "doubled BOS", "missing BOS", "longer than max_seq_length")


def example_defects(example: dict, bos_id: Optional[int], eos_id: Optional[int], use_bos: bool = False,
                    max_seq_length: Optional[int] = None) -> list[str]:
    """The problems of one prepared example that would silently hurt training (names from DEFECTS)."""
    ids, labels = example["input_ids"], example["labels"]
    if ids.shape != labels.shape:
        return ["labels differ from input_ids"]
    defects = []
    trained = labels != IGNORE_INDEX
    if bool((labels[trained] != ids[trained]).any()):
        defects.append("labels differ from input_ids")
    n_trained = int(trained.sum())
    if n_trained == 0:
        defects.append("nothing trained")
    else:
        if eos_id is not None and int(labels[trained][-1]) != eos_id:
            defects.append("trained span lacks EOS")
        if n_trained == 1 or not str(example.get("output", "x")).strip():
            defects.append("empty response")
    if bos_id is not None and len(ids) > 1 and int(ids[0]) == bos_id and int(ids[1]) == bos_id:
        defects.append("doubled BOS")
    if use_bos and bos_id is not None and (len(ids) == 0 or int(ids[0]) != bos_id):
        defects.append("missing BOS")
    if max_seq_length is not None and len(ids) > max_seq_length:
        defects.append("longer than max_seq_length")
    return defects
