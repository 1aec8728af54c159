"""The lock of a training run's out_dir (`lit_gpt.utils.output_lock`) under Fabric: one lock per run, not per process.

Every process of a multi-device run writes into the same out_dir, so only global rank 0 takes the lock (each rank
taking its own would find the others' and refuse). Rank 0's outcome is broadcast: when the lock is refused, every rank
stops with the same one-line error instead of waiting at a barrier for a rank 0 that has left.
"""

import contextlib
from pathlib import Path
from typing import Iterator

from lit_gpt.utils import UserError, output_lock


@contextlib.contextmanager
def run_lock(fabric, out_dir: Path) -> Iterator[None]:
    """Holds out_dir's lock (rank 0) for the block; call it after `fabric.launch()`, on every rank."""
    with contextlib.ExitStack() as stack:
        refusal = None
        if fabric.is_global_zero:
            try:
                stack.enter_context(output_lock(out_dir))
            except UserError as e:
                refusal = str(e)
        refusal = fabric.broadcast(refusal, src=0)
        if refusal is not None:
            raise UserError(refusal)
        yield
