"""Feature packs: a dataset's features and metadata in one file, to train where its audio is not.

The feature cache is keyed by the audio files, so it cannot move without them; a pack can.
One ``.npz`` (laid out by :func:`esc50kit.cache.write_npz`) holds the metadata table (the
official columns), the float16 features of every clip row-aligned with it, the feature
configuration and the library versions. ESC-10 at the ``full`` profile's (128, 216) per
clip is about 22 MB, small enough to travel to a GPU machine that cannot see the audio::

    python -m esc50kit pack --data ../shared/data/ESC-10 --profile full --out packs/esc10-full.npz
    python benchmarks/train_cv.py --data packs/esc10-full.npz --profile full

:func:`esc50kit.experiment.run_experiment` takes a pack wherever it takes a dataset folder;
a profile whose features differ from the pack's is refused, and profiles with waveform
variants need the audio.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import library_versions, load_or_compute, read_npz, write_npz
from .data import DatasetError, ESC50_COLUMNS, add_labels, load_metadata, select_subset, validate_table
from .features import FeatureConfig

PACK_SUFFIX = ".npz"
PACK_VERSION = 1


def is_pack(path: str | Path) -> bool:
    """True when ``path`` is a file named ``*.npz`` (a dataset root is a folder)."""
    path = Path(path).expanduser()
    return path.suffix == PACK_SUFFIX and path.is_file()


def load_table(data: str | Path, *, subset: str = "all") -> pd.DataFrame:
    """The metadata table of a dataset folder or of a pack (see :func:`read_pack`)."""
    return read_pack(data, subset=subset)[0] if is_pack(data) else load_metadata(data, subset=subset)


def write_pack(data_dir: str | Path, out: str | Path, *, features: FeatureConfig,
               subset: str = "all", cache_dir: str | Path | None = "artifacts/features",
               progress: bool = True) -> Path:
    """Compute (or read from the cache) the features of a dataset and write them, atomically,
    as the pack ``out`` (``*.npz``), which it returns.

    Args:
        data_dir: dataset root (``meta/esc50.csv`` and ``audio/``).
        subset: ``"all"``, ``"esc10"`` or ``"esc50"``.
        cache_dir: the feature cache to read and fill (None: compute without caching).
    """
    out = Path(out)
    if out.suffix != PACK_SUFFIX:
        raise ValueError(f"pack {out}: name it *{PACK_SUFFIX}")
    df = load_metadata(data_dir, subset=subset)
    X = load_or_compute(df, features, cache_dir=cache_dir, progress=progress).X  # (N, bins, frames)
    table = df[list(ESC50_COLUMNS)].to_json(orient="records")
    header = {"version": PACK_VERSION, "features": features.to_dict(),
              "libraries": library_versions(features), "source": Path(data_dir).name,
              "subset": subset}
    write_npz(out, header, X=X.astype(np.float16), table=np.array(table))
    return out


def read_pack(path: str | Path, *,
              subset: str = "all") -> tuple[pd.DataFrame, np.ndarray, FeatureConfig]:
    """Read a pack written by :func:`write_pack`.

    Args:
        subset: ``"all"``, ``"esc10"`` or ``"esc50"``, applied to the pack's rows.

    Returns:
        (df, X, features): the table (official columns plus ``label``, sorted by fold
        and file name like :func:`esc50kit.data.load_metadata`), the features
        ``X`` float16 of shape (N, n_bins, frames) (log-mel, MFCC) or (N, samples)
        (waveform), row-aligned with it, and their configuration.

    Raises:
        DatasetError: the file is not a readable pack, or its parts disagree; the
            message names the file.
    """
    path = Path(path).expanduser()
    try:
        header, arrays = read_npz(path)
        X, table = arrays["X"], str(arrays["table"])
        df = pd.read_json(io.StringIO(table), orient="records", dtype={"src_file": str, "take": str})
    except Exception as exc:  # numpy, zipfile and pandas raise many types for a damaged file
        raise DatasetError(f"{path} is not a readable feature pack ({type(exc).__name__}: "
                           f"{str(exc)[:200]}); write it again with `python -m esc50kit pack`"
                           ) from exc
    if header.get("version") != PACK_VERSION:
        raise DatasetError(f"{path}: pack version {header.get('version')!r}, this esc50kit "
                           f"reads version {PACK_VERSION}; write it again with "
                           "`python -m esc50kit pack`")
    if X.ndim < 2 or len(X) != len(df):
        raise DatasetError(f"{path}: {len(df)} table rows but features of shape {X.shape}; "
                           "the pack is damaged, write it again")
    df[["src_file", "take"]] = df[["src_file", "take"]].astype(str)
    validate_table(df, source=str(path))
    df["row"] = np.arange(len(df))
    df = select_subset(df, subset, source=str(path))
    X = X[df.pop("row").to_numpy()]
    return add_labels(df), X, FeatureConfig.from_dict(header["features"])
