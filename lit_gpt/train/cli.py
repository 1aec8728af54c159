"""The fine-tuning scripts' command line: every hyperparameter constant of a script becomes a flag whose default is
the constant's value (edit the constant to change the default; a flag or a `--config` YAML file beats it).

    finetune/lora.py:  <constants> ... run_cli(finetune_command("lora", globals()))
"""

from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from lit_gpt.train.args import TrainArgs, hyperparameter_specs, lora_config_from_flags
from lit_gpt.train.loop import finetune
from lit_gpt.utils import with_flags

METHOD_DESCRIPTIONS = {"lora": "Fine-tune with LoRA: the base weights stay frozen, low-rank updates are trained.",
                       "full": "Fine-tune every weight."}


def script_cli(main: Callable, constants: dict) -> Callable:
    """`main` with one keyword parameter per hyperparameter constant of its script (default: the constant's value),
    for `run_cli`: the CLI shows every constant as a flag, editing a constant changes the default, a flag or a
    `--config` file beats it."""
    specs = hyperparameter_specs()
    stray = [name for name, value in constants.items()
             if not name.startswith("_") and name.islower() and name not in specs
             and (value is None or type(value) in (bool, int, float, str))]
    if stray:
        raise TypeError(f"{constants.get('__file__')}: constants {stray} are not known hyperparameters "
                        f"(known: {', '.join(specs)})")
    return with_flags(main, [(name, annotation, constants[name], help)
                             for name, (annotation, _, help) in specs.items() if name in constants])


def run_script(method: Literal["lora", "full"], constants: dict, checkpoint_dir: Path, data_dir: Path,
               out_dir: Optional[Path], resume: Optional[str], overrides: dict) -> dict:
    """The body of both scripts' `main`: the script's constants, overridden by the given values, run `finetune`."""
    specs = hyperparameter_specs()
    values = {name: constants[name] for name in specs if name in constants}
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise TypeError(f"unknown hyperparameters {unknown} for finetune/{method}.py")
    values.update(overrides)
    train_names = {f.name for f in fields(TrainArgs)}
    train = TrainArgs(**{k: v for k, v in values.items() if k in train_names})
    lora = lora_config_from_flags(values) if method == "lora" else None
    return finetune(method, checkpoint_dir, data_dir, out_dir, train, lora, resume, hyperparameters=values)


def finetune_command(method: Literal["lora", "full"], constants: dict) -> Callable:
    """The `main` of finetune/<method>.py, for `run_cli`: the run's paths plus one flag per constant."""

    def main(*, checkpoint_dir: Path, data_dir: Path, out_dir: Optional[Path] = None, resume: Optional[str] = None,
             **hyperparameters: Any) -> dict:
        return run_script(method, constants, checkpoint_dir, data_dir, out_dir, resume, hyperparameters)

    main.__doc__ = f"""{METHOD_DESCRIPTIONS[method]}

    Args:
        checkpoint_dir: the base model (lit_config.json, lit_model.pth, tokenizer files)
        data_dir: prepared data (train.pt, test.pt, manifest.json) for this checkpoint's tokenizer
        out_dir: where weights, checkpoints and logs go (default: out/{method}/<data name>)
        resume: continue an interrupted run: "auto" (the newest checkpoint in out_dir) or a checkpoint path
    """
    return script_cli(main, constants)


def default_hyperparameters(method: Literal["lora", "full"]) -> dict:
    """The library's defaults of every hyperparameter of a method (finetune/<method>.py ships with these values)."""
    return {name: default for name, (_, default, _) in hyperparameter_specs().items()
            if method == "lora" or not name.startswith("lora_")}
