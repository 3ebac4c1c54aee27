"""Atomic file writes: a temporary file beside the target, then ``os.replace``.

An interrupted run leaves either the old file or the new one, never half of one. Every
module that writes an output goes through :func:`atomic_path`.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The parent folder is created. On an exception the temporary file is removed and
    ``path`` is left as it was.

    Example::

        with atomic_path("out.csv") as tmp:
            df.to_csv(tmp, index=False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)  # mkstemp creates 0600; outputs are for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (non-JSON values via ``str``)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str))


def atomic_write_csv(df, path: str | Path) -> Path:
    """``df.to_csv(path, index=False)`` atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def _free_space(path: Path) -> str:
    """Free space on the disk holding ``path`` (its nearest existing folder), e.g. '12.0 MiB'."""
    for folder in (path, *path.parents):
        if folder.is_dir():
            try:
                return f"{shutil.disk_usage(folder).free / 2**20:,.1f} MiB"
            except OSError:
                break
    return "unknown"


def os_error_advice(exc: BaseException, path: str | Path | None = None) -> str:
    """What to do about a failed file operation, naming the path.

    Args:
        exc: the error (an OSError, or torch's RuntimeError for a failed write, which
            carries no errno and is taken for a full disk).
        path: the file or folder; default ``exc.filename``.
    """
    path = Path(path if path is not None else getattr(exc, "filename", None) or ".")
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or not isinstance(exc, OSError):
        return (f"The disk holding {path.parent} is full or the file too large "
                f"({_free_space(path.parent)} free): free space there, or choose another "
                "folder (--artifacts).")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{path} (or its folder) is not writable: make it writable, or choose "
                "another folder.")
    if code == errno.ENOTDIR:
        blocker = next((p for p in (path, *path.parents) if p.is_file()), None)
        what = f"{blocker} is a file" if blocker else f"part of {path} is a file"
        return f"{what}, not a folder: remove it, or choose another folder than {path}."
    if code == errno.EEXIST:
        kind = "a file" if path.is_file() else "a folder" if path.is_dir() else "there"
        return f"{path} already exists ({kind}): remove it, or choose another path."
    return {errno.EISDIR: f"{path} is a folder: give the path of a file.",
            errno.ENOENT: f"{path} does not exist: check the path."
            }.get(code, f"Check {path} and its folder.")


class WriteError(OSError):
    """A file could not be written; the message names it, the cause and what to do.

    ``errno`` is the cause's (None for torch's write failures, which carry none).
    """

    def __init__(self, path: str | Path, cause: BaseException, *, what: str = "file"):
        self.path = Path(path)
        reason = str(cause).strip() or type(cause).__name__
        self.message = (
            f"could not write the {what} {self.path}: {reason}. "
            f"{os_error_advice(cause, self.path)} It was left as it was (no partial file); "
            "run the same command again to resume."
        )
        super().__init__(self.message)
        self.errno = getattr(cause, "errno", None)
        self.filename = str(self.path)

    def __str__(self) -> str:
        return self.message
