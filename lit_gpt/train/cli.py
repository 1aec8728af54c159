"""The fine-tuning scripts' command line: every hyperparameter constant of a script becomes a flag whose default is
the constant's value (edit the constant to change the default; a flag or a `--config` YAML file beats it).

    finetune/lora.py:  <constants> ... run_cli(finetune_command("lora", globals()))
    finetune/dpo.py:   <constants> ... run_cli(preference_command(globals()))
"""

from pathlib import Path
from typing import Any, Callable, Literal, Optional

from lit_gpt.train.args import hyperparameter_specs, typed_hyperparameters, typed_preference_hyperparameters
from lit_gpt.train.loop import finetune
from lit_gpt.train.preference_step import PreferenceObjective
from lit_gpt.utils import with_flags

METHOD_DESCRIPTIONS = {"lora": "Fine-tune with LoRA: the base weights stay frozen, low-rank updates are trained.",
                       "full": "Fine-tune every weight."}
CONSTANT_TYPES = (bool, int, float, str)  # a script's global of one of these (or None) is a hyperparameter constant


def script_constants(namespace: dict) -> dict:
    """A script's hyperparameter constants among its globals: the lowercase names bound to None or a plain value."""
    return {name: value for name, value in namespace.items()
            if not name.startswith("_") and name.islower() and (value is None or type(value) in CONSTANT_TYPES)}


def script_cli(main: Callable, constants: dict, preference: bool = False) -> Callable:
    """`main` with one keyword parameter per hyperparameter constant of its script (default: the constant's value),
    for `run_cli`: the CLI shows every constant as a flag, editing a constant changes the default, a flag or a
    `--config` file beats it."""
    specs = hyperparameter_specs(preference)
    stray = [name for name in script_constants(constants) if name not in specs]
    if stray:
        raise TypeError(f"{constants.get('__file__')}: constants {stray} are not known hyperparameters "
                        f"(known: {', '.join(specs)})")
    return with_flags(main, [(name, annotation, constants[name], help)
                             for name, (annotation, _, help) in specs.items() if name in constants])


def finetune_command(method: Literal["lora", "full"], constants: dict) -> Callable:
    """The `main` of finetune/<method>.py, for `run_cli`: the run's paths plus one flag per constant."""

    def main(*, checkpoint_dir: Path, data_dir: Path, out_dir: Optional[Path] = None, resume: Optional[str] = None,
             **hyperparameters: Any) -> dict:
        # the script's constants, overridden by the flags; hyperparameters.yaml records them by these names
        values = {**{name: constants[name] for name in hyperparameter_specs() if name in constants}, **hyperparameters}
        train, lora = typed_hyperparameters(values, method)
        return finetune(method, checkpoint_dir, data_dir, out_dir, train, lora, resume, hyperparameters=values)

    main.__doc__ = f"""{METHOD_DESCRIPTIONS[method]}

    Args:
        checkpoint_dir: the base model (lit_config.json, lit_model.pth, tokenizer files)
        data_dir: prepared data (train.pt, test.pt, manifest.json) for this checkpoint's tokenizer
        out_dir: where weights, checkpoints and logs go (default: out/{method}/<data name>)
        resume: continue an interrupted run: "auto" (the newest checkpoint in out_dir) or a checkpoint path
    """
    return script_cli(main, constants)



def preference_command(constants: dict) -> Callable:
    """The `main` of finetune/dpo.py, for `run_cli`: the run's paths plus one flag per constant (the loop's, the
    LoRA ones and PreferenceArgs')."""

    def main(*, checkpoint_dir: Path, data_dir: Path, out_dir: Optional[Path] = None, resume: Optional[str] = None,
             **hyperparameters: Any) -> dict:
        values = {**{name: constants[name] for name in hyperparameter_specs(preference=True) if name in constants},
                  **hyperparameters}
        preference, train, lora = typed_preference_hyperparameters(values)
        return finetune(preference.method, checkpoint_dir, data_dir, out_dir, train, lora, resume,
                        hyperparameters=values, objective=PreferenceObjective(preference, lora=lora is not None))

    main.__doc__ = """Preference tuning (DPO, IPO, SimPO, ORPO) of a checkpoint on prepared preference pairs.

    Args:
        checkpoint_dir: the base model (lit_config.json, lit_model.pth, tokenizer files), also the reference model
        data_dir: pairs prepared by scripts/prepare_preferences.py for this checkpoint's tokenizer
        out_dir: where weights, checkpoints and logs go (default: out/dpo/<data name>)
        resume: continue an interrupted run: "auto" (the newest checkpoint in out_dir) or a checkpoint path
    """
    return script_cli(main, constants, preference=True)
