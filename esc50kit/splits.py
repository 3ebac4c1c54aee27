"""Leakage-safe splits on the official ESC-50 folds, and the audit that proves them.

The official folds are the only split unit: ESC-50 keeps every clip cut from one source
recording (``src_file``) inside one fold, so whole folds can never leak a recording.
For cross-validation each fold is the test fold once; the validation fold, which picks
the epoch and every other choice, is another fold, never the test fold::

    split = make_splits("final")[0]          # train 1-3, validate 4, test 5
    audit(df, assign_roles(df, split))       # raises LeakageError if a side shares data
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .data import OFFICIAL_FOLDS
from .fileio import atomic_write_json

ROLES = ("train", "val", "test")
MODES = ("cv", "validation", "final", "refit", "final-refit")
CROSS_FOLD_POLICIES = ("allow", "exclude")

# The official ESC-50 table itself puts the clips of four source recordings in two folds,
# each under two classes (filename -> (official fold, category)). Every published figure
# uses these folds, so the audit allows exactly these clips at exactly these folds and names
# them in every report; any other clip sharing their ``src_file`` across sides is a leak.
OFFICIAL_CROSS_FOLD_CLIPS: dict[str, tuple[int, str]] = {
    "2-131943-A-38.wav": (2, "clock_tick"),
    "3-131943-A-37.wav": (3, "clock_alarm"),
    "2-134049-A-6.wav": (2, "hen"),
    "3-134049-A-1.wav": (3, "rooster"),
    "4-209698-A-37.wav": (4, "clock_alarm"),
    "5-209698-A-38.wav": (5, "clock_tick"),
    "4-234879-A-6.wav": (4, "hen"),
    "5-234879-A-1.wav": (5, "rooster"),
    "5-234879-B-1.wav": (5, "rooster"),
}


class LeakageError(RuntimeError):
    """A train/validation/test assignment shares data across its sides."""

    def __init__(self, report: "AuditReport"):
        super().__init__(str(report))
        self.report = report


@dataclass(frozen=True)
class FoldSplit:
    """Which official folds train, validate and test one model.

    ``test_fold`` is None in ``validation`` mode (the held-out fold stays untouched);
    ``val_fold`` is None in ``refit`` mode, where every fold but the test fold trains for
    an epoch count chosen beforehand on validation folds (the last weights are scored).
    """

    train_folds: tuple[int, ...]
    val_fold: int | None
    test_fold: int | None

    def __post_init__(self) -> None:
        if self.val_fold is None and self.test_fold is None:
            raise ValueError(f"{self}: a split needs a validation or a test fold to score")
        used = [*self.train_folds, *(f for f in (self.val_fold, self.test_fold) if f is not None)]
        if len(set(used)) != len(used):
            raise ValueError(f"folds overlap in {self}: train, val and test folds must differ")

    @property
    def name(self) -> str:
        test = f"test{self.test_fold}" if self.test_fold is not None else "notest"
        return f"{test}-val{self.val_fold}" if self.val_fold is not None else f"{test}-noval"


def _sorted_folds(folds: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted({int(f) for f in folds}))


def cv_splits(folds: tuple[int, ...] = OFFICIAL_FOLDS, *, val_offset: int = 1) -> list[FoldSplit]:
    """One split per fold: it tests, the fold ``val_offset`` places after it (cyclically)
    validates, the rest train.

    Runs with offsets ``1 .. len(folds) - 1`` give every test fold one model per other
    fold as validation fold: averaged, an ensemble whose training data covers every
    non-test fold, each member having chosen its epoch on its own validation fold.

    Returns:
        list[FoldSplit]: ``len(folds)`` splits; every fold is the test fold exactly once.
    """
    folds = _sorted_folds(folds)
    if len(folds) < 3:
        raise ValueError(f"cross-validation needs at least 3 folds, got {folds}")
    if not 1 <= val_offset < len(folds):
        raise ValueError(f"val_offset={val_offset} must be in 1..{len(folds) - 1} "
                         f"(0 would validate on the test fold) for the folds {folds}")
    out = []
    for i, test in enumerate(folds):
        val = folds[(i + val_offset) % len(folds)]
        train = tuple(f for f in folds if f not in (test, val))
        out.append(FoldSplit(train_folds=train, val_fold=val, test_fold=test))
    return out


def refit_splits(folds: tuple[int, ...] = OFFICIAL_FOLDS) -> list[FoldSplit]:
    """One split per fold: it tests, ALL the other folds train, none validates.

    For an epoch count chosen on validation folds beforehand: each model trains on a
    third more data and its last weights are scored, so nothing is chosen on the test fold.

    Returns:
        list[FoldSplit]: ``len(folds)`` splits with ``val_fold=None``.
    """
    folds = _sorted_folds(folds)
    if len(folds) < 3:
        raise ValueError(f"refit needs at least 3 folds, got {folds}")
    return [FoldSplit(train_folds=tuple(f for f in folds if f != test), val_fold=None,
                      test_fold=test) for test in folds]


def _final_refit_split(folds: tuple[int, ...], *, test_fold: int | None, val_fold: int | None,
                       val_offset: int) -> list[FoldSplit]:
    """``[split]``: ``test_fold`` (default: the last fold) tests, every other fold trains."""
    if val_fold is not None or val_offset != 1:
        raise ValueError("mode 'final-refit' has no validation fold: val_fold and val_offset "
                         "do not apply (its epoch count was fixed on validation folds)")
    last = folds[-1] if test_fold is None else test_fold
    if last not in folds:
        raise ValueError(f"test_fold={last} is not one of the folds {folds}")
    return [FoldSplit(train_folds=tuple(f for f in folds if f != last), val_fold=None,
                      test_fold=last)]


def make_splits(mode: str, folds: tuple[int, ...] = OFFICIAL_FOLDS, *, val_fold: int | None = None,
                test_fold: int | None = None, val_offset: int = 1) -> list[FoldSplit]:
    """The splits of a training mode.

    Args:
        mode: ``"cv"`` (every fold tests once, :func:`cv_splits`), ``"validation"`` (train
            on three folds, report on the validation fold, keep the last fold untouched),
            ``"final"`` (test once on ``test_fold``), ``"refit"`` (:func:`refit_splits`) or
            ``"final-refit"`` (the refit split of ``test_fold`` alone: every other fold
            trains, for an epoch count fixed beforehand on validation folds).
        val_fold: for ``validation``/``final`` (default: the last fold but the test fold).
        test_fold: for ``final``/``final-refit`` (default: the last fold, 5 in ESC-50).
        val_offset: ``cv`` only (see :func:`cv_splits`).
    """
    folds = _sorted_folds(folds)
    if mode == "cv":
        return cv_splits(folds, val_offset=val_offset)
    if mode == "refit" and val_offset == 1 and val_fold is None and test_fold is None:
        return refit_splits(folds)
    if mode == "refit":
        raise ValueError("mode 'refit' has no validation fold and tests every fold: "
                         "val_offset, val_fold and test_fold do not apply")
    if mode == "final-refit":
        return _final_refit_split(folds, test_fold=test_fold, val_fold=val_fold,
                                  val_offset=val_offset)
    if val_offset != 1:
        raise ValueError(f"val_offset={val_offset} applies to mode 'cv' only, not {mode!r}; "
                         "choose the validation fold with val_fold")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    last = folds[-1] if test_fold is None else test_fold
    if last not in folds:
        raise ValueError(f"test_fold={last} is not one of the folds {folds}")
    val = val_fold if val_fold is not None else [f for f in folds if f != last][-1]
    if val not in folds or val == last:
        raise ValueError(f"val_fold={val} must be one of {folds} other than the test fold {last}")
    train = tuple(f for f in folds if f not in (val, last))
    return [FoldSplit(train_folds=train, val_fold=val,
                      test_fold=None if mode == "validation" else last)]


def assign_roles(df: pd.DataFrame, split: FoldSplit, *, cross_fold: str = "allow") -> pd.Series:
    """Role of every row under a split: ``train``, ``val``, ``test`` or ``unused``.

    Args:
        cross_fold: what to do with the official cross-fold recordings
            (:data:`OFFICIAL_CROSS_FOLD_CLIPS`). ``"allow"`` (the official protocol) keeps
            them where their folds put them; ``"exclude"`` (strict) leaves out every clip
            of such a recording on a side other than the most held-out one (test, else
            validation), so no recording is shared between sides at all.
    """
    if cross_fold not in CROSS_FOLD_POLICIES:
        raise ValueError(f"cross_fold={cross_fold!r}; choose one of {CROSS_FOLD_POLICIES}")
    roles = pd.Series("unused", index=df.index, dtype=object)
    roles[df["fold"].isin(split.train_folds)] = "train"
    roles[df["fold"] == split.val_fold] = "val"
    roles[df["fold"] == split.test_fold] = "test"
    return _exclude_cross_fold(df, roles) if cross_fold == "exclude" else roles


def _official_rows(df: pd.DataFrame) -> pd.Series:
    """True for the rows that are official cross-fold clips at their official fold."""
    official_fold = df["filename"].map(lambda f: OFFICIAL_CROSS_FOLD_CLIPS.get(f, (None,))[0])
    return official_fold == df["fold"].astype(int)


def _exclude_cross_fold(df: pd.DataFrame, roles: pd.Series) -> pd.Series:
    """``roles`` with the strict policy applied (see :func:`assign_roles`)."""
    roles = roles.copy()
    rank = {"train": 0, "val": 1, "test": 2}
    official = _official_rows(df)
    for _, group in df[official].groupby(df.loc[official, "src_file"].astype(str)):
        used = roles[group.index][roles[group.index].isin(list(rank))]
        if used.nunique() > 1:
            roles[used.index[used != max(used.unique(), key=rank.__getitem__)]] = "unused"
    return roles


def random_split_foil(df: pd.DataFrame, *, test_size: float = 0.2, val_size: float = 0.2,
                      seed: int = 0) -> pd.Series:
    """TEACHING FOIL: a random, fold-ignoring split of the rows. Never train on this.

    It shows what goes wrong: takes of one recording (and augmented copies) land on both
    sides, and scores rise for the wrong reason. :func:`audit` flags it.
    """
    order = np.random.default_rng(seed).permutation(len(df))
    n_test = int(round(test_size * len(df)))
    n_val = int(round(val_size * len(df)))
    roles = np.full(len(df), "train", dtype=object)
    roles[order[:n_test]] = "test"
    roles[order[n_test : n_test + n_val]] = "val"
    return pd.Series(roles, index=df.index, name="role_FOIL_random")


def audio_content_hash(path: str | Path) -> str:
    """SHA-1 of the decoded 16-bit samples of a file (not of its bytes on disk), so two
    files with the same sound but different headers or containers hash alike."""
    import soundfile as sf  # here: training from a feature pack needs no audio library

    data, sr = sf.read(str(path), dtype="int16", always_2d=True)
    h = hashlib.sha1(str(sr).encode())
    h.update(np.ascontiguousarray(data).tobytes())
    return h.hexdigest()


HASHES_FILENAME = "content-hashes.json"


def content_hashes(df: pd.DataFrame, *, cache_dir: str | Path | None = None,
                   progress: bool = False) -> pd.Series:
    """:func:`audio_content_hash` of every row's ``path``, aligned with ``df``.

    With ``cache_dir``, hashes are kept in ``content-hashes.json`` there and read back
    for files whose size and modification time are unchanged, so an audit of ESC-50
    decodes its 2000 clips once (a few seconds), not at every run.
    """
    from tqdm.auto import tqdm

    cache_path = Path(cache_dir) / HASHES_FILENAME if cache_dir is not None else None
    known: dict[str, list] = {}
    if cache_path is not None and cache_path.is_file():
        with contextlib.suppress(OSError, ValueError):  # an unreadable cache: hash again
            known = json.loads(cache_path.read_text())
    out, changed = [], False
    paths = [str(Path(p).resolve()) for p in df["path"]]
    for path in tqdm(paths, desc="hashing audio", unit="file", leave=False, disable=not progress):
        st = Path(path).stat()
        entry = known.get(path)
        if not (entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns):
            entry = known[path] = [st.st_size, st.st_mtime_ns, audio_content_hash(path)]
            changed = True
        out.append(entry[2])
    if cache_path is not None and changed:
        atomic_write_json(cache_path, known)
    return pd.Series(out, index=df.index, name="content_hash")


def feature_hashes(X: np.ndarray) -> list[str]:
    """SHA-1 of each row's features (for feature packs, which hold no audio: identical
    audio gives identical features, so this stands in for :func:`audio_content_hash`)."""
    return [hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest() for x in X]


@dataclass(frozen=True)
class Leak:
    """One kind of overlap between two sides of a split.

    ``examples`` names, for the first shared keys, a file of each side
    (``"1-100-B-0.wav <-> 5-100-A-0.wav"``), so the report points at the files to fix.
    """

    kind: str  # "fold", "file", "src_file", "content", "augmented copy"
    sides: tuple[str, str]
    keys: tuple[str, ...]
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        shown = ", ".join(self.keys[:5]) + (" ..." if len(self.keys) > 5 else "")
        line = (f"  LEAK [{self.kind}] {self.sides[0]} <-> {self.sides[1]}: "
                f"{len(self.keys)} shared ({shown})")
        return "\n      ".join([line, *self.examples])


@dataclass(frozen=True)
class CrossFoldRecording:
    """One official cross-fold recording as a split uses it: its ``src_file`` and the
    ``(filename, category, fold, role)`` of each of its clips in the table."""

    src_file: str
    clips: tuple[tuple[str, str, int, str], ...]

    @property
    def sides(self) -> tuple[str, ...]:
        """The split sides (train/val/test) its clips sit on, in that order."""
        return tuple(r for r in ROLES if r in {c[3] for c in self.clips})

    @property
    def straddles(self) -> bool:
        """True when its clips sit on more than one side of this split."""
        return len(self.sides) > 1

    def __str__(self) -> str:
        clips = "; ".join(f"{f} ({c}, fold {fold}, {role})" for f, c, fold, role in self.clips)
        where = (" <-> ".join(self.sides) + " in this split") if self.straddles \
            else "one side only in this split"
        return f"    src_file {self.src_file}: {clips} [{where}]"


@dataclass
class AuditReport:
    """What the audit checked and the leaks it found."""

    counts: dict[str, int]
    checks: list[str]
    leaks: list[Leak] = field(default_factory=list)
    cross_fold: list[CrossFoldRecording] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.leaks

    def __str__(self) -> str:
        head = "Split audit: " + ("PASSED" if self.ok else f"FAILED ({len(self.leaks)} leak(s))")
        sizes = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        lines = [head, f"  sizes: {sizes}", f"  checked: {', '.join(self.checks)}"]
        lines += [str(leak) for leak in self.leaks]
        if self.cross_fold:
            n = sum(r.straddles for r in self.cross_fold)
            left_out = sum(c[3] == "unused" for r in self.cross_fold for c in r.clips)
            lines.append(
                f"  official cross-fold recordings: {len(self.cross_fold)} in the table; "
                + (f"{n} sit on two sides of this split (allowed: the official folds)" if n
                   else "none sits on two sides of this split")
                + (f"; {left_out} of their clips are not used by it" if left_out else ""))
            lines += [str(r) for r in self.cross_fold]
            lines.append(
                "    The official ESC-50 folds themselves put these recordings in two folds, "
                "under two classes; every published ESC-50 figure uses these folds, so the "
                "audit allows exactly these clips at their official folds. For none of it, "
                "use cross_fold='exclude' (--cross-fold exclude), which leaves the clips "
                "on the less held-out side out of the split.")
        if not self.ok:
            lines.append("  Fix: split by official fold (esc50kit.splits.make_splits) and derive "
                         "augmented copies after splitting, from training clips only.")
        return "\n".join(lines)


def _check_roles(df: pd.DataFrame, roles: pd.Series) -> None:
    if not roles.index.equals(df.index):
        raise ValueError("roles must be aligned with df (same index)")


def audit(df: pd.DataFrame, roles: pd.Series, *, check_content: bool = False,
          raise_on_leak: bool = True) -> AuditReport:
    """Prove that no data is shared between train, validation and test.

    Checks every pair of sides for shared folds, files, ``src_file`` groups, augmented
    copies (rows whose ``origin`` column names a clip of another side) and, with
    ``check_content``, identical decoded audio (``content_hash`` column, computed from
    ``path`` when absent).

    Args:
        df: the table (``filename``, ``fold``, ``src_file``; optional ``origin``,
            ``content_hash``, ``path``).
        roles: ``train``/``val``/``test``/``unused`` per row, aligned with ``df``.
        raise_on_leak: raise :class:`LeakageError` when a leak is found.

    Returns:
        AuditReport: printable; ``report.ok`` is True when nothing leaks.
    """
    _check_roles(df, roles)
    unknown = set(roles.unique()) - set(ROLES) - {"unused"}
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; use {ROLES} or 'unused'")
    filename = df["filename"].astype(str)
    # the original clip of each row: ``origin`` for augmented copies, else the file itself
    origin = df["origin"].fillna(filename).astype(str) if "origin" in df.columns else filename
    keys = {"fold": df["fold"].astype(str), "file": filename,
            "src_file": df["src_file"].astype(str), "augmented copy": origin}
    if check_content:
        keys["content"] = (df["content_hash"].astype(str) if "content_hash" in df.columns
                           else df["path"].map(audio_content_hash))
    report = AuditReport(counts={r: int((roles == r).sum()) for r in ROLES}, checks=list(keys),
                         cross_fold=_cross_fold_recordings(df, roles),
                         leaks=_leaks(df, roles, keys))
    if raise_on_leak and not report.ok:
        raise LeakageError(report)
    return report


def _leaks(df: pd.DataFrame, roles: pd.Series, keys: dict[str, pd.Series]) -> list[Leak]:
    """The leaks of :func:`audit`: for each key kind and pair of sides, the shared keys."""
    official = _official_rows(df) & roles.isin(ROLES)
    out = []
    for kind, key in keys.items():
        for a, b in [("train", "test"), ("val", "test"), ("train", "val")]:
            shared = set(key[roles == a]) & set(key[roles == b])
            if kind == "augmented copy":
                # Only a copy that is not the same file: file overlaps are reported as 'file'.
                shared &= set(key[(key != df["filename"]) & roles.isin([a, b])])
            if kind == "src_file":
                # Allowed: a recording whose clips on these sides are all official
                # cross-fold clips at their official folds (reported above, not a leak).
                shared = {s for s in shared
                          if not official[(key == s) & roles.isin([a, b])].all()}
            if shared:
                out.append(Leak(kind=kind, sides=(a, b), keys=tuple(sorted(shared)),
                                examples=_examples(df, key, roles, shared, (a, b))))
    return out


def _cross_fold_recordings(df: pd.DataFrame, roles: pd.Series) -> list[CrossFoldRecording]:
    """The official cross-fold recordings present in ``df``, with each clip's role."""
    official = _official_rows(df)
    out = []
    for src, group in df[official].groupby(df.loc[official, "src_file"].astype(str), sort=True):
        clips = tuple((str(r.filename), OFFICIAL_CROSS_FOLD_CLIPS[r.filename][1], int(r.fold),
                       str(roles[i])) for i, r in zip(group.index, group.itertuples()))
        if len({c[2] for c in clips}) > 1:  # both folds present: it crosses folds here
            out.append(CrossFoldRecording(src_file=src, clips=clips))
    return out


def _examples(df: pd.DataFrame, key: pd.Series, roles: pd.Series, shared: set[str],
              sides: tuple[str, str], limit: int = 3) -> tuple[str, ...]:
    """For the first ``limit`` shared keys: a file of each side, ``"A <-> B"``."""
    a, b = sides
    out = []
    for k in sorted(shared)[:limit]:
        fa, fb = (df.loc[(key == k) & (roles == s), "filename"].astype(str).tolist() for s in sides)
        if fa and fb:
            out.append(f"{k}: {fa[0]} ({a}) <-> {fb[0]} ({b})")
    return tuple(out)


# --- Splits whose score would mean nothing -------------------------------------------------
#
# A split can be leak-free and still measure nothing: a class never trained, one class in
# the dataset (100% for any model), a scored fold with fewer clips than classes, a training
# fold without clips, or an empty side. A mode is laid out over the folds asked for, never
# over whichever hold clips, so an empty fold 5 is a refusal, not a silent "test on fold 4".

# kind -> can it run at all? (an empty side cannot: there is nothing to train or to score)
PROBLEM_KINDS = {"empty train": True, "empty val": True, "empty test": True,
                 "missing train fold": False, "one class": False, "class not trained": False,
                 "few val clips": False, "few test clips": False}
_SHOWN_PROBLEMS = 6  # at most this many named in one refusal (it stays one line)


class SplitError(ValueError):
    """A split whose score would mean nothing, refused before anything trains;
    ``problems`` holds its :class:`SplitProblem` objects."""

    def __init__(self, message: str, problems: Sequence[SplitProblem] = ()):
        super().__init__(message)
        self.problems = tuple(problems)


@dataclass(frozen=True)
class SplitProblem:
    """One reason a split's score would mean nothing: ``kind`` (a key of
    :data:`PROBLEM_KINDS`), ``split`` (its name, ``test5-val4``) and ``message`` (the
    whole sentence, starting with the split's name)."""

    kind: str
    split: str
    message: str

    @property
    def fatal(self) -> bool:
        """True when the split cannot run at all (an empty side), whatever is allowed."""
        return PROBLEM_KINDS[self.kind]

    def __str__(self) -> str:
        return self.message


def _fold_list(folds: Sequence[int]) -> str:
    return ",".join(str(f) for f in folds) or "(none)"


def check_split(df: pd.DataFrame, roles: pd.Series, split: FoldSplit,
                class_names: Sequence[str]) -> list[SplitProblem]:
    """What would make this split's score meaningless (pure: trains nothing).

    Args:
        df: the table (``category``, ``fold``).
        roles: ``train``/``val``/``test``/``unused`` per row (:func:`assign_roles`).
        class_names: every class of the dataset (all folds, also those not loaded): the
            model's outputs.

    Returns:
        list[SplitProblem]: empty sides, a training fold without clips (the others train:
        not the mode's protocol), one class, classes without a training clip, and scored
        folds with fewer clips than classes; empty when nothing is wrong.
    """
    _check_roles(df, roles)
    n_classes = len(class_names)
    side = {r: df["category"].astype(str)[roles == r] for r in ROLES}
    where = {"train": f"training folds {_fold_list(split.train_folds)}",
             "val": f"validation fold {split.val_fold}", "test": f"test fold {split.test_fold}"}
    scored = [r for r, fold in (("val", split.val_fold), ("test", split.test_fold))
              if fold is not None]
    found = [(f"empty {r}", f"{where[r]} hold{'' if r == 'train' else 's'} no clips")
             for r in ["train", *scored] if side[r].empty]
    trained_folds = set(df.loc[roles == "train", "fold"].astype(int))
    idle = [f for f in split.train_folds if f not in trained_folds]
    if idle and not side["train"].empty:
        found.append(("missing train fold",
                      f"training fold(s) {_fold_list(idle)} hold no clips, so it trains on "
                      f"{len(split.train_folds) - len(idle)} of its {len(split.train_folds)} "
                      "training folds "
                      f"({_fold_list([f for f in split.train_folds if f in trained_folds])}): "
                      "not the protocol its score is compared under"))
    if n_classes == 1:
        found.append(("one class", f"the dataset has one class ({class_names[0]!r}): every "
                                   "prediction is that class, so any model scores 100%"))
    absent = [c for c in class_names if c not in set(side["train"])]
    if absent and not side["train"].empty:
        scored_rows = pd.concat([side[r] for r in scored])
        named = ", ".join(f"{c!r} ({int((scored_rows == c).sum())} scored)"
                          for c in absent[:5]) + (" ..." if len(absent) > 5 else "")
        found.append(("class not trained",
                      f"{len(absent)} of {n_classes} class(es) without a clip in {where['train']} "
                      f"({len(side['train'])} clips): {named}; the model never learns them, "
                      "so every scored clip of them counts as an error"))
    found += [(f"few {r} clips",
               f"{where[r]} holds {len(side[r])} clip(s) for {n_classes} classes: at least "
               f"{n_classes - len(side[r])} class(es) never scored there, and each clip "
               f"moves its accuracy by {100 / len(side[r]):.1f} points")
              for r in scored if 0 < len(side[r]) < n_classes]
    return [SplitProblem(kind=k, split=split.name, message=f"{split.name}: {text}")
            for k, text in found]


def checked_splits(df: pd.DataFrame, mode: str, *, class_names: Sequence[str],
                   folds: Sequence[int] = OFFICIAL_FOLDS, val_offset: int = 1,
                   cross_fold: str = "allow", allow_degenerate: bool = False,
                   source: str = "the dataset") -> tuple[list[FoldSplit], dict[str, list[str]]]:
    """The splits of ``mode`` over ``folds``, each checked by :func:`check_split`.

    The mode is laid out over the folds asked for, not over those that hold clips, so
    ``final`` without fold 5 is refused rather than turned into "test on fold 4".

    Args:
        df: the table of the folds used (``fold``, ``category``, ``filename``).
        class_names: every class of the dataset, the model's outputs.
        cross_fold: as in :func:`assign_roles` (the sizes checked are those it leaves).
        allow_degenerate: run a split whose score means little anyway (a class without
            training clips, one class, a scored fold with fewer clips than classes); its
            problems come back as warnings. An empty side is refused all the same.
        source: names the dataset in the message (its folder).

    Returns:
        tuple: the splits, and split name -> the warnings of that split (empty lists
        unless ``allow_degenerate`` let problems through).

    Raises:
        SplitError: a problem, unless allowed; an empty side always.
    """
    folds = _sorted_folds(folds)
    if mode in ("cv", "refit") and len(folds) < 3:
        raise SplitError(
            f"{source}: mode {mode!r} needs at least 3 folds (each fold tests once, the "
            f"rest train{', one of them validates' if mode == 'cv' else ''}), got folds "
            f"{list(folds)}; ask for 3 or more folds")
    splits = make_splits(mode, folds, val_offset=val_offset)
    problems = [p for s in splits for p in
                check_split(df, assign_roles(df, s, cross_fold=cross_fold), s, class_names)]
    if any(p.fatal for p in problems) or (problems and not allow_degenerate):
        raise SplitError(_refusal(problems, df, mode, folds, source), problems)
    return splits, {s.name: [p.message for p in problems if p.split == s.name] for s in splits}


def _refusal(problems: list[SplitProblem], df: pd.DataFrame, mode: str,
             folds: tuple[int, ...], source: str) -> str:
    """The one-line message of a refusal: the problems, then what to do."""
    shown = [p.message for p in problems[:_SHOWN_PROBLEMS]]
    if len(problems) > _SHOWN_PROBLEMS:
        shown.append(f"and {len(problems) - _SHOWN_PROBLEMS} more")
    todo = []
    present = sorted(int(f) for f in df["fold"].unique())
    missing = [f for f in folds if f not in present]
    if missing:
        fix = f"restore the clips of fold(s) {_fold_list(missing)}"
        if len(present) >= 3:
            fix += (f", or ask for the folds that hold clips only (folds={present}; "
                    f"train_cv.py --folds {' '.join(map(str, present))})")
        else:  # every mode trains, validates and holds out a fold of its own
            fix += f"; no mode can run on fewer than 3 folds (this dataset has {present})"
        todo.append(fix)
    if any(p.fatal for p in problems):
        if not missing:
            todo.append("give every side of each split clips")
        todo.append("a split with an empty side cannot run, not even with allow_degenerate=True")
    else:
        todo.append("give every class clips in the training folds and every scored fold at "
                    "least one clip per class (the official folds do), or run it anyway with "
                    "allow_degenerate=True (train_cv.py --allow-degenerate): every report then "
                    "carries these warnings next to the score")
    return (f"{source}: refused, mode {mode!r} would report a meaningless score: "
            + "; ".join(shown) + ". To do: " + "; ".join(todo))
