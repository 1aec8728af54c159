"""A run's Lightning Fabric: strategy, precision or quantization plugin, the launcher's world checked against
--devices/--num_nodes, and the loggers (the CSV file always, plus the --logger one)."""

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.loggers import CSVLogger, TensorBoardLogger
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.fabric.strategies import FSDPStrategy

from lit_gpt.model import Block
from lit_gpt.train.args import TrainArgs
from lit_gpt.utils import UserError


def make_fabric(args: TrainArgs, precision: str, plugin, out_dir: Path) -> L.Fabric:
    strategy: Any = args.strategy
    if strategy == "fsdp":
        # full state dicts: checkpoints are single files; use_orig_params: LoRA mixes frozen and trainable weights
        strategy = FSDPStrategy(auto_wrap_policy={Block}, state_dict_type="full", use_orig_params=True)
    check_external_launch(args)
    loggers = [CSVLogger(root_dir=out_dir / "logs", name="csv", flush_logs_every_n_steps=10),
               *extra_loggers(args.logger, out_dir)]
    try:
        return L.Fabric(devices=args.devices, num_nodes=args.num_nodes, strategy=strategy,
                        precision=None if plugin is not None else precision, plugins=plugin, loggers=loggers)
    except (ValueError, RuntimeError, TypeError) as e:
        raise UserError(f"--devices {args.devices} --num_nodes {args.num_nodes} --strategy {args.strategy}: "
                        f"{str(e).splitlines()[0]}") from None


def check_external_launch(args: TrainArgs) -> None:
    """Under torchrun or SLURM's srun the launcher starts the processes and Fabric joins them as they are, without
    comparing them to --devices (per node) and --num_nodes, which set the batch split (and, left at 1, the strategy:
    each process would train alone and write the same out_dir). So they must describe the launched world."""
    if TorchElasticEnvironment.detect():
        world, per_node = int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_WORLD_SIZE"])
        launcher = "torchrun"
    elif SLURMEnvironment.detect():  # srun in a batch job (not an interactive `bash` job step)
        world = int(os.environ["SLURM_NTASKS"])
        per_node = int(os.environ.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0])  # "4" or "4(x2)"
        launcher = "SLURM"
    else:
        return
    nodes = max(1, world // per_node)
    if (args.devices, args.num_nodes) != (per_node, nodes):
        raise UserError(f"{launcher} started {world} process(es), {per_node} per node on {nodes} node(s), but "
                        f"--devices {args.devices} --num_nodes {args.num_nodes} say {args.devices * args.num_nodes}; "
                        f"pass --devices {per_node} --num_nodes {nodes}")


def extra_loggers(logger: str, out_dir: Path) -> list:
    """The --logger beside the CSV file. Lightning's WandbLogger and MLFlowLogger (from lightning.pytorch) are Fabric
    loggers too: rank zero logs, the others' calls do nothing."""
    logs = out_dir / "logs"
    if logger == "tensorboard":
        return [TensorBoardLogger(root_dir=logs, name="tensorboard")]
    if logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        logs.mkdir(parents=True, exist_ok=True)
        return [WandbLogger(project=os.environ.get("WANDB_PROJECT", "lit-gpt-data"), name=out_dir.name,
                            save_dir=str(logs))]
    if logger == "mlflow":
        from lightning.pytorch.loggers import MLFlowLogger

        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not tracking_uri:
            # no server named: a folder beside the other logs. MLflow 3 wants a database there (sqlalchemy, which
            # mlflow-skinny lacks) and refuses its own file store unless this is set; the file store needs nothing
            tracking_uri = (logs / "mlruns").resolve().as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return [MLFlowLogger(experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", "lit-gpt-data"),
                             run_name=out_dir.name, tracking_uri=tracking_uri)]
    return []


def close_loggers(loggers: list, status: str) -> None:
    """Flushes every logger. A W&B run is also finished: Lightning leaves it open, so the next run in this process
    (a dataset comparison trains several) would log into it. `_experiment`, not `experiment`: the latter would start
    a W&B run on a rank (or after a failure) that never made one."""
    for logger in loggers:
        logger.finalize(status)
        experiment = getattr(logger, "_experiment", None) if type(logger).__name__ == "WandbLogger" else None
        if experiment is not None:
            experiment.finish(exit_code=0 if status == "success" else 1)
