"""Study recipes: one YAML file per question, run by `scripts/compare_datasets.py --recipe FILE`.

A recipe says which data variants to build with the project's own tools (prepare_*, score, filter, mix) and how to
compare them (the flags of compare_datasets.py). Every number in a recipe that sets a size is a `{placeholder}`
with a default in its `settings`, so the same recipe runs at the documented 2-core CPU size, scaled up on a GPU
(`--settings '{"rows": 1000}' --max_iters 300 ...`) or shrunk to a tiny test:

    question: Does quality beat quantity?
    settings: {rows: 1000}
    build:                      # scripts/ commands, run in order, in-process
      - prepare_lima.py --checkpoint_dir {checkpoint_dir} --data_path {shared}/datasets/lima/train.jsonl ...
      - mix_datasets.py --inputs {data}/alpaca_9k --counts {rows} --destination_path {data}/alpaca_1k
    compare:                    # compare_datasets.py's flags; the command line overrides each one
      data_dirs: ["{data}/alpaca_1k", "{data}/lima"]
      max_iters: 12

A recipe's sizes are those of a 2-core CPU; its `gpu_settings` (optional) hold the full size, applied by
`--gpu_settings true`: `settings` (new placeholder values) and `compare` (flags, each replacing the recipe's):

    gpu_settings:
      settings: {rows: 1000, max_seq_length: 2048}
      compare: {ifeval_prompts: -1, max_iters: 300}

Placeholders every recipe has: {checkpoint_dir}, {data} (--data_root: where the variants are built), {shared}
(--shared_dir: the shared real data), {max_seq_length}, {scorer_checkpoint_dir} (a small LM for IFD scores); the
recipe's `settings` add their own. This module reads and fills recipes; the script runs the steps.
"""

import shlex
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from lit_gpt.utils import UserError

RECIPE_KEYS = ("question", "settings", "build", "compare", "gpu_settings")


@dataclass
class BuildStep:
    """One command of a recipe's build: a script of scripts/ and its arguments, placeholders filled in."""
    script: str  # e.g. "mix_datasets.py"
    args: list[str]

    def command(self) -> str:
        return "python scripts/" + " ".join([self.script] + [shlex.quote(a) for a in self.args])


@dataclass
class StudyRecipe:
    path: Path
    question: str
    settings: dict[str, Any] = field(default_factory=dict)  # placeholder -> default value
    build: list[str] = field(default_factory=list)  # command lines, with placeholders
    compare: dict[str, Any] = field(default_factory=dict)  # compare_datasets.py flag -> value, with placeholders
    gpu_settings: dict[str, dict] = field(default_factory=dict)  # the full size: {"settings": {..}, "compare": {..}}

    def for_gpu(self) -> "StudyRecipe":
        """The recipe at its full (GPU) size: gpu_settings' values over its settings and compare flags."""
        return replace(self, settings={**self.settings, **self.gpu_settings.get("settings", {})},
                       compare={**self.compare, **self.gpu_settings.get("compare", {})})

    def values(self, fixed: dict[str, Any], overrides: "dict[str, Any] | None" = None) -> dict[str, Any]:
        """The placeholder values: the recipe's settings, then --settings, then the fixed ones (paths and model)."""
        overrides = overrides or {}
        unknown = sorted(set(overrides) - set(self.settings))
        if unknown:
            known = ", ".join(sorted(self.settings)) or "none"
            raise UserError(f"--settings {unknown}: not settings of {self.path} (it has: {known})")
        return {**self.settings, **overrides, **fixed}

    def steps(self, values: dict[str, Any]) -> list[BuildStep]:
        steps = []
        for i, line in enumerate(self.build):
            words = shlex.split(fill(line, values, f"{self.path}: build step {i + 1}"))
            if not words or not words[0].endswith(".py"):
                raise UserError(f"{self.path}: build step {i + 1} {line!r} must start with a script of scripts/, "
                                "e.g. mix_datasets.py")
            steps.append(BuildStep(Path(words[0]).name, words[1:]))
        return steps

    def compare_flags(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: fill_value(v, values, f"{self.path}: compare.{k}") for k, v in self.compare.items()}


def fill(text: str, values: dict[str, Any], where: str) -> str:
    """`text` with its {placeholders} replaced; an unknown one is a one-line error naming it."""
    names = [name for _, name, _, _ in string.Formatter().parse(text) if name]
    missing = sorted({n for n in names if n not in values})
    if missing:
        raise UserError(f"{where}: unknown placeholder(s) {', '.join('{' + n + '}' for n in missing)}; known: "
                        + ", ".join("{" + k + "}" for k in sorted(values)))
    return text.format_map(values)


def fill_value(value: Any, values: dict[str, Any], where: str) -> Any:
    """Placeholders filled in strings, lists and dicts; a string that is one placeholder keeps the value's type."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("{") and stripped.endswith("}") and stripped[1:-1] in values:
            return values[stripped[1:-1]]
        return fill(value, values, where)
    if isinstance(value, list):
        return [fill_value(v, values, where) for v in value]
    if isinstance(value, dict):
        return {k: fill_value(v, values, f"{where}.{k}") for k, v in value.items()}
    return value


def load_recipe(path: "str | Path") -> StudyRecipe:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--recipe {path}: no such file (the project's recipes are in scripts/studies/)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe is a mapping with the keys {', '.join(RECIPE_KEYS)}")
    unknown = sorted(set(data) - set(RECIPE_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key(s) {unknown}; a recipe has {', '.join(RECIPE_KEYS)}")
    if not isinstance(data.get("question"), str):
        raise UserError(f"{path}: `question` (the question the study answers, one sentence) is required")
    build, compare, settings = data.get("build") or [], data.get("compare") or {}, data.get("settings") or {}
    if not (isinstance(build, list) and all(isinstance(b, str) for b in build)):
        raise UserError(f"{path}: `build` must be a list of command lines (one string per step)")
    if not isinstance(compare, dict) or not isinstance(settings, dict):
        raise UserError(f"{path}: `compare` and `settings` must be mappings")
    gpu = data.get("gpu_settings") or {}
    if not isinstance(gpu, dict) or set(gpu) - {"settings", "compare"} or \
            not all(isinstance(v, dict) for v in gpu.values()):
        raise UserError(f"{path}: `gpu_settings` must be a mapping with `settings` and/or `compare` mappings")
    unknown = sorted(set(gpu.get("settings", {})) - set(settings))
    if unknown:
        raise UserError(f"{path}: gpu_settings.settings {unknown} are not in `settings`")
    return StudyRecipe(path, data["question"], settings, build, compare, gpu)
