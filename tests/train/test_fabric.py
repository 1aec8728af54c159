"""lit_gpt/train/fabric.py: a world started by torchrun or SLURM must match --devices and --num_nodes. (The loggers
are tested through finetune in test_loop.py.)"""

import pytest

from helpers import fast_args
from lit_gpt.train.fabric import check_external_launch
from lit_gpt.utils import UserError


# ---- launched by torchrun or SLURM -----------------------------------------------------------------------------------
TORCHRUN_2_NODES = {"TORCHELASTIC_RUN_ID": "r", "RANK": "0", "GROUP_RANK": "0", "LOCAL_RANK": "0",
                    "LOCAL_WORLD_SIZE": "1", "WORLD_SIZE": "2"}
SLURM_2_NODES_X_2 = {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "2", "SLURM_JOB_NAME": "ft",
                     "SLURM_NODELIST": "node[1-2]", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}


@pytest.mark.parametrize("env, fix", [(TORCHRUN_2_NODES, "--devices 1 --num_nodes 2"),
                                      (SLURM_2_NODES_X_2, "--devices 2 --num_nodes 2")], ids=["torchrun", "slurm"])
def test_devices_and_num_nodes_must_describe_the_launched_world(monkeypatch, env, fix):
    for name in [*TORCHRUN_2_NODES, *SLURM_2_NODES_X_2]:
        monkeypatch.delenv(name, raising=False)
    check_external_launch(fast_args())  # no launcher: --devices and --num_nodes are Fabric's to launch
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=f"pass {fix}$"):  # the defaults would train every process alone
        check_external_launch(fast_args())
    devices, num_nodes = (int(v) for v in fix.split()[1::2])
    check_external_launch(fast_args(devices=devices, num_nodes=num_nodes))
