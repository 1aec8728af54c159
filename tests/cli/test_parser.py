"""Tests for lit_gpt/cli/parser.py through run_cli (every script's entry point): a secret flag's value never shows
in --print_config, --help or an error; a --config file's error names the file."""

from typing import Optional

from lit_gpt.utils import UserError, run_cli

TOKEN = "hf_SecretValueForTheCliTests0123"


def main(folder: str = "x", access_token: Optional[str] = None, private: bool = False) -> tuple:
    return folder, access_token, private


def run(capsys, fn, *args) -> tuple[int, str]:
    """(exit code, stdout + stderr) of run_cli(fn) with the given command line."""
    code = 0
    try:
        run_cli(fn, args=[str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_token_reaches_the_function():
    assert run_cli(main, args=["--access_token", TOKEN]) == ("x", TOKEN, False)


def test_print_config_masks_the_token_and_its_output_is_refused_as_a_token(capsys, tmp_path):
    code, out = run(capsys, main, "--access_token", TOKEN, "--print_config")
    assert code == 0 and TOKEN not in out and "access_token: '***'" in out and "folder: x" in out
    saved = tmp_path / "cfg.yaml"  # `--print_config > cfg.yaml`
    saved.write_text(out)
    code, out = run(capsys, main, "--config", saved)
    assert code == 2 and "--access_token is ***, the mask --print_config writes" in out
    with_token = tmp_path / "with_token.yaml"  # a config file of the user's own that holds the token
    with_token.write_text(f"access_token: {TOKEN}\n")
    code, out = run(capsys, main, "--config", with_token, "--print_config")
    assert code == 0 and TOKEN not in out and "'***'" in out
    assert run_cli(main, args=["--config", str(with_token)]) == ("x", TOKEN, False)


def test_help_never_shows_a_token(capsys):
    def edited(access_token: Optional[str] = TOKEN) -> None:  # a default edited into a script's constants
        """Args:
            access_token: the token
        """

    code, out = run(capsys, edited, "--access_token", TOKEN, "--help")
    assert code == 0 and "--access_token" in out and TOKEN not in out and "default: ***" in out


def test_errors_never_show_a_token(capsys, tmp_path):
    code, out = run(capsys, main, "--acces_token", TOKEN)  # misspelt: jsonargparse repeats what it did not know
    assert code == 2 and "unrecognized arguments: --acces_token ***" in out and TOKEN not in out
    config = tmp_path / "bad.yaml"
    config.write_text(f"access_token: {TOKEN}\nprivate: maybe\n")
    code, out = run(capsys, main, "--access_token", TOKEN, "--config", config)
    assert code == 2 and "private" in out and TOKEN not in out

    def leaks(access_token: str = "") -> None:
        raise UserError(f"the Hub said: token {access_token} refused, also hf_{'a' * 34}")

    code, out = run(capsys, leaks, f"--access_token={TOKEN}")
    assert code == 1 and out == "error: the Hub said: token *** refused, also ***\n"


def test_a_bad_config_file_is_named(capsys, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("folder: x\nprivate: [true\n")
    code, out = run(capsys, main, "--config", config)
    error = out.strip().splitlines()[-1]
    assert code == 2 and error.startswith(f"error: --config {config}: cannot be parsed")
    assert f'in "{config}", line 3, column 1' in error and "<unicode string>" not in error
