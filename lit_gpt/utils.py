"""Small shared helpers: user-facing errors, atomic writes, safe checkpoint loading, the scripts' CLI entry point."""

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from jsonargparse import CLI


class UserError(Exception):
    """A mistake the user can fix (bad path, bad file, wrong flag). Scripts print its message as one line and exit 1."""


def log(message: str) -> None:
    """A progress or status line for the person at the terminal (stderr: stdout stays the command's result)."""
    print(message, file=sys.stderr, flush=True)


def run_cli(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Entry point of every script: jsonargparse CLI over `fn`; a UserError becomes one line on stderr and exit 1.
    Process-wide settings belong here, not in library calls: TF32 matmuls for float32 on CUDA (as Lit-GPT does)."""
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    try:
        return CLI(fn, *args, **kwargs)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


@contextlib.contextmanager
def atomic_path(path: "str | Path") -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it over `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes the file 0600; give the result the usual permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
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


def check_writable_dir(path: "str | Path") -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UserError(f"{path}: cannot write here ({e.strerror}); choose another --out_dir") from None
    return path


def load_state_dict(path: "str | Path", mmap: bool = True) -> dict:
    """torch.load with weights_only=True, memory-mapped so a 7B model does not need its size in RAM twice."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises RuntimeError/EOFError/UnpicklingError/zipfile errors for damaged files
        raise UserError(f"{path}: cannot read weights ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        "the file is truncated or corrupt, convert or download it again") from None


def num_parameters(module: torch.nn.Module, requires_grad: "bool | None" = None) -> int:
    return sum(p.numel() for p in module.parameters() if requires_grad is None or p.requires_grad == requires_grad)


def space_separated_lists(argv: list, flags: "tuple[str, ...] | list[str]") -> list:
    """`--inputs a b --weights 1 0.5` -> `--inputs ["a", "b"] --weights [1, 0.5]` for the given list-valued flags,
    so they can be written shell-style (jsonargparse reads one value per flag). A value already in brackets stays."""
    import json

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
