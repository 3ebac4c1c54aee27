"""No meaningless score reported as valid: splits are checked before anything trains.

A split can be leak-free and still measure nothing (a class never trained, one class,
a scored fold with fewer clips than classes, an empty side, a mode's fold missing). The
check is a pure function over the table, tested by property over generated tables; the
run, the chain summary, train_cv.py and notebook 04 are tested end to end on tiny trees.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esc50kit.data import META_RELPATH, OFFICIAL_FOLDS
from esc50kit.experiment import load_run, run_experiment, score_warnings, warnings_markdown
from esc50kit.splits import (
    MODES,
    OFFICIAL_CROSS_FOLD_CLIPS,
    PROBLEM_KINDS,
    FoldSplit,
    SplitError,
    assign_roles,
    check_split,
    checked_splits,
    make_splits,
)

REPO = Path(__file__).resolve().parents[1]
TINY = dict(profile="tiny", overrides={"training.epochs": 1}, progress=False)
# the official categories of the cross-fold recordings' targets
_OFFICIAL_NAMES = {1: "rooster", 6: "hen", 37: "clock_alarm", 38: "clock_tick"}


def _table(n_classes: int, per_fold: dict[int, dict[int, int]] | int, *,
           official_cross_fold: bool = False) -> pd.DataFrame:
    """A table in ESC-50's columns: ``per_fold[fold][class]`` one-take recordings (or that
    many of every class in every official fold), plus, optionally, the nine official
    cross-fold clips (their classes must exist: n_classes > 38)."""
    if isinstance(per_fold, int):
        per_fold = {f: {k: per_fold for k in range(n_classes)} for f in OFFICIAL_FOLDS}
    rows = []
    for fold, counts in per_fold.items():
        for k, n in counts.items():
            for i in range(n):
                src = str(100000 + 1000 * fold + 10 * k + i)
                rows.append({"filename": f"{fold}-{src}-A-{k}.wav", "fold": fold, "target": k,
                             "category": _OFFICIAL_NAMES.get(k, f"class{k}"), "src_file": src,
                             "take": "A"})
    if official_cross_fold:
        for name, (fold, category) in OFFICIAL_CROSS_FOLD_CLIPS.items():
            _, src, take, target = name[:-4].split("-")
            rows.append({"filename": name, "fold": fold, "target": int(target),
                         "category": category, "src_file": src, "take": take})
    return pd.DataFrame(rows, columns=["filename", "fold", "target", "category", "src_file", "take"])


def _names(n_classes: int) -> list[str]:
    return [_OFFICIAL_NAMES.get(k, f"class{k}") for k in range(n_classes)]


def _every_official_split(folds=OFFICIAL_FOLDS):
    """Every split the project trains on the official folds: each mode, every val offset
    (and every val fold of ``final``/``validation``)."""
    for mode in MODES:
        if mode == "cv":
            for offset in range(1, len(folds)):
                yield mode, dict(val_offset=offset)
        elif mode in ("refit", "final-refit"):  # no validation fold to choose
            yield mode, {}
        else:
            for val in folds[:-1]:
                yield mode, dict(val_fold=val)


# ------------------------------------------------------------------ the official structure

@pytest.mark.parametrize("cross_fold", ["allow", "exclude"])
@pytest.mark.parametrize("n_classes", [10, 50])
def test_the_official_esc_structure_passes_in_every_mode(n_classes, cross_fold):
    """ESC-10 and ESC-50 as published: 5 folds x 8 clips of every class (ESC-50 with its
    four cross-fold recordings), every mode, val offsets 1-4, inner cv over folds 1-4."""
    df = _table(n_classes, 8, official_cross_fold=n_classes == 50)
    names = _names(n_classes)
    for mode, kw in _every_official_split():
        for split in make_splits(mode, **kw):
            assert check_split(df, assign_roles(df, split, cross_fold=cross_fold), split, names) == []
    for offset in (1, 2, 3):
        splits, warnings = checked_splits(df[df["fold"] <= 4], "cv", class_names=names,
                                          folds=(1, 2, 3, 4), val_offset=offset, cross_fold=cross_fold)
        assert len(splits) == 4 and all(w == [] for w in warnings.values())
    for mode in MODES:
        _, warnings = checked_splits(df, mode, class_names=names, cross_fold=cross_fold)
        assert all(w == [] for w in warnings.values())


@given(n_classes=st.integers(2, 12), clips=st.integers(1, 3),
       cross_fold=st.sampled_from(["allow", "exclude"]))
@settings(max_examples=30, deadline=None)
def test_every_fold_holding_every_class_passes(n_classes, clips, cross_fold):
    df = _table(n_classes, clips)
    for mode, kw in _every_official_split():
        for split in make_splits(mode, **kw):
            assert check_split(df, assign_roles(df, split, cross_fold=cross_fold), split,
                               _names(n_classes)) == []


def test_the_real_esc50_table_passes_when_it_is_here():
    """The official 2000-row table, where this machine keeps it (skipped elsewhere)."""
    csv = REPO.parent / "shared" / "data" / "ESC-50-rest" / "meta" / "esc50.csv"
    if not csv.is_file():
        pytest.skip(f"{csv} not here")
    full = pd.read_csv(csv)
    for df in (full, full[full["esc10"]].reset_index(drop=True)):
        names = df.drop_duplicates("target").sort_values("target")["category"].tolist()
        for cross_fold in ("allow", "exclude"):
            for mode, kw in _every_official_split():
                for split in make_splits(mode, **kw):
                    roles = assign_roles(df, split, cross_fold=cross_fold)
                    assert check_split(df, roles, split, names) == []


# ------------------------------------------------------------------ the check, by property

@st.composite
def _tables_and_splits(draw):
    """A table of random counts per fold and class (folds and classes may be empty or
    absent) and one split of a random mode over the official folds."""
    n_classes = draw(st.integers(1, 6))
    counts = {f: {k: draw(st.integers(0, 2)) for k in range(n_classes)} for f in OFFICIAL_FOLDS}
    mode = draw(st.sampled_from(MODES))
    if mode == "cv":
        splits = make_splits("cv", val_offset=draw(st.integers(1, 4)))
        split = draw(st.sampled_from(splits))
    elif mode in ("refit", "final-refit"):
        split = draw(st.sampled_from(make_splits(mode)))
    else:
        split = make_splits(mode, val_fold=draw(st.sampled_from([1, 2, 3, 4])))[0]
    return _table(n_classes, counts), split, _names(n_classes)


def _expected_kinds(df: pd.DataFrame, split: FoldSplit, names: list[str]) -> set[str]:
    """The problems, counted independently of check_split: fold by fold, class by class."""
    def clips(folds, cls=None):
        return sum(((df["fold"] == f) & ((df["category"] == cls) if cls else True)).sum()
                   for f in folds)

    scored = {"val": [split.val_fold]} if split.val_fold is not None else {}
    if split.test_fold is not None:
        scored["test"] = [split.test_fold]
    kinds = set()
    for side, folds in {"train": split.train_folds, **scored}.items():
        if clips(folds) == 0:
            kinds.add(f"empty {side}")
        elif side != "train" and clips(folds) < len(names):
            kinds.add(f"few {side} clips")
    if clips(split.train_folds) and any(clips([f]) == 0 for f in split.train_folds):
        kinds.add("missing train fold")
    if len(names) == 1:
        kinds.add("one class")
    if clips(split.train_folds) and any(clips(split.train_folds, c) == 0 for c in names):
        kinds.add("class not trained")
    return kinds


@given(case=_tables_and_splits())
@settings(max_examples=200, deadline=None)
def test_check_split_reports_exactly_what_makes_a_score_meaningless(case):
    df, split, names = case
    problems = check_split(df, assign_roles(df, split), split, names)
    assert {p.kind for p in problems} == _expected_kinds(df, split, names)
    assert len({p.kind for p in problems}) == len(problems)  # each said once
    for p in problems:
        assert p.kind in PROBLEM_KINDS and p.split == split.name
        assert str(p).startswith(f"{split.name}: ")
        assert p.fatal == (p.kind in ("empty train", "empty val", "empty test"))


@given(case=_tables_and_splits())
@settings(max_examples=100, deadline=None)
def test_classes_without_training_clips_are_named_with_their_scored_counts(case):
    df, split, names = case
    problems = {p.kind: str(p) for p in check_split(df, assign_roles(df, split), split, names)}
    train = df[df["fold"].isin(split.train_folds)]
    absent = [c for c in names if c not in set(train["category"])]
    if train.empty or not absent:
        assert "class not trained" not in problems
        return
    text = problems["class not trained"]
    assert f"{len(absent)} of {len(names)} class(es)" in text and f"({len(train)} clips)" in text
    scored_folds = [split.val_fold] + ([split.test_fold] if split.test_fold else [])
    for c in absent[:5]:
        n = int((df["fold"].isin(scored_folds) & (df["category"] == c)).sum())
        assert f"{c!r} ({n} scored)" in text


@given(n_classes=st.integers(2, 8), cls=st.integers(0, 7), mode=st.sampled_from(MODES),
       offset=st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_a_class_removed_from_some_folds_is_refused_wherever_it_would_train_missing(
        n_classes, cls, mode, offset):
    cls %= n_classes
    df = _table(n_classes, 2)
    gone = {1, 2, 3}
    df = df[~((df["target"] == cls) & df["fold"].isin(gone))].reset_index(drop=True)
    names = _names(n_classes)
    kw = dict(val_offset=offset) if mode == "cv" else {}
    untrained = [s.name for s in make_splits(mode, **kw) if set(s.train_folds) <= gone]
    if not untrained:  # every split trains on fold 4 or 5, which keep the class
        splits, warnings = checked_splits(df, mode, class_names=names, **kw)
        assert splits == make_splits(mode, **kw) and not any(warnings.values())
        return
    with pytest.raises(SplitError) as err:
        checked_splits(df, mode, class_names=names, **kw)
    assert [p.split for p in err.value.problems] == untrained
    scored = 2 if mode == "validation" else 4  # 2 clips a fold: validation (and test) fold
    for name in untrained:
        assert (f"{name}: 1 of {n_classes} class(es) without a clip in training folds 1,2,3 "
                f"({3 * 2 * (n_classes - 1)} clips): {names[cls]!r} ({scored} scored)") in str(err.value)
    assert "allow_degenerate=True" in str(err.value) and "\n" not in str(err.value)
    # allowed: the same problems come back as warnings, split by split
    splits, warnings = checked_splits(df, mode, class_names=names, allow_degenerate=True, **kw)
    assert [w for s in splits for w in warnings[s.name]] == [str(p) for p in err.value.problems]


@given(fold=st.sampled_from(OFFICIAL_FOLDS), mode=st.sampled_from(MODES),
       allow=st.booleans(), offset=st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_a_mode_whose_fold_is_empty_is_refused_not_reinterpreted(fold, mode, allow, offset):
    df = _table(4, 2)
    df = df[df["fold"] != fold].reset_index(drop=True)
    kw = dict(val_offset=offset) if mode == "cv" else {}
    used = {f for s in make_splits(mode, **kw)
            for f in (*s.train_folds, s.val_fold, s.test_fold) if f is not None}
    if fold not in used:  # validation mode never reads its held-out fold 5
        splits, _ = checked_splits(df, mode, class_names=_names(4), allow_degenerate=allow, **kw)
        assert splits == make_splits(mode, **kw)
        return
    scored = {f for s in make_splits(mode, **kw) for f in (s.val_fold, s.test_fold)}
    if allow and fold not in scored:  # only a training fold: it runs, and says so
        splits, warnings = checked_splits(df, mode, class_names=_names(4), allow_degenerate=True, **kw)
        assert splits == make_splits(mode, **kw)  # never reinterpreted
        for s in splits:
            assert (f"{s.name}: training fold(s) {fold} hold no clips" in " ".join(warnings[s.name])
                    ) == (fold in s.train_folds)
        return
    with pytest.raises(SplitError) as err:
        checked_splits(df, mode, class_names=_names(4), allow_degenerate=allow, **kw)
    text = str(err.value)
    assert f"restore the clips of fold(s) {fold}" in text
    present = [f for f in OFFICIAL_FOLDS if f != fold]
    assert f"folds={present}" in text
    assert ("not even with allow_degenerate=True" in text) == (fold in scored)
    for s in make_splits(mode, **kw):
        if fold == s.test_fold:
            assert f"{s.name}: test fold {fold} holds no clips" in text
        if fold == s.val_fold:
            assert f"{s.name}: validation fold {fold} holds no clips" in text


def test_final_without_fold_5_says_so_and_never_tests_on_fold_4():
    df = _table(3, 2)
    df = df[df["fold"] != 5].reset_index(drop=True)
    with pytest.raises(SplitError, match=r"^ESC-10-copy: refused, mode 'final' would report a "
                                         r"meaningless score: test5-val4: test fold 5 holds no clips\. "
                                         r"To do: restore the clips of fold\(s\) 5, or ask for the folds "
                                         r"that hold clips only \(folds=\[1, 2, 3, 4\]; train_cv\.py "
                                         r"--folds 1 2 3 4\)"):
        checked_splits(df, "final", class_names=_names(3), source="ESC-10-copy")
    splits, _ = checked_splits(df, "final", class_names=_names(3), folds=(1, 2, 3, 4))
    assert [s.name for s in splits] == ["test4-val3"]  # asked for: then it is what was meant


@pytest.mark.parametrize("mode", MODES)
def test_fewer_than_three_folds_can_run_no_mode(mode):
    df = _table(3, 2)
    for present in ([1, 2], [1]):
        some = df[df["fold"].isin(present)].reset_index(drop=True)
        with pytest.raises(SplitError, match=r"no mode can run on fewer than 3 folds "
                                             rf"\(this dataset has {re.escape(str(present))}\)"):
            checked_splits(some, mode, class_names=_names(3), allow_degenerate=True)
    two = df[df["fold"] <= 2].reset_index(drop=True)
    if mode in ("cv", "refit"):
        with pytest.raises(SplitError, match=rf"mode '{mode}' needs at least 3 folds .* got folds \[1, 2\]"):
            checked_splits(two, mode, class_names=_names(3), folds=(1, 2))
    elif mode == "final-refit":  # asked for: fold 1 trains, fold 2 tests, nothing validates
        splits, _ = checked_splits(two, mode, class_names=_names(3), folds=(1, 2))
        assert [(s.train_folds, s.test_fold) for s in splits] == [((1,), 2)]
    else:  # asked for: the split is laid out over them, and has nothing to train on
        with pytest.raises(SplitError, match=r"(test2|notest)-val1: training folds \(none\) hold no clips"):
            checked_splits(two, mode, class_names=_names(3), folds=(1, 2), allow_degenerate=True)


def test_one_class_and_tiny_test_folds_have_their_messages():
    one = _table(1, 2)
    with pytest.raises(SplitError, match=r"test5-val4: the dataset has one class \('class0'\): "
                                         r"every prediction is that class, so any model scores 100%"):
        checked_splits(one, "final", class_names=_names(1))
    # the tester's 50-class partial tree: 12 training clips, 2 test clips
    counts = {1: {k: 1 for k in range(6)}, 2: {k: 1 for k in range(6, 12)},
              4: {0: 1, 1: 1, 2: 1}, 5: {3: 1, 7: 1}}
    partial = _table(50, counts)
    with pytest.raises(SplitError) as err:
        checked_splits(partial, "final", class_names=_names(50))
    assert [p.kind for p in err.value.problems] == [
        "missing train fold", "class not trained", "few val clips", "few test clips"]
    text = str(err.value)
    assert ("test5-val4: test fold 5 holds 2 clip(s) for 50 classes: at least 48 class(es) "
            "never scored there, and each clip moves its accuracy by 50.0 points") in text
    assert "test5-val4: validation fold 4 holds 3 clip(s) for 50 classes" in text
    assert "test5-val4: 38 of 50 class(es) without a clip in training folds 1,2,3 (12 clips)" in text
    assert ("test5-val4: training fold(s) 3 hold no clips, so it trains on 2 of its 3 training "
            "folds (1,2): not the protocol its score is compared under") in text
    assert "restore the clips of fold(s) 3, or ask for the folds that hold clips only" in text


def test_roles_must_be_aligned_with_the_table():
    df = _table(2, 1)
    split = make_splits("final")[0]
    with pytest.raises(ValueError, match="aligned"):
        check_split(df, assign_roles(df, split).iloc[1:], split, _names(2))


# ------------------------------------------------------------------ end to end, tiny trees

def _keep(root: Path, keep) -> None:
    """Rewrite the tree's table with the rows ``keep(df)`` selects (the audio stays)."""
    csv = root / META_RELPATH
    df = pd.read_csv(csv)
    df[keep(df)].to_csv(csv, index=False)


_REFUSED = {  # case -> (rows kept, mode, what the message says)
    "class absent from training": (
        lambda df: ~((df["category"] == "whistle") & df["fold"].isin([1, 2, 3])), "final",
        r"test5-val4: 1 of 5 class\(es\) without a clip in training folds 1,2,3 \(24 clips\): "
        r"'whistle' \(4 scored\)"),
    "empty fold 5": (lambda df: df["fold"] != 5, "final", r"test5-val4: test fold 5 holds no clips"),
    "two folds": (lambda df: df["fold"] <= 2, "cv", r"test1-val2: training folds 3,4,5 hold no clips"),
    "one class": (lambda df: df["category"] == "low_hum", "final",
                  r"test5-val4: the dataset has one class \('low_hum'\)"),
    "fewer test clips than classes": (
        lambda df: (df["fold"] != 5) | df["filename"].isin(df.loc[df["fold"] == 5, "filename"][:3]),
        "final", r"test5-val4: test fold 5 holds 3 clip\(s\) for 5 classes"),
}


@pytest.mark.parametrize("case", list(_REFUSED))
def test_a_run_is_refused_before_anything_is_written(case, writable_root, tmp_path):
    keep, mode, message = _REFUSED[case]
    _keep(writable_root, keep)
    with pytest.raises(SplitError, match=message) as err:
        run_experiment(writable_root, artifacts_dir=tmp_path / "art", mode=mode, **TINY)
    assert str(err.value).startswith(f"{writable_root}: refused, mode {mode!r}")
    assert not (tmp_path / "art").exists()  # no run folder, no metrics, not even a cache


def test_an_allowed_run_carries_its_warnings_everywhere(writable_root, tmp_path, torch_one_thread):
    from esc50kit.chain import write_summary

    _keep(writable_root, _REFUSED["class absent from training"][0])
    art = tmp_path / "art"
    run = run_experiment(writable_root, artifacts_dir=art, mode="final", run_name="r",
                         allow_degenerate=True, **TINY)
    warning = ("test5-val4: 1 of 5 class(es) without a clip in training folds 1,2,3 (24 clips): "
               "'whistle' (4 scored); the model never learns them, so every scored clip of them "
               "counts as an error")
    on_disk = json.loads((run.run_dir / "metrics.json").read_text())
    assert on_disk["warnings"] == [warning] == score_warnings(run.metrics)
    assert on_disk["splits"][0]["warnings"] == [warning]
    assert json.loads((run.run_dir / "test5-val4" / "metrics.json").read_text())["warnings"] == [warning]
    lines = (run.run_dir / "summary.md").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("**test accuracy"))
    assert lines[at + 1] == f"WARNING: {warning}"
    assert warnings_markdown(run.metrics) == f"\n\n**WARNING**: {warning}"
    # resumed: read back, the same warnings
    again = run_experiment(writable_root, artifacts_dir=art, mode="final", run_name="r",
                           allow_degenerate=True, **TINY)
    assert again.metrics["warnings"] == [warning]
    # the chain's summary
    out = tmp_path / "report"
    out.mkdir()
    summary = write_summary(out, data_dir=str(writable_root), artifacts_dir=str(art), profile="tiny",
                            parameters={"run_name": "r"}, seconds={}, total_seconds=1.0)
    assert summary["warnings"] == [warning]
    assert json.loads((out / "summary.json").read_text())["warnings"] == [warning]
    md = (out / "summary.md").read_text().splitlines()
    at = next(i for i, line in enumerate(md) if line.startswith("- test accuracy"))
    assert md[at + 1] == f"- WARNING: {warning}"
    # notebook 04's headline cell shows it next to the number
    shown = _headline(load_run(run.run_dir))
    assert "**test accuracy" in shown and shown.endswith(f"**WARNING**: {warning}")


def test_a_sound_run_has_no_warnings(synthetic_root, tmp_path, torch_one_thread):
    run = run_experiment(synthetic_root, artifacts_dir=tmp_path, mode="final", **TINY)
    assert run.metrics["warnings"] == [] and run.metrics["splits"][0]["warnings"] == []
    assert "WARNING" not in (run.run_dir / "summary.md").read_text()
    assert warnings_markdown(run.metrics) == ""
    assert "WARNING" not in _headline(run)


def test_a_one_class_run_allowed_says_why_it_scores_100(writable_root, tmp_path, torch_one_thread):
    _keep(writable_root, _REFUSED["one class"][0])
    run = run_experiment(writable_root, artifacts_dir=tmp_path, mode="final",
                         allow_degenerate=True, **TINY)
    assert run.metrics["overall_accuracy"] == 1.0
    assert run.metrics["warnings"] == [
        "test5-val4: the dataset has one class ('low_hum'): every prediction is that class, "
        "so any model scores 100%"]


def _headline(run) -> str:
    """Run notebook 04's headline cell on ``run``; returns the markdown it displays."""
    from esc50kit import evaluation

    nb = json.loads((REPO / "notebooks" / "04_Evaluation.ipynb").read_text())
    cell = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
                and "accuracy" in "".join(c["source"]) and "display(Markdown(" in "".join(c["source"]))
    shown = []
    namespace = {"run": run, "evaluation": evaluation, "display": shown.append,
                 "Markdown": lambda text: text}
    exec(compile(cell, "04_Evaluation headline", "exec"), namespace)
    return next(s for s in shown if isinstance(s, str))


def _train_cv(*args: str) -> int:
    spec = importlib.util.spec_from_file_location("train_cv", REPO / "benchmarks" / "train_cv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(["--profile", "tiny", "--mode", "final", "--epochs", "1", "--threads", "1",
                        "--no-progress", *args])


def test_train_cv_allowed_prints_the_warning_next_to_the_score(writable_root, tmp_path, capsys,
                                                               torch_one_thread):
    _keep(writable_root, _REFUSED["class absent from training"][0])
    assert _train_cv("--data", str(writable_root), "--artifacts", str(tmp_path),
                     "--allow-degenerate") == 0
    out = capsys.readouterr().out.strip().splitlines()
    at = next(i for i, line in enumerate(out) if line.startswith("test accuracy mean +- std"))
    assert out[at + 1].startswith("WARNING: test5-val4: 1 of 5 class(es) without a clip")
    assert out[-2] == "WARNING: 1 warning(s) above: the score below means little"
    assert out[-1].startswith("overall test accuracy: ")
