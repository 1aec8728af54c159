"""The argument parser behind every script (`lit_gpt.utils.run_cli`): jsonargparse's, with two differences.

- Secrets stay secret: the value of a secret flag (`lit_gpt.cli.secrets.is_secret_flag`: --access_token, ...) is
  shown as `***` by --print_config (so `--print_config > cfg.yaml` writes no token either), by --help (a default
  edited into a script) and in error messages (also a token given to a misspelt flag). A config file that holds
  the mask instead of the token is refused rather than sent to the Hub as a token.
- An error in a --config file names the file (jsonargparse names a position in "<unicode string>").
"""

import sys
from typing import Any, NoReturn, Optional

from jsonargparse import ArgumentParser, DefaultHelpFormatter, Namespace

from lit_gpt.cli.secrets import SECRET_MASK, is_secret_flag, redact, secret_values


class ScriptHelpFormatter(DefaultHelpFormatter):
    def _get_help_string(self, action) -> str:
        text = super()._get_help_string(action)
        if is_secret_flag(action.dest) and isinstance(action.default, str):
            text = text.replace("%(default)s", SECRET_MASK)
        return text


class ScriptParser(ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", ScriptHelpFormatter)
        super().__init__(*args, **kwargs)
        self._secrets: list[str] = secret_values(sys.argv[1:])
        self._config_file: Optional[str] = None

    def parse_args(self, args: Optional[list] = None, *rest: Any, **kwargs: Any) -> Namespace:
        self._secrets = secret_values(sys.argv[1:] if args is None else args)
        cfg = super().parse_args(args, *rest, **kwargs)
        for key in _secret_keys(cfg):
            if cfg[key] == SECRET_MASK:
                self.error(f"--{key} is {SECRET_MASK}, the mask --print_config writes in place of a secret; pass the "
                           "token itself (or set HF_TOKEN) instead")
        return cfg

    def dump(self, cfg: Namespace, *args: Any, **kwargs: Any) -> str:
        cfg = cfg.clone()
        for key in _secret_keys(cfg):
            cfg[key] = SECRET_MASK
        return super().dump(cfg, *args, **kwargs)

    def parse_path(self, path: Any, *args: Any, **kwargs: Any) -> Namespace:
        self._config_file = str(path)
        try:
            return super().parse_path(path, *args, **kwargs)
        finally:
            self._config_file = None

    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        if self._config_file is not None:
            where = f'in "{self._config_file}",'
            message = message.replace("Problems parsing config: ", "cannot be parsed: ")
            lines = [line.strip().replace('in "<unicode string>",', where) for line in message.splitlines()]
            message = f"--config {self._config_file}: " + "; ".join(line for line in lines if line)
        super().error(redact(message, self._secrets), ex)


def _secret_keys(cfg: Namespace) -> list[str]:
    """The keys of `cfg` (nested ones dotted) that are secret flags with a value."""
    return [key for key in cfg.keys() if is_secret_flag(key.rsplit(".", 1)[-1]) and isinstance(cfg[key], str)]
