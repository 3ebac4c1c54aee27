"""Find the dataset a notebook should read when its ``data_dir`` is left empty.

``make run`` and ``download_data.py`` leave a verified dataset (``.verified.json``) under
``data/``. With ``data_dir = ""`` a notebook takes ``ESC50KIT_DATA`` (``make lab DATA=...``
sets it), else the one verified dataset under ``data/`` of the working directory, its parent
or the project; none or several is an error naming the folders and the fix, never a guess.

    data_dir = find_data_dir(data_dir)   # "" -> Path(".../data/ESC-10")
"""
from __future__ import annotations

import os
from pathlib import Path

from .data import MARKER_NAME, META_RELPATH, DatasetError

ENV_VAR = "ESC50KIT_DATA"
_PROJECT = Path(__file__).resolve().parents[1]


def search_folders(cwd: Path | None = None) -> list[Path]:
    """The ``data/`` folders looked in, nearest first, without repeats."""
    cwd = Path.cwd() if cwd is None else Path(cwd)
    folders = (cwd / "data", cwd.parent / "data", _PROJECT / "data")
    return list(dict.fromkeys(f.resolve() for f in folders))


def verified_datasets(folder: Path) -> list[Path]:
    """Dataset roots directly inside ``folder`` that ``download_data.py`` verified."""
    roots = folder.iterdir() if folder.is_dir() else ()
    return sorted(p for p in roots if (p / MARKER_NAME).is_file() and (p / META_RELPATH).is_file())


def _contents(folder: Path) -> str:
    if not folder.is_dir():
        return "does not exist"
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if not names:
        return "is empty"
    return f"holds {', '.join(names[:6])}{', ...' if len(names) > 6 else ''} (no verified dataset)"


def find_data_dir(data_dir: str | Path = "", *, cwd: Path | None = None,
                  environ: dict | None = None) -> Path:
    """The dataset root to read: ``data_dir`` itself when given, else the one found.

    Args:
        cwd: where relative ``data/`` folders are looked for (default: the working
            directory, which is the notebook's folder in Jupyter).
        environ: read for ``ESC50KIT_DATA`` (default: ``os.environ``).

    Returns:
        Path: the dataset root (as given, or an absolute path when found).

    Raises:
        DatasetError: a given or ``ESC50KIT_DATA`` folder has no ``meta/esc50.csv``, or none
            or several verified datasets were found (named, with the folders and the fix).
    """
    env_root = (os.environ if environ is None else environ).get(ENV_VAR)
    fix = ('run `make run DATA=path/to/ESC-50-master` (or `python download_data.py`) to '
           'prepare one, or set data_dir = "path/to/ESC-50-master" in the parameters cell')
    if str(data_dir):
        root = Path(data_dir).expanduser()
        if not (root / META_RELPATH).is_file():
            found = [str(p) for f in search_folders(cwd) for p in verified_datasets(f)]
            hint = (f"Verified datasets here: {', '.join(found)}; set data_dir to one of them, "
                    'or to "" to pick the only one.' if found
                    else f"No verified dataset found either: {fix}.")
            raise DatasetError(
                f"data_dir = {str(data_dir)!r}: {root / META_RELPATH} not found. {hint}")
        return root
    if env_root:
        root = Path(env_root).expanduser()
        if not (root / META_RELPATH).is_file():
            raise DatasetError(
                f'data_dir = "": the environment variable {ENV_VAR} names {root}, which has no '
                f"{META_RELPATH}. Unset it, or restart with `make lab DATA=path/to/ESC-50-master`.")
        return root.resolve()
    folders = search_folders(cwd)
    found = [p for f in folders for p in verified_datasets(f)]
    if len(found) == 1:
        return found[0]
    if not found:
        looked = "; ".join(f"{f} {_contents(f)}" for f in folders)
        raise DatasetError(f'data_dir = "": no dataset prepared by download_data.py was found '
                           f"(looked in: {looked}). To fix it, {fix}.")
    raise DatasetError(
        f'data_dir = "": {len(found)} verified datasets were found ({", ".join(map(str, found))}) '
        f'and none is chosen. Set data_dir = "{found[0]}" (or another) in the parameters cell, '
        f"or start JupyterLab with `make lab DATA={found[0]}`.")
