"""Tests for lit_gpt/utils.py: UserError and run_cli, atomic writes, check_writable_dir, outputs kept apart from their
inputs (check_output), flags taken from the command line only, the output lock, load_state_dict, num_parameters and
space_separated_lists."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT, fill_disk
from lit_gpt.file_names import LOCK_FILE
from lit_gpt.utils import (UserError, atomic_path, atomic_torch_save, atomic_write_text, check_output,
                           check_typed_on_command_line, check_writable_dir, load_state_dict, num_parameters,
                           output_lock, remove_stale_temp_files, run_cli, space_separated_lists)


def leftovers(directory: Path) -> list:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.slow
def test_run_cli_user_error_is_one_line_on_stderr():
    # lit_gpt/utils.py is loaded by path so the child does not import the rest of the package (slow)
    script = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('u', 'lit_gpt/utils.py')\n"
        "u = importlib.util.module_from_spec(spec); spec.loader.exec_module(u)\n"
        "def main(name: str = 'x'):\n"
        "    raise u.UserError(f'{name}: file not found')\n"
        "u.run_cli(main)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, "--name", "data.json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "error: data.json: file not found\n")  # no traceback
    assert issubclass(UserError, Exception) and str(UserError("bad path")) == "bad path"


def test_run_cli_returns_result_and_parses_args():
    def main(x: int = 1, name: str = "a"):
        return (x, name)

    assert run_cli(main, args=["--x", "5", "--name", "b"]) == (5, "b")
    assert run_cli(main, args=[]) == (1, "a")

    def buggy():
        raise ValueError("a bug, not a user mistake")

    with pytest.raises(ValueError, match="a bug"):  # only UserError is turned into a one-line message
        run_cli(buggy, args=[])


@pytest.mark.parametrize("error, code, err", [(UserError("no such checkpoint"), 1, "error: no such checkpoint\n"),
                                             (KeyboardInterrupt(), 130, "interrupted\n")])
def test_run_cli_exit_codes_in_process(capsys, error, code, err):
    def main():
        raise error

    with pytest.raises(SystemExit) as exc:
        run_cli(main, args=[])
    assert exc.value.code == code
    assert capsys.readouterr().err == err


def test_atomic_path_success(tmp_path):
    target = tmp_path / "new" / "sub" / "out.bin"  # parents are created
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        assert tmp.name.startswith(".out.bin.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"payload")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"payload"
    assert not tmp.exists() and leftovers(target.parent) == []
    assert target.stat().st_mode & 0o644 == 0o644  # the usual permissions, not mkstemp's 0600


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("old", [b"original \x00\xff", None])
def test_atomic_path_failure_keeps_old_file(tmp_path, error, old):
    target = tmp_path / "out.bin"
    if old is not None:
        target.write_bytes(old)
    with pytest.raises(error):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise error()
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if old is None else ["out.bin"])  # no temp file
    assert old is None or target.read_bytes() == old


def test_atomic_write_text(tmp_path):
    target = tmp_path / "notes.txt"
    atomic_write_text(target, "first")
    atomic_write_text(str(target), "zweite Zeile ✓\n")  # str paths work; an existing file is replaced
    assert target.read_text(encoding="utf-8") == "zweite Zeile ✓\n"
    assert leftovers(tmp_path) == []


def test_atomic_torch_save_and_load_state_dict_round_trip(tmp_path):
    state = {"w": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "h": torch.ones(2, dtype=torch.bfloat16)}
    path = tmp_path / "lit_model.pth"
    atomic_torch_save(state, path)
    assert leftovers(tmp_path) == []
    for mmap in (True, False):
        loaded = load_state_dict(path, mmap=mmap)
        assert loaded.keys() == state.keys()
        for key in state:
            assert loaded[key].dtype == state[key].dtype and torch.equal(loaded[key], state[key])


def test_atomic_torch_save_failure_keeps_old_file(tmp_path):
    path = tmp_path / "lit_model.pth"
    atomic_torch_save({"w": torch.zeros(2)}, path)
    before = path.read_bytes()
    with pytest.raises(Exception):
        atomic_torch_save({"f": lambda: None}, path)  # a lambda cannot be pickled
    assert path.read_bytes() == before and leftovers(tmp_path) == []


def test_load_state_dict_errors(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_state_dict(tmp_path / "missing.pth")
    with pytest.raises(UserError, match="file not found"):
        load_state_dict(tmp_path)  # a directory is not a weights file
    text = tmp_path / "config.json"
    text.write_text('{"n_layer": 2}')
    with pytest.raises(UserError, match="cannot read weights .*truncated or corrupt"):
        load_state_dict(text)
    good = tmp_path / "good.pth"
    torch.save({"w": torch.randn(64, 64)}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match=str(truncated).replace("\\", "\\\\") + ": cannot read weights"):
        load_state_dict(truncated)


def test_load_state_dict_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "cls": Path, "run": print}, path)  # not allowed with weights_only
    with pytest.raises(UserError) as e:
        load_state_dict(path)
    message = str(e.value)
    assert message.startswith(f"{path}: refused: it holds Python objects (") and "could run code" in message
    assert "weights_only" not in message and "trust" not in message and "\n" not in message  # not torch's advice
    legacy = tmp_path / "legacy.pth"  # pre-zipfile format: readable without mmap
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_state_dict(legacy, mmap=False)["w"], torch.ones(2))


def test_check_writable_dir(tmp_path):
    new = tmp_path / "a" / "b" / "out"
    assert check_writable_dir(str(new)) == new and new.is_dir()
    assert check_writable_dir(new) == new  # an existing directory is fine
    assert list(new.iterdir()) == []  # the probe file is gone
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file, not a directory; choose another --out_dir"):
        check_writable_dir(a_file)
    with pytest.raises(UserError, match="a parent of it is a file"):
        check_writable_dir(a_file / "below")  # a file where a parent directory should be
    assert a_file.read_text() == "x"


def test_check_writable_dir_unwritable(tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):  # stands in for a read-only directory (chmod does not stop root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(UserError, match=r"permission denied writing .*out; choose another --out_dir"):
        check_writable_dir(tmp_path / "out")


def test_num_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2, bias=False))  # 15 + 6
    assert num_parameters(model) == 21
    assert num_parameters(model, requires_grad=True) == 21 and num_parameters(model, requires_grad=False) == 0
    model[0].weight.requires_grad_(False)
    assert num_parameters(model) == 21
    assert num_parameters(model, requires_grad=True) == 9
    assert num_parameters(model, requires_grad=False) == 12
    assert num_parameters(torch.nn.ReLU()) == 0


@pytest.mark.parametrize("argv, expected", [
    (["--inputs", "a.json", "b.json", "--weights", "1", "0.5"],
     ["--inputs", '["a.json", "b.json"]', "--weights", "[1, 0.5]"]),
    (["--inputs", "only.json"], ["--inputs", '["only.json"]']),
    (["--inputs", '["a", "b"]', "--out", "x"], ["--inputs", '["a", "b"]', "--out", "x"]),  # already a list
    (["--inputs", ' ["a"]'], ["--inputs", ' ["a"]']),
    (["--out", "x", "y"], ["--out", "x", "y"]),  # not a list-valued flag
    (["--weights", "-1", "2e-3", "--seed", "3"], ["--weights", "[-1, 2e-3]", "--seed", "3"]),
    (["--inputs", 'say "hi"'], ["--inputs", '["say \\"hi\\""]']),  # JSON-quoted
    (["--inputs"], ["--inputs"]),  # no value: left for the parser to complain about
    (["data", "--inputs", "a", "b"], ["data", "--inputs", '["a", "b"]']),
    ([], []),
])
def test_space_separated_lists(argv, expected):
    original = list(argv)
    assert space_separated_lists(argv, ("inputs", "weights")) == expected
    assert argv == original  # the input is not modified
    assert space_separated_lists(argv, []) == argv and space_separated_lists(argv, ["inputs", "weights"]) == expected


# ---- writing on a full or read-only disk, file/directory mistakes, stale temp files --------------------------
def test_a_full_disk_is_one_line_and_the_old_file_stays(small_disk):
    target = small_disk / "weights.pth"
    atomic_torch_save({"w": torch.ones(4)}, target)
    before = target.read_bytes()
    fill_disk(small_disk)
    with pytest.raises(UserError, match=f"no space left on device writing {target}; free space or choose another"):
        atomic_torch_save({"w": torch.ones(1 << 20)}, target)
    assert target.read_bytes() == before
    assert not list(small_disk.glob(".*.tmp"))


def test_the_lock_on_a_full_disk_is_one_line(small_disk):
    """The lock file gets an inode but no room for its text: one line, and no empty lock left behind."""
    (small_disk / "out").mkdir()
    fill_disk(small_disk)
    with pytest.raises(UserError, match=f"no space left on device writing {small_disk / 'out' / LOCK_FILE}; free "
                                        "space or choose another --destination_path"):
        with output_lock(small_disk / "out", "--destination_path"):
            pass
    assert not (small_disk / "out" / LOCK_FILE).exists()


def test_a_read_only_disk_is_one_line(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    try:
        with pytest.raises(UserError, match="read-only file system writing .*; choose another --out_dir"):
            check_writable_dir(mount / "out")
        with pytest.raises(UserError, match="read-only file system writing"):
            atomic_write_text(mount / "a.txt", "x")
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_file_versus_directory_mistakes(tmp_path):
    with pytest.raises(UserError, match="is a directory, expected a file"):
        atomic_write_text(tmp_path, "x")
    (tmp_path / "f").write_text("keep")
    with pytest.raises(UserError, match="is a file, not a directory"):
        check_writable_dir(tmp_path / "f")
    with pytest.raises(UserError, match="is \\(or lies below\\) a file"):
        atomic_write_text(tmp_path / "f" / "x.txt", "x")
    assert (tmp_path / "f").read_text() == "keep"


def test_temp_files_of_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    # a writer killed mid-write leaves .<name>.<pid>.<random>.tmp behind
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its pid is gone now
    stale = tmp_path / f".lit_model.pth.{proc.pid}.abcd.tmp"
    stale.write_bytes(b"\0" * 1000)
    mine = tmp_path / f".other.{os.getpid()}.efgh.tmp"  # a write in progress in this process: kept
    mine.write_bytes(b"x")
    atomic_write_text(tmp_path / "notes.txt", "hello")
    assert not stale.exists() and mine.exists()
    assert remove_stale_temp_files(tmp_path) == []


# ---- outputs apart from inputs ---------------------------------------------------------------------------------------
def test_check_output_refuses_an_output_that_is_contains_lies_inside_or_links_to_an_input(tmp_path):
    checkpoint, data = tmp_path / "ckpt", tmp_path / "data"
    checkpoint.mkdir()
    (checkpoint / "lit_model.pth").write_bytes(b"weights")
    (tmp_path / "link").symlink_to(checkpoint)
    inputs = {"--checkpoint_dir": checkpoint, "--data_dir": data, "--resume": None}
    for output, relation in ((checkpoint, "is the same path as --checkpoint_dir"),
                             (tmp_path, "contains --checkpoint_dir"),
                             (checkpoint / "run", "lies inside --checkpoint_dir"),
                             (data / "run", "lies inside --data_dir"),
                             (tmp_path / "link", f"(a link to {checkpoint}) is the same path as --checkpoint_dir"),
                             (tmp_path / "link" / "lit_model.pth", "lies inside --checkpoint_dir")):
        with pytest.raises(UserError, match=rf"^--out_dir {output} {re.escape(relation)} .*choose another --out_dir$"):
            check_output(output, inputs, "--out_dir")
    assert check_output(tmp_path / "out", inputs, "--out_dir") == tmp_path / "out"
    assert (checkpoint / "lit_model.pth").read_bytes() == b"weights"
    files = {"--data_path": [tmp_path / "a.json", tmp_path / "b.json"]}  # a list of inputs
    with pytest.raises(UserError, match="--output .*b.json is the same path as --data_path .*b.json"):
        check_output(tmp_path / "b.json", files, "--output")


def test_check_output_of_a_writer_that_names_its_files_refuses_only_those(tmp_path):
    """A prepare script downloads its source into the destination: that file is no output. train.pt would be."""
    destination = tmp_path / "data" / "alpaca"
    kept_download, written = destination / "alpaca_data_cleaned.json", destination / "train.pt"
    writes = ("train.pt", "test.pt", "manifest.json")
    check_output(destination, {"--data_path": kept_download}, "--destination_path", writes=writes)
    with pytest.raises(UserError, match="--destination_path .* contains --data_path .*train.pt"):
        check_output(destination, {"--data_path": written}, "--destination_path", writes=writes)
    with pytest.raises(UserError, match="contains --data_path"):  # without `writes`, any input inside is refused
        check_output(destination, {"--data_path": kept_download}, "--destination_path")


def test_a_program_path_is_taken_from_the_command_line_only(tmp_path):
    default = "/tmp/venv/bin/python"
    check_typed_on_command_line("litgpt_python", default, default, argv=[])  # the script's own default
    for argv in (["--litgpt_python", "/opt/py/bin/python"], ["--litgpt_python=/opt/py/bin/python"]):
        check_typed_on_command_line("litgpt_python", Path("/opt/py/bin/python"), default, argv=argv)
    with pytest.raises(UserError, match=r"^--litgpt_python /bin/sh: names a program to run, so it is taken from the "
                                        r"command line only, not from a --config file"):
        check_typed_on_command_line("litgpt_python", "/bin/sh", default, argv=["--config", "run.yaml"])


# ---- one writer per directory ----------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_with_the_first_ones_pid_and_the_lock_goes_at_exit(tmp_path):
    out = tmp_path / "run"
    with output_lock(out) as locked:
        assert locked == out and (out / LOCK_FILE).read_text().split()[0] == str(os.getpid())
        with pytest.raises(UserError, match=rf"^{out}: another run is writing here \(PID {os.getpid()} on .*; "
                                            "wait for it to finish or choose another --out_dir"):
            with output_lock(out):
                pass
        (out / "weights").write_text("w")
    assert not (out / LOCK_FILE).exists() and (out / "weights").exists()
    with pytest.raises(UserError, match="bad flag"):  # released after an error too; a folder it made and left
        with output_lock(tmp_path / "new", "--destination_path"):  # empty is removed
            raise UserError("bad flag")
    assert not (tmp_path / "new").exists()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "run"
    program = ("import sys, time; sys.path.insert(0, '.'); from lit_gpt.utils import output_lock\n"
               f"with output_lock({str(out)!r}):\n    print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(UserError, match=f"PID {holder.pid} on "):  # alive: refused
            with output_lock(out):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup, the lock stays
        holder.wait()
    assert (out / LOCK_FILE).read_text().split()[0] == str(holder.pid)
    with output_lock(out):  # its PID is gone: stale, taken over
        assert (out / LOCK_FILE).read_text().split()[0] == str(os.getpid())
    assert not (out / LOCK_FILE).exists()


def test_a_lock_held_on_another_host_is_refused(tmp_path):
    (tmp_path / LOCK_FILE).write_text("123 some-other-host\n")
    with pytest.raises(UserError, match="PID 123 on some-other-host"):
        with output_lock(tmp_path):
            pass
    assert (tmp_path / LOCK_FILE).read_text() == "123 some-other-host\n"  # not ours to remove
