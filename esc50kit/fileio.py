"""Atomic file writes: a temporary file beside the target, then ``os.replace``.

An interrupted run leaves either the old file or the new one, never half of one. Every
module that writes an output goes through :func:`atomic_path`.
"""
from __future__ import annotations

import contextlib
import json
import os
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
