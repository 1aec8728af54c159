"""In which order an epoch visits the training examples (`--order`).

`epoch_order` is the one place that decides it; new orders (by source, by length, curricula) are added here.
The training loop then cuts the order into batches of `batch_size` examples. Only for orders whose sequence means
nothing (`shuffle`) may the loop regroup examples of similar length into the same batch to save padding; every
other order keeps its batches as given (examples are only sorted by length inside each batch).
"""

import random
from typing import Sequence

from lit_gpt.utils import UserError

ORDERS = {
    "shuffle": "a new random permutation every epoch (from --seed and the epoch number)",
    "as_given": "the order of train.pt, every epoch",
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
    Deterministic in (len(examples) or their content, epoch, seed, order), so a resumed run sees the same order."""
    check_order(order)
    indices = list(range(len(examples)))
    if order == "shuffle":
        random.Random(f"shuffle/{seed}/{epoch}").shuffle(indices)
    return indices


def may_regroup_by_length(order: str) -> bool:
    return check_order(order) in UNORDERED
