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
recipe's `settings` add their own. A placeholder is a plain name: no format spec, attribute or index.

A recipe is data, not a program: its build steps run only the dataset tools of RECIPE_TOOLS, with the flags those
tools show in --help (not --config, which reads another file), and each writes only under the data root (its output
flag is required and checked, symlinks resolved). No tool of RECIPE_TOOLS runs a recipe or starts a program, so a
recipe cannot run anything else, itself included. Where the comparison writes is the command line's --out_dir. This
module reads, fills and checks recipes; the script runs the steps.
"""

import fnmatch
import shlex
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from lit_gpt.cli.secrets import redact, secret_values
from lit_gpt.utils import UserError

RECIPE_KEYS = ("question", "settings", "build", "compare", "gpu_settings")
# the scripts of scripts/ a build step may run (a file name pattern) -> the flag naming what the step writes
RECIPE_TOOLS = {"prepare_*.py": "--destination_path", "score_dataset.py": "--output",
                "filter_dataset.py": "--output", "mix_datasets.py": "--destination_path"}
PARSER_FLAGS = ("--config", "--print_config", "--help", "-h")  # jsonargparse's own: not for a recipe


@dataclass
class BuildStep:
    """One command of a recipe's build: a script of scripts/ and its arguments, placeholders filled in."""
    script: str  # e.g. "mix_datasets.py"
    args: list[str]

    def command(self) -> str:
        """The step as a command line, each secret (`--access_token hf_...`) shown as SECRET_MASK: the log and the
        study report show this."""
        return redact("python scripts/" + " ".join([self.script] + [shlex.quote(a) for a in self.args]), self.secrets())

    def secrets(self) -> list[str]:
        """The values the step gives its secret flags (--access_token, ...): never printed or stored."""
        return secret_values(self.args, environ={})

    def flag_values(self, flag: str) -> list[str]:
        """Every value given to `flag` (`--flag value` or `--flag=value`)."""
        values = [self.args[i + 1] for i, a in enumerate(self.args[:-1]) if a == flag]
        return values + [a.split("=", 1)[1] for a in self.args if a.startswith(flag + "=")]

    def check_flags(self, accepted: "set[str]", where: str) -> None:
        """Refuses a flag that is not one of the tool's own (`accepted`: its parser's option strings), jsonargparse's
        --config or --help, and an abbreviation (argparse would take `--dest` for `--destination_path`)."""
        for arg in self.args:
            name = arg.split("=", 1)[0]
            if name in PARSER_FLAGS or (name.startswith("--") and name not in accepted):
                own = ", ".join(sorted(f for f in accepted if f.startswith("--") and f not in PARSER_FLAGS))
                raise UserError(f"{where}: {name} is not a flag a recipe may give {self.script} (its flags: {own})")

    def check_output(self, data_root: "str | Path", where: str) -> None:
        """The step must name what it writes, and that must lie under the data root (symlinks resolved)."""
        flag = recipe_tool(self.script)
        outputs = self.flag_values(flag)
        if not outputs:
            raise UserError(f"{where}: give {self.script} its {flag} under {{data}}: a recipe writes only there")
        root = Path(data_root).resolve()
        for output in outputs:
            if not Path(output).resolve().is_relative_to(root):
                raise UserError(f"{where}: {flag} {output} lies outside the data root {data_root}; a recipe writes "
                                "only under {data}")


def recorded_settings(values: dict[str, Any], steps: list[BuildStep]) -> dict[str, Any]:
    """The placeholder values as a study report records them: a secret a step was given (through a setting such as
    `--access_token {token}`) masked."""
    secrets = [secret for step in steps for secret in step.secrets()]
    return {k: redact(v, secrets) if isinstance(v, str) else v for k, v in values.items()}


def recipe_tool(script: str) -> "str | None":
    """The output flag of a tool recipes may run (named alone: a path could lead out of scripts/), else None."""
    if "/" in script or "\\" in script:
        return None
    return next((flag for pattern, flag in RECIPE_TOOLS.items() if fnmatch.fnmatchcase(script, pattern)), None)


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
        """The build steps, filled in, each a tool of RECIPE_TOOLS writing under values["data"] (the data root)."""
        steps = []
        tools = ", ".join(RECIPE_TOOLS)
        for i, line in enumerate(self.build):
            where = f"{self.path}: build step {i + 1}"
            words = shlex.split(fill(line, values, where))
            if not words or recipe_tool(words[0]) is None:
                raise UserError(f"{where} {line!r} must start with a script of scripts/ that recipes run: {tools} "
                                "(named alone, e.g. mix_datasets.py)")
            step = BuildStep(words[0], words[1:])
            step.check_output(values["data"], where)
            steps.append(step)
        return steps

    def compare_flags(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: fill_value(v, values, f"{self.path}: compare.{k}") for k, v in self.compare.items()}


def fill(text: str, values: dict[str, Any], where: str) -> str:
    """`text` with its {placeholders} replaced; an unknown one is a one-line error naming it, and so is anything but a
    plain name (`{data:>10}`, `{data!r}`, `{data.__class__}`, `{0}`, `{}`): str.format would read attributes."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(text)
                  if name is not None]
    except ValueError as e:  # an unmatched { or }
        raise UserError(f"{where}: {e} in {text!r}; write a literal brace as {{{{ or }}}}") from None
    for name, spec, conversion in fields:
        if not name.isidentifier() or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise UserError(f"{where}: placeholder {shown} is not a plain name; write e.g. {{data}} (no format spec, "
                            "conversion, attribute or index)")
    names = [name for name, _, _ in fields]
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
    if "out_dir" in compare or "out_dir" in ((data.get("gpu_settings") or {}).get("compare") or {}):
        raise UserError(f"{path}: compare.out_dir: a recipe does not choose where results are written; pass --out_dir "
                        "on the command line (default: out/studies/<recipe>/<model>)")
    gpu = data.get("gpu_settings") or {}
    if not isinstance(gpu, dict) or set(gpu) - {"settings", "compare"} or \
            not all(isinstance(v, dict) for v in gpu.values()):
        raise UserError(f"{path}: `gpu_settings` must be a mapping with `settings` and/or `compare` mappings")
    unknown = sorted(set(gpu.get("settings", {})) - set(settings))
    if unknown:
        raise UserError(f"{path}: gpu_settings.settings {unknown} are not in `settings`")
    return StudyRecipe(path, data["question"], settings, build, compare, gpu)
