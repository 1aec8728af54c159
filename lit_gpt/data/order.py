"""In which order an epoch visits the training examples (`--order`).

`epoch_order` is the one place that decides it. The training loop then cuts the order into batches of `batch_size`
examples. Only for orders whose sequence means nothing (`shuffle`) may the loop regroup examples of similar length
into the same batch to save padding; every other order keeps its batches as given (examples are only sorted by
length inside each batch, which does not change what a step trains on).

Every order is a function of (the examples, the epoch, --seed) alone, so a rerun or a resumed run visits the same
examples in the same order; `order_hash` fingerprints an epoch's order for the logs.

- shuffle: a new random permutation every epoch.
- as_given: train.pt's order every epoch (scripts/mix_datasets.py writes its inputs one after the other).
- by_source: one block per `source`, the blocks in alphabetical order of the source names every epoch (rename a
  source or use as_given to choose another), the examples inside a block shuffled anew each epoch: training sees
  one source after the other, as in sequential fine-tuning, but not the same sequence inside a source every time.
- by_length_asc / by_length_desc: by token count (input_ids), shortest / longest first; ties keep train.pt's order.
- curriculum: ascending `score` (easiest or lowest-rated first, e.g. an IFD or judge score kept by the data
  pipeline as `score`); ties keep train.pt's order. Every example must have a score.
"""

import hashlib
import random
from collections import defaultdict
from typing import Sequence

from lit_gpt.utils import UserError

ORDERS = {
    "shuffle": "a new random permutation every epoch (from --seed and the epoch number)",
    "as_given": "the order of train.pt, every epoch",
    "by_source": "one block per example `source`, blocks in alphabetical order, shuffled inside each block per epoch",
    "by_length_asc": "shortest examples (tokens) first, every epoch",
    "by_length_desc": "longest examples (tokens) first, every epoch",
    "curriculum": "ascending `score` (lowest first), every epoch; every example needs a score",
}
# orders whose sequence carries no meaning, so batches may be regrouped by length
UNORDERED = {"shuffle"}


def check_order(order: str) -> str:
    if order not in ORDERS:
        choices = "; ".join(f"{name}: {what}" for name, what in ORDERS.items())
        raise UserError(f"--order {order!r} is not known; choose one of {choices}")
    return order


def epoch_order(examples: Sequence[dict], epoch: int, seed: int, order: str = "shuffle") -> list[int]:
    """Indices into `examples`, each exactly once, in the order epoch `epoch` (0-based) visits them.
    Deterministic in (the examples, epoch, seed, order), so a resumed run sees the same order."""
    check_order(order)
    indices = list(range(len(examples)))
    if order == "shuffle":
        random.Random(f"shuffle/{seed}/{epoch}").shuffle(indices)
    elif order == "by_source":
        blocks = defaultdict(list)
        for i in indices:
            blocks[str(examples[i].get("source", ""))].append(i)
        indices = []
        for source in sorted(blocks):
            block = blocks[source]
            random.Random(f"by_source/{seed}/{epoch}/{source}").shuffle(block)
            indices += block
    elif order in ("by_length_asc", "by_length_desc"):
        lengths = [_length(example, i) for i, example in enumerate(examples)]
        sign = 1 if order == "by_length_asc" else -1
        indices.sort(key=lambda i: sign * lengths[i])  # stable: ties keep train.pt's order
    elif order == "curriculum":
        scores = _scores(examples)
        indices.sort(key=scores.__getitem__)
    return indices


def _length(example: dict, index: int) -> int:
    ids = example.get("input_ids")
    if ids is None:
        raise UserError(f"training example {index} has no input_ids; prepare the data again")
    return len(ids)


def _scores(examples: Sequence[dict]) -> list[float]:
    missing = [i for i, example in enumerate(examples) if not isinstance(example.get("score"), (int, float))
               or isinstance(example.get("score"), bool) or example["score"] != example["score"]]
    if missing:
        first = examples[missing[0]]
        raise UserError(f"--order curriculum needs a `score` on every training example; {len(missing)} of "
                        f"{len(examples)} have none (first: example {missing[0]}, id {first.get('id')!r}); score the "
                        "rows (scripts/score_dataset.py) and prepare them with the score mapped, e.g. "
                        "--columns '{\"score\": \"score_ifd\"}', or choose another --order")
    return [float(example["score"]) for example in examples]


def order_hash(indices: Sequence[int]) -> str:
    """A short fingerprint of an epoch's order (logged, so two runs can be checked to have trained alike)."""
    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:12]


def may_regroup_by_length(order: str) -> bool:
    return check_order(order) in UNORDERED
