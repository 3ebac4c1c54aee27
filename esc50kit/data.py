"""The ESC-50 dataset's constants, and reading and validating its metadata table.

A dataset root is laid out as the official ESC-50 download is::

    root/meta/esc50.csv   filename,fold,target,category,esc10,src_file,take
    root/audio/*.wav      one 5-second clip per row

Subsets laid out the same way (ESC-10, the tests' synthetic tree) load with the same code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# The official archive: the master branch of karolpiczak/ESC-50, about 600 MB.
URL = "https://github.com/karolpiczak/ESC-50/archive/refs/heads/master.zip"
EXTRACTED_DIRNAME = "ESC-50-master"  # the top folder of that archive
ARCHIVE_NAME = f"{EXTRACTED_DIRNAME}.zip"

# The layout of a dataset root.
ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
META_RELPATH = Path("meta") / "esc50.csv"
AUDIO_DIRNAME = "audio"
MARKER_NAME = ".verified.json"  # written by download_data.py after a full verification

# The contents of the full dataset.
OFFICIAL_FOLDS = (1, 2, 3, 4, 5)
ESC50_N_CLASSES = 50
ESC10_N_CLASSES = 10
CLIPS_PER_CLASS = 40
ESC50_N_CLIPS = 2000
ESC50_CLIPS_PER_FOLD = 400
SAMPLE_RATE = 44100
N_CHANNELS = 1
CLIP_FRAMES = 220500  # 5.0 s at 44.1 kHz
# The 50 categories in target order (target i is ESC50_CATEGORIES[i]), as in meta/esc50.csv.
ESC50_CATEGORIES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops",
    "wind", "pouring_water", "toilet_flush", "thunderstorm",
    "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps",
    "laughing", "brushing_teeth", "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening",
    "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking",
    "helicopter", "chainsaw", "siren", "car_horn", "engine",
    "train", "church_bells", "airplane", "fireworks", "hand_saw",
)
SUBSETS = ("all", "esc10", "esc50")


class DatasetError(ValueError):
    """The dataset tree or its metadata table is not a valid ESC-50-style dataset."""


def _integer_column(df: pd.DataFrame, col: str, csv_path: Path) -> pd.Series:
    """``df[col]`` as int64; integral floats such as ``3.0`` (a spreadsheet's) pass. Raises
    DatasetError naming the rows (line, filename, value) that do not hold a whole number."""
    if pd.api.types.is_integer_dtype(df[col]):
        return df[col].astype("int64")
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() | (values % 1 != 0)
    if bad.any():
        rows = [f"row {i + 1} ({df['filename'].iloc[i]}: {df[col].iloc[i]})"
                for i in np.flatnonzero(bad.to_numpy())[:3]]
        raise DatasetError(f"{csv_path}: column {col!r} must hold whole numbers; "
                           f"{int(bad.sum())} row(s) do not: {'; '.join(rows)}. "
                           "Fix those rows of the table.")
    return values.astype("int64")


def read_table(root: str | Path) -> pd.DataFrame:
    """Read ``meta/esc50.csv`` of a dataset root and check its columns.

    Returns:
        pd.DataFrame: the table as written, with the official columns typed.

    Raises:
        DatasetError: the file is missing, unreadable, lists no rows, lacks an official
            column, or holds a fold or target that is not a whole number (rows named).
    """
    csv_path = Path(root) / META_RELPATH
    if not csv_path.is_file():
        raise DatasetError(
            f"{csv_path} not found: a dataset root must hold meta/esc50.csv and audio/. "
            "Run `python download_data.py` or pass the folder that contains meta/ and audio/.")
    try:
        df = pd.read_csv(csv_path, dtype={"src_file": str, "take": str})
    except Exception as exc:  # pandas raises several types for broken CSVs
        raise DatasetError(f"{csv_path} could not be read as CSV: {exc}") from exc
    missing = [c for c in ESC50_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{csv_path} lacks the official column(s) {missing}; "
                           f"expected {list(ESC50_COLUMNS)}. Is this an ESC-50 metadata file?")
    if df.empty:
        raise DatasetError(f"{csv_path} holds a header but no rows: it lists no clips. Restore "
                           "the complete table (or run `python download_data.py --force` for "
                           "the official dataset).")
    for col in ("fold", "target"):
        df[col] = _integer_column(df, col, csv_path)
    if df["esc10"].dtype != bool:
        df["esc10"] = df["esc10"].astype(str).str.lower().map({"true": True, "false": False})
        if df["esc10"].isna().any():
            raise DatasetError(f"{csv_path}: column 'esc10' must hold True/False")
    return df


def validate_table(df: pd.DataFrame, *, source: str = "metadata") -> None:
    """Check the consistency rules of an ESC-50 table.

    Rules: folds are official (1-5); filenames are unique; every file name encodes the
    fold, ``src_file``, take and target of its row; each target has one category name.

    Raises:
        DatasetError: naming the first offending rows and what to do.
    """
    bad_folds = df.loc[~df["fold"].isin(OFFICIAL_FOLDS)]
    if len(bad_folds):
        folds = sorted(bad_folds["fold"].unique().tolist())
        raise DatasetError(f"{source}: unknown fold(s) {folds} in "
                           f"{bad_folds['filename'].head(3).tolist()}; ESC-50 folds are 1-5.")
    dups = df.loc[df["filename"].duplicated(keep=False), "filename"]
    if len(dups):
        raise DatasetError(f"{source}: duplicate file(s) {sorted(dups.unique().tolist())[:5]}; "
                           "each clip must be listed once.")
    mismatched = []
    for row in df.itertuples(index=False):
        try:  # {fold}-{src_file}-{take}-{target}.wav; ValueError unless four fields
            fold, src, take, target = Path(row.filename).stem.split("-")
            fold, target = int(fold), int(target)
        except ValueError:
            mismatched.append(f"{row.filename} (not named fold-src_file-take-target.wav)")
            continue
        if (fold, src, take, target) != (row.fold, str(row.src_file), str(row.take), row.target):
            mismatched.append(f"{row.filename} (row says fold={row.fold}, src_file={row.src_file}, "
                              f"take={row.take}, target={row.target})")
    if mismatched:
        raise DatasetError(f"{source}: labels disagree with file names for {len(mismatched)} "
                           f"row(s): {'; '.join(mismatched[:3])}. Fix the table or the file "
                           "names; they must agree.")
    names = df.groupby("target")["category"].nunique()
    if (names > 1).any():
        t = int(names[names > 1].index[0])
        raise DatasetError(f"{source}: target {t} has several category names "
                           f"{sorted(df.loc[df['target'] == t, 'category'].unique().tolist())}")


def load_metadata(root: str | Path, *, subset: str = "all",
                  check_audio: bool = True) -> pd.DataFrame:
    """Load, validate and optionally subset the metadata of a dataset root.

    Args:
        subset: ``"all"`` (every row), ``"esc10"`` (rows flagged esc10) or ``"esc50"``
            (every row, but the table must be the complete ESC-50).
        check_audio: raise if a listed WAV file is missing.

    Returns:
        pd.DataFrame: one row per clip, the official columns plus ``path`` (absolute
        path of the WAV) and ``label`` (0..K-1, the rank of ``target`` in this table).

    Raises:
        DatasetError: what :func:`read_table` and :func:`validate_table` refuse, missing
            audio, or an unknown subset.
    """
    root = Path(root).expanduser().resolve()
    df = read_table(root)
    validate_table(df, source=str(root / META_RELPATH))
    df = select_subset(df, subset, source=str(root))
    df["path"] = [str(root / AUDIO_DIRNAME / f) for f in df["filename"]]
    missing = [p for p in df["path"] if not Path(p).is_file()] if check_audio else []
    if missing:
        raise DatasetError(f"{root}: {len(missing)} listed audio file(s) are missing, e.g. "
                           f"{missing[:3]}. Re-run `python download_data.py --force` to fetch "
                           "the dataset again.")
    return add_labels(df)


def select_subset(df: pd.DataFrame, subset: str, *, source: str) -> pd.DataFrame:
    """The rows of ``subset`` (see :func:`load_metadata`), sorted by fold and file name.

    Raises:
        DatasetError: an unknown subset, no ESC-10 row, or ``esc50`` on a partial table.
    """
    if subset not in SUBSETS:
        raise DatasetError(f"unknown subset {subset!r}; choose one of {SUBSETS}")
    if subset == "esc10":
        df = df.loc[df["esc10"]]
        if df.empty:
            raise DatasetError(f"{source}: no row is flagged esc10=True")
    elif subset == "esc50" and df["target"].nunique() != ESC50_N_CLASSES:
        raise DatasetError(f"{source}: subset='esc50' asks for the full dataset, but the table has "
                           f"{df['target'].nunique()} classes; use subset='all' for a subset tree.")
    return df.sort_values(["fold", "filename"]).reset_index(drop=True)


def add_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``label``: the rank of ``target`` among the table's targets (0..K-1)."""
    df["label"] = pd.factorize(df["target"], sort=True)[0]
    return df


def class_names(df: pd.DataFrame) -> list[str]:
    """Category names ordered by ``label`` (index i names class i of a model's output)."""
    return df.drop_duplicates("label").sort_values("label")["category"].tolist()


@dataclass(frozen=True)
class DatasetSummary:
    """Counts of a dataset table and which dataset they match."""

    n_clips: int
    n_classes: int
    n_folds: int
    clips_per_class: dict[str, int]
    clips_per_fold: dict[int, int]
    kind: str

    def __str__(self) -> str:
        per_class, per_fold = self.clips_per_class.values(), self.clips_per_fold.values()
        return (f"{self.kind}: {self.n_clips} clips, {self.n_classes} classes, {self.n_folds} "
                f"folds ({min(per_class)}-{max(per_class)} clips per class, "
                f"{min(per_fold)}-{max(per_fold)} per fold)")


def summarize(df: pd.DataFrame) -> DatasetSummary:
    """Count clips per class and per fold and name the dataset they match.

    ``kind`` is ``"ESC-50"`` for the full dataset (2000 clips, 50 x 40, 5 x 400),
    ``"ESC-10"`` for its esc10 subset, ``"ESC-50 subset"`` for another balanced subset
    laid out the same way (40 clips per class, equal folds), else ``"custom"``.
    """
    per_class = df["category"].value_counts().sort_index().to_dict()
    per_fold = {int(k): int(v) for k, v in df["fold"].value_counts().sort_index().items()}
    n_classes = len(per_class)
    balanced = (set(per_class.values()) == {CLIPS_PER_CLASS} and len(set(per_fold.values())) == 1
                and len(per_fold) == len(OFFICIAL_FOLDS))
    kind = ("custom" if not balanced else "ESC-50" if n_classes == ESC50_N_CLASSES
            else "ESC-10" if n_classes == ESC10_N_CLASSES and bool(df["esc10"].all())
            else "ESC-50 subset")
    return DatasetSummary(n_clips=len(df), n_classes=n_classes, n_folds=len(per_fold),
                          clips_per_class={str(k): int(v) for k, v in per_class.items()},
                          clips_per_fold=per_fold, kind=kind)
