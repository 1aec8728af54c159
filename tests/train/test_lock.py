"""lit_gpt/train/lock.py: one lock per training run, taken by global rank 0 only, its refusal shared by every rank; and
finetune() holding it: a second run into a busy out_dir is refused with the first one's PID, a killed run's lock is
taken over, the lock is gone when the run ends."""

import os
import subprocess
import sys

import pytest

from helpers import fast_args
from lit_gpt.file_names import LOCK_FILE
from lit_gpt.train.lock import run_lock
from lit_gpt.train.loop import finetune
from lit_gpt.utils import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


class Rank:
    """What run_lock uses of Fabric: the rank, and a broadcast that hands every rank rank 0's object."""

    def __init__(self, rank: int, shared: dict) -> None:
        self.is_global_zero, self.shared = rank == 0, shared

    def broadcast(self, obj, src: int = 0):
        if self.is_global_zero:
            self.shared["from_rank_0"] = obj
        return self.shared["from_rank_0"]


def test_only_rank_zero_locks_and_a_refusal_stops_every_rank(tmp_path):
    shared = {}
    with run_lock(Rank(0, shared), tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())
        with run_lock(Rank(1, shared), tmp_path):  # another rank of the same run: no lock of its own, no refusal
            pass
    assert not (tmp_path / LOCK_FILE).exists()

    (tmp_path / LOCK_FILE).write_text(f"{os.getppid()} {os.uname().nodename}\n")  # a live process holds it
    shared = {}
    with pytest.raises(UserError, match=f"PID {os.getppid()}"):
        with run_lock(Rank(0, shared), tmp_path):
            pass
    with pytest.raises(UserError, match=f"PID {os.getppid()}"):  # rank 1 learns it from rank 0: no barrier hang
        with run_lock(Rank(1, shared), tmp_path):
            pass


def test_finetune_refuses_a_busy_out_dir_and_takes_over_a_killed_runs_lock(run_setup, tmp_path):
    checkpoint, data = run_setup
    out = tmp_path / "run"
    out.mkdir()
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_FILE).write_text(f"{busy.pid} {os.uname().nodename}\n")
        with pytest.raises(UserError, match=f"another run is writing here \\(PID {busy.pid} on "):
            finetune("lora", checkpoint, data, out, fast_args(max_iters=1))
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing of the second run was written
    finally:
        busy.kill()
        busy.wait()
    summary = finetune("lora", checkpoint, data, out, fast_args(max_iters=1))  # its process is gone: stale
    assert summary["steps"] == 1 and (out / "lit_model.pth.lora").is_file()
    assert not (out / LOCK_FILE).exists()
