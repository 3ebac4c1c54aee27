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
    OFFICIAL_CROSS_FOLD_CLIPS,
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
    if mode in ("final", "validation"):
        test = data.draw(st.sampled_from(folds))
        kwargs = {"test_fold": test,
                  "val_fold": data.draw(st.sampled_from([f for f in folds if f != test]))}
    elif mode == "final-refit":
        kwargs = {"test_fold": data.draw(st.sampled_from(folds))}
    for split in make_splits(mode, folds, **kwargs):
        assert split.val_fold != split.test_fold
        assert split.val_fold not in split.train_folds
        assert split.test_fold not in split.train_folds
        if mode == "validation":
            assert split.test_fold is None  # the held-out fold is never looked at
        if mode in ("refit", "final-refit"):  # every other fold trains; nothing validates
            assert split.val_fold is None
            assert sorted(split.train_folds + (split.test_fold,)) == list(folds)


def test_refit_tests_every_fold_once_and_takes_no_fold_arguments():
    splits = make_splits("refit")
    assert [s.test_fold for s in splits] == [1, 2, 3, 4, 5]
    assert [s.name for s in splits][0] == "test1-noval"
    assert all(len(s.train_folds) == 4 and s.val_fold is None for s in splits)
    for bad in ({"val_fold": 4}, {"test_fold": 5}, {"val_offset": 2}):
        with pytest.raises(ValueError, match="refit"):
            make_splits("refit", **bad)
    with pytest.raises(ValueError, match="validation or a test fold"):
        FoldSplit(train_folds=(1, 2), val_fold=None, test_fold=None)


def test_final_refit_is_the_refit_split_of_one_test_fold():
    assert make_splits("final-refit") == [make_splits("refit")[-1]]  # test 5, train 1-4
    assert make_splits("final-refit", test_fold=2) == [make_splits("refit")[1]]
    for bad in ({"val_fold": 4}, {"val_offset": 2}):
        with pytest.raises(ValueError, match="'final-refit' has no validation fold"):
            make_splits("final-refit", **bad)
    with pytest.raises(ValueError, match="test_fold=6"):
        make_splits("final-refit", test_fold=6)


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


# --- The official folds' own cross-fold recordings (ESC-50) ------------------------------

def _esc50_like_table() -> pd.DataFrame:
    """The columns of ESC-50's table: 5 folds x 8 one-take recordings, plus the nine
    official cross-fold clips (four recordings, two folds each) at their official folds."""
    rows = [{"filename": f"{fold}-{1000 + 10 * fold + k}-A-{k}.wav", "fold": fold,
             "target": k, "category": f"class{k}", "src_file": str(1000 + 10 * fold + k),
             "take": "A"} for fold in range(1, 6) for k in range(8)]
    for name, (fold, category) in OFFICIAL_CROSS_FOLD_CLIPS.items():
        _, src, take, target = name[:-4].split("-")
        rows.append({"filename": name, "fold": fold, "target": int(target),
                     "category": category, "src_file": src, "take": take})
    return pd.DataFrame(rows)


def _all_splits():
    for mode in MODES:
        offsets = range(1, 5) if mode == "cv" else [1]
        for offset in offsets:
            yield from make_splits(mode, val_offset=offset)


def test_official_cross_fold_recordings_pass_and_are_named_in_every_report():
    df = _esc50_like_table()
    straddled = 0
    for split in _all_splits():
        report = audit(df, assign_roles(df, split))
        assert report.ok
        text = str(report)
        assert [r.src_file for r in report.cross_fold] == ["131943", "134049", "209698", "234879"]
        for name, (fold, category) in OFFICIAL_CROSS_FOLD_CLIPS.items():
            assert f"{name} ({category}, fold {fold}," in text
        assert "official ESC-50 folds themselves" in text
        straddled += sum(r.straddles for r in report.cross_fold)
    assert straddled > 0  # some splits do put them on two sides


@pytest.mark.parametrize("split", list(_all_splits()), ids=lambda s: s.name)
def test_strict_policy_shares_no_recording_between_sides(split):
    df = _esc50_like_table()
    allowed = assign_roles(df, split)
    strict = assign_roles(df, split, cross_fold="exclude")
    used = strict[strict != "unused"]
    groups = df.loc[used.index].groupby("src_file").apply(lambda g: used[g.index].nunique())
    assert (groups == 1).all()  # every recording on one side only
    changed = df.loc[strict != allowed, "filename"]
    assert set(changed) <= set(OFFICIAL_CROSS_FOLD_CLIPS)  # only official clips move
    assert (strict[strict != allowed] == "unused").all()  # and only out of the split
    rank = {"unused": -1, "train": 0, "val": 1, "test": 2}
    for src, g in df.groupby("src_file"):  # the most held-out side keeps its clips
        before = {allowed[i] for i in g.index} - {"unused"}
        if len(before) > 1:
            kept = {strict[i] for i in g.index} - {"unused"}
            assert kept == {max(before, key=rank.__getitem__)}
    assert audit(df, strict).ok


def test_unknown_cross_fold_policy_is_refused():
    with pytest.raises(ValueError, match="cross_fold='drop'"):
        assign_roles(_esc50_like_table(), make_splits("final")[0], cross_fold="drop")


@pytest.mark.parametrize("policy", ["allow", "exclude"])
@pytest.mark.parametrize("official_src", [False, True])
def test_a_planted_take_of_a_test_recording_still_leaks(policy, official_src):
    """A fold-5 clip copied into fold 1 under another take of its src_file, also for one
    of the four official cross-fold recordings: a leak under either policy."""
    df = _esc50_like_table()
    src = df[(df["fold"] == 5) & (df["filename"].isin(OFFICIAL_CROSS_FOLD_CLIPS) == official_src)].iloc[0]
    planted = {**src.to_dict(), "fold": 1, "take": "Z",
               "filename": f"1-{src['src_file']}-Z-{src['target']}.wav"}
    df = pd.concat([df, pd.DataFrame([planted])], ignore_index=True)
    with pytest.raises(LeakageError) as err:
        audit(df, assign_roles(df, make_splits("final")[0], cross_fold=policy))
    text = str(err.value)
    assert "LEAK [src_file] train <-> test" in text
    assert f"{planted['filename']} (train) <-> {src['filename']} (test)" in text


def test_an_official_clip_moved_to_another_fold_is_a_leak():
    df = _esc50_like_table()
    df.loc[df["filename"] == "5-209698-A-38.wav", "fold"] = 1  # official fold is 5
    with pytest.raises(LeakageError, match="209698"):
        audit(df, assign_roles(df, make_splits("final")[0]))


def _cross_fold_tree(root):
    """Move take B of a fold-4 recording into fold 5 (renamed as the table requires):
    a recording on both sides of the final split (val 4, test 5). Returns its two clips."""
    import pandas as pd

    csv = root / "meta" / "esc50.csv"
    meta = pd.read_csv(csv)
    a = meta[(meta["fold"] == 4) & (meta["take"] == "A")].iloc[0]
    b_idx = meta.index[(meta["src_file"] == a["src_file"]) & (meta["take"] == "B")][0]
    old = meta.loc[b_idx, "filename"]
    new = "5" + old[1:]
    (root / "audio" / old).rename(root / "audio" / new)
    meta.loc[b_idx, ["filename", "fold"]] = [new, 5]
    meta.to_csv(csv, index=False)
    return {a["filename"]: (4, a["category"]), new: (5, a["category"])}


def test_runs_allow_or_exclude_the_official_cross_fold_clips(writable_root, tmp_path, monkeypatch,
                                                           torch_one_thread):
    """run_experiment on a tree with a recording across folds 4 and 5: a leak unless it is
    one of the official cross-fold recordings; then allowed (named in audit.txt) or, under
    the strict policy, its validation-side clip left out."""
    from esc50kit import splits
    from esc50kit.experiment import run_experiment

    clips = _cross_fold_tree(writable_root)
    kw = dict(artifacts_dir=tmp_path / "art", mode="final", profile="tiny",
              overrides={"training.epochs": 1}, progress=False)
    with pytest.raises(LeakageError, match="LEAK \\[src_file\\] val <-> test"):
        run_experiment(writable_root, run_name="plain", **kw)
    assert not (tmp_path / "art" / "runs" / "plain").exists()  # refused before any folder

    monkeypatch.setattr(splits, "OFFICIAL_CROSS_FOLD_CLIPS", clips)
    allowed = run_experiment(writable_root, run_name="allow", **kw)
    strict = run_experiment(writable_root, run_name="strict", cross_fold="exclude", **kw)
    text = (allowed.run_dir / "audit.txt").read_text()
    assert "1 sit on two sides of this split (allowed" in text
    assert all(name in text for name in clips)
    (a_split,), (s_split,) = allowed.metrics["splits"], strict.metrics["splits"]
    assert (a_split["n_val"], a_split["n_test"]) == (9, 11)  # one take moved 4 -> 5
    assert (s_split["n_val"], s_split["n_test"]) == (8, 11)  # its fold-4 take left out
    fold4_clip = next(n for n, (fold, _) in clips.items() if fold == 4)
    assert fold4_clip in set(allowed.predictions["filename"]) | set(
        pd.read_csv(allowed.run_dir / a_split["name"] / "predictions.csv")["filename"])
    assert fold4_clip not in set(pd.read_csv(strict.run_dir / s_split["name"] / "predictions.csv")["filename"])
    assert strict.config["cross_fold"] == "exclude"
    with pytest.raises(ValueError, match="cross_fold"):  # a strict run never resumes as allow
        run_experiment(writable_root, run_name="strict", **kw)


def test_training_runs_compare_decoded_audio(writable_root, tmp_path, torch_one_thread):
    """A copy of a test clip under another name and src_file in a training fold: caught
    by run_experiment's audit (by content), before any run folder; the hashes are cached."""
    import soundfile as sf

    from esc50kit.experiment import run_experiment
    from esc50kit.splits import HASHES_FILENAME

    csv = writable_root / "meta" / "esc50.csv"
    meta = pd.read_csv(csv)
    src = meta[meta["fold"] == 5].iloc[0]
    clone = f"1-999999-A-{src['target']}.wav"
    y, sr = sf.read(writable_root / "audio" / src["filename"], dtype="int16")
    sf.write(writable_root / "audio" / clone, y, sr, subtype="PCM_16")  # same sound, new file
    meta = pd.concat([meta, pd.DataFrame([{**src.to_dict(), "filename": clone, "fold": 1,
                                           "src_file": 999999, "take": "A"}])])
    meta.to_csv(csv, index=False)
    art = tmp_path / "art"
    with pytest.raises(LeakageError) as err:
        run_experiment(writable_root, artifacts_dir=art, mode="final", profile="tiny",
                       run_name="r", progress=False)
    assert "LEAK [content] train <-> test" in str(err.value)
    assert f"{clone} (train) <-> {src['filename']} (test)" in str(err.value)
    assert not (art / "runs" / "r").exists()
    assert (art / "features" / HASHES_FILENAME).is_file()


def test_content_hashes_are_cached_by_size_and_mtime(table, tmp_path, monkeypatch):
    from esc50kit import splits

    first = splits.content_hashes(table, cache_dir=tmp_path)
    assert first.tolist() == [audio_content_hash(p) for p in table["path"]]
    calls = []
    monkeypatch.setattr(splits, "audio_content_hash", lambda p: calls.append(p) or "x")
    again = splits.content_hashes(table, cache_dir=tmp_path)
    assert calls == [] and again.tolist() == first.tolist()
