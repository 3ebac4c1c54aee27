"""Official-fold splits and the leakage audit, tested by property over every fold."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esc50kit.data import load_metadata
from esc50kit.splits import (
    MODES,
    FoldSplit,
    LeakageError,
    assign_roles,
    audio_content_hash,
    audit,
    cv_splits,
    make_splits,
    random_split_foil,
)


@pytest.fixture(scope="module")
def table(synthetic_root):
    return load_metadata(synthetic_root)


def test_cv_tests_every_fold_once():
    splits = cv_splits()
    assert sorted(s.test_fold for s in splits) == [1, 2, 3, 4, 5]
    for s in splits:
        assert s.val_fold != s.test_fold
        assert set(s.train_folds) | {s.val_fold, s.test_fold} == {1, 2, 3, 4, 5}
        assert len(s.train_folds) == 3


@given(folds=st.lists(st.integers(1, 9), min_size=3, max_size=7, unique=True))
@settings(max_examples=40, deadline=None)
def test_val_offsets_give_each_test_fold_every_other_fold_as_validation(folds):
    folds = tuple(sorted(folds))
    offsets = range(1, len(folds))
    by_test: dict[int, set[int]] = {f: set() for f in folds}
    for offset in offsets:
        splits = cv_splits(folds, val_offset=offset)
        assert sorted(s.test_fold for s in splits) == list(folds)  # each fold tests once
        for s in splits:
            assert s.val_fold != s.test_fold and s.val_fold not in s.train_folds
            assert set(s.train_folds) | {s.val_fold, s.test_fold} == set(folds)
            by_test[s.test_fold].add(s.val_fold)
    for test, vals in by_test.items():  # the ensemble of offsets covers every other fold
        assert vals == set(folds) - {test}


def test_val_offset_that_would_validate_on_the_test_fold_is_refused():
    for bad in (0, 5, -1):
        with pytest.raises(ValueError, match=f"val_offset={bad}"):
            cv_splits((1, 2, 3, 4, 5), val_offset=bad)
    with pytest.raises(ValueError, match="mode 'cv' only"):
        make_splits("final", val_offset=2)
    assert make_splits("cv", val_offset=1) == cv_splits()


@given(
    mode=st.sampled_from(MODES),
    folds=st.lists(st.integers(1, 9), min_size=3, max_size=6, unique=True),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_validation_fold_is_never_the_test_fold(mode, folds, data):
    folds = tuple(sorted(folds))
    kwargs = {}
    if mode != "cv":
        test = data.draw(st.sampled_from(folds))
        kwargs = {"test_fold": test,
                  "val_fold": data.draw(st.sampled_from([f for f in folds if f != test]))}
    for split in make_splits(mode, folds, **kwargs):
        assert split.val_fold != split.test_fold
        assert split.val_fold not in split.train_folds
        assert split.test_fold not in split.train_folds
        if mode == "validation":
            assert split.test_fold is None  # the held-out fold is never looked at


def test_validation_fold_equal_to_test_fold_is_refused():
    with pytest.raises(ValueError, match="val_fold=5"):
        make_splits("final", val_fold=5, test_fold=5)
    with pytest.raises(ValueError, match="overlap"):
        FoldSplit(train_folds=(1, 2), val_fold=3, test_fold=3)


def test_every_cv_split_is_disjoint_by_file_and_src_file(table):
    for split in make_splits("cv", tuple(table["fold"].unique())):
        roles = assign_roles(table, split)
        sides = {r: table[roles == r] for r in ("train", "val", "test")}
        for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
            assert not set(sides[a]["filename"]) & set(sides[b]["filename"])
            assert not set(sides[a]["src_file"]) & set(sides[b]["src_file"])
        assert audit(table, roles, check_content=True).ok


def _cv_roles(table, test_fold=1):
    split = next(s for s in cv_splits() if s.test_fold == test_fold)
    return assign_roles(table, split)


@pytest.mark.parametrize("test_fold", [1, 2, 3, 4, 5])
def test_audit_catches_a_test_file_listed_in_training(table, test_fold):
    roles = _cv_roles(table, test_fold)
    leaked = table[roles == "test"].iloc[[0]]
    df = pd.concat([table, leaked], ignore_index=True)  # the same file twice
    r = pd.concat([roles, pd.Series(["train"])], ignore_index=True)
    with pytest.raises(LeakageError) as err:
        audit(df, r)
    kinds = {leak.kind for leak in err.value.report.leaks}
    assert "file" in kinds
    assert leaked["filename"].iloc[0] in str(err.value)


@pytest.mark.parametrize("test_fold", [1, 2, 3, 4, 5])
def test_audit_catches_a_src_file_group_across_sides(table, test_fold):
    roles = _cv_roles(table, test_fold).copy()
    # Move one take of a test recording into training: same src_file on both sides.
    idx = table.index[(roles == "test")][0]
    roles[idx] = "train"
    report = audit(table, roles, raise_on_leak=False)
    assert not report.ok
    assert {"src_file", "fold"} <= {leak.kind for leak in report.leaks}
    assert "LEAK [src_file] train <-> test" in str(report)


def test_audit_catches_identical_audio_under_another_name(table, tmp_path):
    roles = _cv_roles(table)
    src = table[roles == "test"].iloc[0]
    clone = tmp_path / "3-999999-A-0.wav"
    shutil.copy(src["path"], clone)
    extra = pd.DataFrame([{**src.to_dict(), "filename": clone.name, "fold": 3,
                           "src_file": "999999", "path": str(clone)}])
    df = pd.concat([table, extra], ignore_index=True)
    r = pd.concat([roles, pd.Series(["train"])], ignore_index=True)
    assert audit(df, r, raise_on_leak=False).ok  # invisible without content hashes
    report = audit(df, r, check_content=True, raise_on_leak=False)
    assert [leak.kind for leak in report.leaks] == ["content"]


def test_audit_catches_an_augmented_copy_of_a_test_clip(table):
    roles = _cv_roles(table)
    src = table[roles == "test"].iloc[0]
    copy = {**src.to_dict(), "filename": "aug0-" + src["filename"], "origin": src["filename"]}
    df = pd.concat([table, pd.DataFrame([copy])], ignore_index=True)
    r = pd.concat([roles, pd.Series(["train"])], ignore_index=True)
    with pytest.raises(LeakageError) as err:
        audit(df, r)
    assert "augmented copy" in {leak.kind for leak in err.value.report.leaks}


def test_audit_passes_augmented_copies_of_training_clips(table):
    roles = _cv_roles(table)
    train = table[roles == "train"]
    copies = train.assign(origin=train["filename"], filename="aug0-" + train["filename"])
    df = pd.concat([table, copies], ignore_index=True)
    r = pd.concat([roles, pd.Series(["train"] * len(copies))], ignore_index=True)
    assert audit(df, r).ok


def test_random_foil_is_flagged(table):
    with pytest.raises(LeakageError, match="FAILED"):
        audit(table, random_split_foil(table, seed=1))


def test_content_hash_ignores_container_but_not_samples(tmp_path, table):
    import soundfile as sf

    y, sr = sf.read(table["path"].iloc[0], dtype="int16")
    sf.write(tmp_path / "a.wav", y, sr, subtype="PCM_16")
    sf.write(tmp_path / "b.flac", y, sr)
    assert audio_content_hash(tmp_path / "a.wav") == audio_content_hash(tmp_path / "b.flac")
    y[100] += 1
    sf.write(tmp_path / "c.wav", y, sr, subtype="PCM_16")
    assert audio_content_hash(tmp_path / "c.wav") != audio_content_hash(tmp_path / "a.wav")
