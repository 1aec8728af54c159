"""The training set as the loop sees it, and how an epoch is cut into batches.

Every epoch visits each training example once, in the order `lit_gpt.data.order.epoch_order` gives (reshuffled per
epoch from --seed by default). The order is cut into global batches of `batch_size` examples; with `--order
shuffle`, chunks of about 100 micro-batches are first sorted by length, cut, and the batches shuffled, so examples
of similar length share a batch and little compute goes to padding. Each global batch is split into
`batch_size / micro_batch_size` micro-batches, dealt round-robin to the ranks (with --packing, its examples are
packed into rows instead: `lit_gpt.train.packing`). The plan depends only on the data, the seed, the order and
`batch_size`, so 2 ranks x micro-batch m train exactly like 1 rank x 2m, and a resumed run sees the same batches.
"""

import math
import random
from pathlib import Path
from typing import Optional

import torch

from lit_gpt.config import Config
from lit_gpt.data.order import epoch_order, may_regroup_by_length
from lit_gpt.file_names import TEST_FILE, TRAIN_FILE
from lit_gpt.utils import UserError, log

LENGTH_GROUP_EXAMPLES = 400  # sort chunks of about 100 micro-batches of 4 by length (rounded up to whole batches)


class TrainingSet:
    """Prepared examples shifted for next-token prediction: inputs[i] = input_ids[:-1], targets[i] = labels[1:]
    (-100 where there is nothing to learn), truncated to `max_seq_length` inputs. TrainingSet without any target
    token are dropped (`raw` keeps the remaining dicts, index-aligned)."""

    NOUN, EMPTY, DROP_REASON = "examples", "no example with a trained (response) token", "no response token left"

    @staticmethod
    def raw_length(example) -> Optional[int]:
        """The inputs of a prepared example (its tokens less the one shifted off); None for a malformed one."""
        ok = isinstance(example, dict) and isinstance(example.get("input_ids"), torch.Tensor)
        return example["input_ids"].numel() - 1 if ok else None

    def __init__(self, raw: list, max_seq_length: int, source: str, vocab_size: int) -> None:
        self.raw, self.inputs, self.targets = [], [], []
        self.truncated = self.dropped = 0
        for i, example in enumerate(raw):
            ids, labels = (example.get("input_ids"), example.get("labels")) if isinstance(example, dict) else (None, None)
            if not (isinstance(ids, torch.Tensor) and isinstance(labels, torch.Tensor) and ids.ndim == 1
                    and ids.shape == labels.shape and ids.numel() >= 2):
                raise UserError(f"{source} example {i}: needs 1-D `input_ids` and `labels` tensors of the same "
                                "length (at least 2 tokens); prepare the data again")
            if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
                raise UserError(f"{source} example {i}: token id {int(ids.max())} is outside the model's vocabulary "
                                f"of {vocab_size}; the data was prepared for another model")
            if ids.numel() - 1 > max_seq_length:
                ids, labels = ids[: max_seq_length + 1], labels[: max_seq_length + 1]
                self.truncated += 1
            target = labels[1:].long()
            if not bool((target != -100).any()):
                self.dropped += 1
                continue
            self.raw.append(example)
            self.inputs.append(ids[:-1].long())
            self.targets.append(target)
        self.lengths = [x.numel() for x in self.inputs]
        self.n_targets = [int((t != -100).sum()) for t in self.targets]

    def __len__(self) -> int:
        return len(self.inputs)

    def collate(self, indices: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, targets) right-padded to the longest; an empty list gives one padding token and no target
        (a rank without examples in a micro-batch still runs the forward/backward its peers wait for)."""
        if not indices:
            return torch.zeros(1, 1, dtype=torch.long, device=device), torch.full((1, 1), -100, device=device)
        T = max(self.lengths[i] for i in indices)
        input_ids = torch.zeros(len(indices), T, dtype=torch.long)
        targets = torch.full((len(indices), T), -100, dtype=torch.long)
        for row, i in enumerate(indices):
            input_ids[row, : self.lengths[i]] = self.inputs[i]
            targets[row, : self.lengths[i]] = self.targets[i]
        return input_ids.to(device), targets.to(device)


def epoch_batches(data: TrainingSet, epoch: int, seed: int, order: str, batch_size: int) -> list:
    """The global batches (lists of example indices, each sorted by length) of one epoch, every example once."""
    lengths = data.lengths
    indices = epoch_order(data.raw, epoch, seed, order)
    regroup = may_regroup_by_length(order)
    if regroup:
        chunk = batch_size * max(1, math.ceil(LENGTH_GROUP_EXAMPLES / batch_size))
        indices = [i for s in range(0, len(indices), chunk)
                   for i in sorted(indices[s: s + chunk], key=lengths.__getitem__)]
    batches = [sorted(indices[s: s + batch_size], key=lengths.__getitem__)
               for s in range(0, len(indices), batch_size)]
    if regroup:
        random.Random(f"batches/{seed}/{epoch}").shuffle(batches)
    return batches


def split_batch(batch: list, parts: int) -> list:
    """`parts` consecutive slices of `batch`, sizes differing by at most one (a short last batch spreads evenly)."""
    q, r = divmod(len(batch), parts)
    out, start = [], 0
    for k in range(parts):
        n = q + (k < r)
        out.append(batch[start: start + n])
        start += n
    return out


def padding_stats(data: TrainingSet, micro_batches: list) -> tuple[int, int]:
    """(real tokens, padded tokens) of the given micro-batches."""
    real = sum(data.lengths[i] for mb in micro_batches for i in mb)
    padded = sum(len(mb) * max(data.lengths[i] for i in mb) for mb in micro_batches if mb)
    return real, padded


def training_sets(train_raw: list, test_raw: list, data_dir: Path, config: Config,
                  override_max_seq_length: Optional[int], print=log, kind: type = None) -> tuple:
    """Train and test sets of `kind` (TrainingSet by default; the preference objective's PreferenceSet) cut to the
    longest sequence (or the override), at most the model's block_size. A kind says how long a raw item's longest
    input is (`raw_length`, None for a malformed one, which the set's constructor then names) and, in words, what
    it holds (`NOUN`), what an empty set lacks (`EMPTY`) and why an item is dropped (`DROP_REASON`)."""
    kind = kind or TrainingSet
    lengths = (kind.raw_length(item) for item in [*train_raw, *test_raw])
    longest = max((n for n in lengths if n is not None), default=1)
    max_seq_length = min(override_max_seq_length or longest, config.block_size)
    train_set = kind(train_raw, max_seq_length, str(data_dir / TRAIN_FILE), config.vocab_size)
    val_set = kind(test_raw, max_seq_length, str(data_dir / TEST_FILE), config.vocab_size)
    if not len(train_set):
        raise UserError(f"{data_dir / TRAIN_FILE}: {kind.EMPTY}; prepare it again")
    for name, ds in (("train", train_set), ("test", val_set)):
        if ds.truncated or ds.dropped:
            print(f"{name}: {ds.truncated} {kind.NOUN} truncated to {max_seq_length} tokens, "
                  f"{ds.dropped} dropped ({kind.DROP_REASON})")
    return train_set, val_set, max_seq_length
