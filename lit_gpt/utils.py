"""Small shared helpers: user-facing errors, atomic writes, outputs kept apart from their inputs and locked while
written, safe checkpoint loading, the scripts' CLI entry point."""

import contextlib
import errno
import hashlib
import inspect
import json
import os
import platform
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
from jsonargparse import CLI

from lit_gpt.file_names import LOCK_FILE
from lit_gpt.cli.parser import ScriptParser
from lit_gpt.cli.secrets import redact, secret_values


class UserError(Exception):
    """A mistake the user can fix (bad path, bad file, wrong flag). Scripts print its message as one line and exit 1."""


def log(message: str) -> None:
    """A progress or status line for the person at the terminal (stderr: stdout stays the command's result)."""
    print(message, file=sys.stderr, flush=True)


def with_flags(main: Callable, flags: Iterable[tuple[str, Any, Any, str]]) -> Callable:
    """`main` plus keyword-only flags (name, annotation, default, help; inspect.Parameter.empty = required) for
    `run_cli`: jsonargparse reads the added parameters from the signature and their help from the docstring's
    Args section. `main` takes them as keyword arguments (its own **kwargs)."""
    signature = inspect.signature(main)
    params = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
    doc = (main.__doc__ or "").rstrip()
    if flags and "Args:" not in doc:
        doc += "\n\n    Args:"
    lines = [doc]
    for name, annotation, default, help in flags:
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
        lines.append(f"        {name}: {help}")

    def command(**kwargs: Any) -> Any:
        return main(**kwargs)

    command.__signature__ = signature.replace(parameters=params)
    command.__doc__ = "\n".join(lines) + "\n"
    command.__name__ = main.__name__
    return command


def run_cli(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Entry point of every script: jsonargparse CLI over `fn`; a UserError becomes one line on stderr and exit 1.
    Secrets (--access_token, $HF_TOKEN) are never shown: `ScriptParser` masks them in --print_config, --help and
    its errors, and an error line is redacted too.
    Process-wide settings belong here, not in library calls: TF32 matmuls for float32 on CUDA (as Lit-GPT does)."""
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    kwargs.setdefault("parser_class", ScriptParser)
    try:
        return CLI(fn, *args, **kwargs)
    except UserError as e:
        print(f"error: {redact(str(e), secret_values(kwargs.get('args') or sys.argv[1:]))}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


TEMP_SUFFIX = ".tmp"  # our temporary files: .<name>.<pid>.<random>.tmp beside the file they become
WRITE_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "not permitted"}


def write_error(path: "str | Path", error: BaseException, flag: str = "output location") -> Optional[UserError]:
    """The one-line error for a write that failed because of the file system (full, read-only, not permitted), or
    None for any other failure. torch and safetensors report a full disk in their own words (`PytorchStreamWriter
    failed writing file`, `basic_ios::clear: iostream error`, `IoError(Os { code: 28 ...`): for those the free space
    is checked."""
    code = error.errno if isinstance(error, OSError) else None
    if code is None:
        text = str(error)
        found = re.search(r"code: (\d+)", text)
        code = int(found.group(1)) if found else None
        if code is None and _no_space_left(Path(path)):  # torch says "iostream error", "unexpected pos", ...
            code = errno.ENOSPC
    if code not in WRITE_ERRORS:
        return None
    fix = "free space or choose" if code in (errno.ENOSPC, errno.EDQUOT) else "choose"
    return UserError(f"{WRITE_ERRORS[code]} writing {path}; {fix} another {flag}")


def _no_space_left(path: Path) -> bool:
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                stat = os.statvfs(folder)
            except OSError:
                return False
            return stat.f_bavail * stat.f_frsize < 1 << 20
    return False


def temp_path(path: "str | Path") -> Path:
    """A temporary name beside `path` in our pattern (.<name>.<pid>.<random>.tmp), for writers that create the file
    themselves (Fabric's save): if the process is killed, `remove_stale_temp_files` recognises it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def remove_stale_temp_files(directory: "str | Path") -> list[Path]:
    """Deletes our temporary files in `directory` whose writing process is gone (killed mid-write): they would
    otherwise stay forever, some as large as a model."""
    removed = []
    for tmp in Path(directory).glob(f".*{TEMP_SUFFIX}"):
        parts = tmp.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is None or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def atomic_path(path: "str | Path", flag: str = "output location") -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it over `path` only if the block finishes without error, so a
    reader never sees a half-written file and a failed write leaves the old file as it was. A full or read-only
    disk becomes one line naming the path (UserError)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a file; choose another {flag}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{path.parent}: is (or lies below) a file, not a directory; choose another {flag}") from None
    except OSError as e:
        raise (write_error(path, e, flag) or e) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes the file 0600; give the result the usual permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except Exception as e:
        problem = write_error(path, e, flag)
        if problem is not None:
            raise problem from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: "str | Path", text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: "str | Path", obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_torch_save(obj: Any, path: "str | Path") -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def copy_file(source: "str | Path", target: "str | Path") -> None:
    """Copies source to target atomically (a reader never sees half a file)."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def link_or_copy(source: "str | Path", target: "str | Path") -> None:
    """target becomes a hard link to source (same file system: no second copy of a large file), else a copy."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def check_writable_dir(path: "str | Path", flag: str = "--out_dir") -> Path:
    """The directory, created if needed, after checking that files can be written into it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file, not a directory; choose another {flag}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{path}: a parent of it is a file, not a directory; choose another {flag}") from None
    except OSError as e:
        raise (write_error(path, e, flag) or
               UserError(f"{path}: cannot write here ({e.strerror}); choose another {flag}")) from None
    remove_stale_temp_files(path)
    return path


def check_output(output: "str | Path", inputs: dict, flag: str, writes: Optional[Iterable[str]] = None) -> Path:
    """Refuses an output that is, contains, lies inside or links to one of the command's inputs (inputs: the input's
    flag -> a path, a list of paths, or None), in one line naming both flags: the output would overwrite the input,
    or mix with what it was made from. Symlinks are resolved on both sides. `writes`: the names a directory writer
    puts into its output (a prepared dataset's train.pt, test.pt, manifest.json); an input inside the output is then
    refused only where it is one of them (the download a prepare script keeps in its destination is not)."""
    target = Path(output).resolve()
    link = f" (a link to {target})" if Path(output).is_symlink() else ""
    for input_flag, paths in inputs.items():
        for path in [] if paths is None else paths if isinstance(paths, (list, tuple)) else [paths]:
            source = Path(path).resolve()
            written = [target / name for name in writes] if writes is not None else [target]
            if source == target:
                relation = "is the same path as"
            elif any(source == w or source.is_relative_to(w) for w in written):
                relation = "contains"
            elif target.is_relative_to(source):
                relation = "lies inside"
            else:
                continue
            raise UserError(f"{flag} {output}{link} {relation} {input_flag} {path}: an output is kept apart from the "
                            f"inputs it is made from (it would overwrite or mix with them); choose another {flag}")
    return Path(output)


def check_typed_on_command_line(flag: str, value: Any, default: Any, argv: Optional[list] = None) -> None:
    """A flag that names a program to run (an interpreter path) is taken only as typed on this command line, never
    from a --config file: a file (shared, downloaded, written by a study) could otherwise start any executable. The
    script's own default is allowed."""
    if value is None or value == default:
        return
    argv = sys.argv[1:] if argv is None else argv
    name = f"--{flag}"
    typed = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]
    typed += [arg.split("=", 1)[1] for arg in argv if arg.startswith(name + "=")]
    if not any(Path(str(t)) == Path(str(value)) for t in typed):
        raise UserError(f"{name} {value}: names a program to run, so it is taken from the command line only, not from "
                        f"a --config file; type {name} on the command line")


# ---- one writer per directory ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def output_lock(directory: "str | Path", flag: str = "--out_dir") -> Iterator[Path]:
    """Holds directory/.lit_gpt.lock (this process's PID and host, created with O_EXCL) while a command writes the
    directory, so that two runs into one directory are refused instead of interleaving their files (the weights of
    one, the settings of the other). The second is told the first one's PID. A lock whose process is gone (killed
    with -9) is taken over; the lock is removed on exit, also after an error; a directory that the lock created and
    the command left empty is removed too. A lock held on another host cannot be checked: it is refused."""
    directory = Path(directory)
    created = not directory.exists()
    check_writable_dir(directory, flag)
    path = directory / LOCK_FILE
    _take_lock(path, flag)
    try:
        yield directory
    finally:
        if _lock_holder(path) == _lock_text():
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if empty


def _lock_text() -> str:
    return f"{os.getpid()} {socket.gethostname()}\n"


def _lock_holder(path: Path) -> Optional[str]:
    """The lock's content; None when there is no lock. A lock just created may be empty for a moment: reread."""
    for _ in range(5):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        if text:
            return text
        time.sleep(0.05)
    return text


def _take_lock(path: Path, flag: str) -> None:
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is None:
                continue  # released meanwhile
            pid, _, host = holder.strip().partition(" ")
            if host == socket.gethostname() and not _process_alive(pid):
                if _lock_holder(path) == holder:  # stale (its process is gone): take it over
                    path.unlink(missing_ok=True)
                continue
            raise UserError(f"{path.parent}: another run is writing here (PID {pid or '?'} on {host or '?'}, lock "
                            f"file {path}); wait for it to finish or choose another {flag} (if no such run exists, "
                            "delete the lock file)")
        except OSError as e:
            raise (write_error(path, e, flag) or e) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_lock_text())
        except OSError as e:  # a full disk has room for the file, not for its text
            path.unlink(missing_ok=True)
            raise (write_error(path, e, flag) or e) from None
        return
    raise UserError(f"{path}: could not take the lock (other runs keep taking it); try again")


def _process_alive(pid: str) -> bool:
    """Whether the process is running (on this host). An unreadable PID counts as dead: the lock is damaged."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:  # a zombie (killed, not yet reaped by its parent) is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def load_state_dict(path: "str | Path", mmap: bool = True) -> dict:
    """torch.load with weights_only=True, memory-mapped so a 7B model does not need its size in RAM twice."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises RuntimeError/EOFError/UnpicklingError/zipfile errors for damaged files
        raise _unreadable_weights(path, e) from None


def _unreadable_weights(path: "str | Path", error: Exception) -> UserError:
    """The one line for a weights file torch.load(weights_only=True) refused. A file holding Python objects is named
    as such; PyTorch's own message would advise loading it with weights_only=False, which runs its code."""
    text = str(error)
    if text.startswith("Weights only load failed"):
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({found.group(1)})" if found else ""
        return UserError(f"{path}: refused: it holds Python objects{what}, not only tensors, and loading it could "
                         "run code; use weights converted or trained with this project's scripts")
    first_line = text.splitlines()[0] if text else ""
    return UserError(f"{path}: cannot read weights ({type(error).__name__}: {first_line}); the file is truncated or "
                     "corrupt, convert or download it again")


def file_sha256(path: "str | Path") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def num_parameters(module: torch.nn.Module, requires_grad: "bool | None" = None) -> int:
    return sum(p.numel() for p in module.parameters() if requires_grad is None or p.requires_grad == requires_grad)


def space_separated_lists(argv: list, flags: "tuple[str, ...] | list[str]") -> list:
    """`--inputs a b --weights 1 0.5` -> `--inputs ["a", "b"] --weights [1, 0.5]` for the given list-valued flags,
    so they can be written shell-style (jsonargparse reads one value per flag). A value already in brackets stays."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg[2:] if arg.startswith("--") else None
        if name in flags and i + 1 < len(argv) and not argv[i + 1].lstrip().startswith("["):
            values = []
            while i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                i += 1
                values.append(argv[i])
            items = []
            for value in values:
                try:
                    float(value)
                    items.append(value)
                except ValueError:
                    items.append(json.dumps(value))
            out += [arg, "[" + ", ".join(items) + "]"]
        else:
            out.append(arg)
        i += 1
    return out


def cpu_name() -> str:
    """The CPU's model name (for benchmark and study reports)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
