"""Writing files so that nothing is ever half-written or private by accident.

A file is written under a hidden temporary name in its folder and renamed when complete:
a crash mid-write leaves the previous file (or none), never a truncated one. Temporary
files are created private (mode 0600); the finished file gets the mode a plain
``open(path, "w")`` would give under the current umask, so a shared results folder stays
readable to the team.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


def umask() -> int:
    """The process's umask (read without changing it for good)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    return 0o666 & ~umask()


def temporary_name(path: Path) -> str:
    """The prefix of ``path``'s temporary files: ``.NAME.``; sweep with ``remove_stale``."""
    return f".{path.name}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s contents to; renamed onto ``path`` on success,
    removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_name(path), suffix=TEMPORARY_SUFFIX)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, default_file_mode())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, with the umask's mode."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def output_problem(path: str | os.PathLike, folder: bool) -> str | None:
    """Why ``path`` cannot be written (as a folder when ``folder``, else as a file), or None.

    Checked before a command's work, so a bad output path costs a second, not the whole
    run: the path must not be the wrong kind of thing, and its nearest existing ancestor
    must be a folder this process can write in (missing folders below it are created)."""
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            return "is a file, not a folder"
        if not folder and path.is_dir():
            return "is a folder, not a file"
        writable = path if folder else path.parent
        return None if os.access(writable, os.W_OK) else f"cannot write in {writable} (permission denied)"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, so no folder can be made under it"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot write in {ancestor} (permission denied)"
    return None


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary files that a killed writer left in ``folder`` (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_file() and p.name.startswith(".") and p.name.endswith(TEMPORARY_SUFFIX)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
