"""The metadata table: loading, subsets, and the errors a broken tree must raise."""
from __future__ import annotations

import pandas as pd
import pytest
import soundfile as sf

from esc50kit.data import (
    ESC50_COLUMNS,
    META_RELPATH,
    DatasetError,
    class_names,
    load_metadata,
    summarize,
)
from synthetic import CLASS_NAMES, make_synthetic_dataset


def _rewrite(root, edit):
    """Apply ``edit`` to the table of ``root`` and write it back."""
    path = root / META_RELPATH
    df = pd.read_csv(path, dtype={"src_file": str, "take": str})
    edit(df).to_csv(path, index=False)


def test_synthetic_tree_loads_with_official_columns(synthetic_root):
    df = load_metadata(synthetic_root)
    assert list(df.columns[: len(ESC50_COLUMNS)]) == list(ESC50_COLUMNS)
    assert len(df) == 50
    assert df.groupby("src_file")["fold"].nunique().max() == 1  # a source stays in one fold
    assert (df.groupby("src_file").size() == 2).all()  # several takes per source
    info = sf.info(df["path"].iloc[0])
    assert (info.samplerate, info.channels, info.frames) == (44100, 1, 220500)
    assert class_names(df) == list(CLASS_NAMES[:5])
    assert sorted(df["label"].unique()) == list(range(5))


def test_synthetic_classes_are_spectrally_different(synthetic_root):
    """Classes differ in their spectra: a nearest-centroid rule on 24 log band energies,
    fitted on four folds, names the class of every clip of the fifth."""
    import numpy as np

    df = load_metadata(synthetic_root)
    edges = np.geomspace(50, 20000, 25)
    feats = []
    for path in df["path"]:
        y, sr = sf.read(path)
        power = np.abs(np.fft.rfft(y)) ** 2
        freqs = np.fft.rfftfreq(len(y), 1 / sr)
        bands = [power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])]
        feats.append(np.log(np.asarray(bands) + 1e-9))
    feats = np.asarray(feats)
    labels = df["label"].to_numpy()
    for fold in sorted(df["fold"].unique()):
        test = (df["fold"] == fold).to_numpy()
        centroids = np.stack([feats[~test & (labels == k)].mean(0) for k in range(5)])
        dist = ((feats[test][:, None, :] - centroids[None]) ** 2).sum(-1)
        assert (dist.argmin(1) == labels[test]).all(), f"fold {fold}"


def test_synthetic_generator_is_deterministic(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", n_classes=2, clips_per_class=10, seed=3)
    b = make_synthetic_dataset(tmp_path / "b", n_classes=2, clips_per_class=10, seed=3)
    for f in sorted((a / "audio").iterdir()):
        assert f.read_bytes() == (b / "audio" / f.name).read_bytes()


def test_esc10_subset_selects_flagged_rows(synthetic_root):
    df = load_metadata(synthetic_root, subset="esc10")
    assert df["esc10"].all() and 0 < len(df) < 50
    assert sorted(df["label"].unique()) == list(range(df["target"].nunique()))


def test_unknown_subset_is_named(synthetic_root):
    with pytest.raises(DatasetError, match=r"unknown subset 'esc5'.*esc10"):
        load_metadata(synthetic_root, subset="esc5")


def test_esc50_subset_refuses_a_partial_table(synthetic_root):
    with pytest.raises(DatasetError, match="subset='esc50'"):
        load_metadata(synthetic_root, subset="esc50")


def test_summary_reports_counts(synthetic_root):
    s = summarize(load_metadata(synthetic_root))
    assert (s.n_clips, s.n_classes, s.n_folds) == (50, 5, 5)
    assert s.kind == "custom"  # 10 clips per class is not the ESC-50 layout of 40
    assert "50 clips, 5 classes, 5 folds" in str(s)


def test_missing_table_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="download_data.py"):
        load_metadata(tmp_path)


def test_missing_column_is_named(writable_root):
    _rewrite(writable_root, lambda df: df.drop(columns=["src_file"]))
    with pytest.raises(DatasetError, match="src_file"):
        load_metadata(writable_root)


def test_unknown_fold_is_named(writable_root):
    def edit(df):
        df.loc[0, "fold"] = 7
        return df

    _rewrite(writable_root, edit)
    with pytest.raises(DatasetError, match=r"unknown fold\(s\) \[7\]"):
        load_metadata(writable_root)


def test_duplicate_file_is_named(writable_root):
    _rewrite(writable_root, lambda df: pd.concat([df, df.iloc[[0]]]))
    with pytest.raises(DatasetError, match="duplicate"):
        load_metadata(writable_root)


def test_label_disagreeing_with_filename_is_named(writable_root):
    def edit(df):
        df.loc[0, "target"] = (df.loc[0, "target"] + 1) % 5
        return df

    _rewrite(writable_root, edit)
    with pytest.raises(DatasetError, match="disagree with file names"):
        load_metadata(writable_root)


def test_missing_audio_is_named(writable_root):
    victim = sorted((writable_root / "audio").iterdir())[3]
    victim.unlink()
    with pytest.raises(DatasetError, match=victim.name):
        load_metadata(writable_root)
    assert len(load_metadata(writable_root, check_audio=False)) == 50


@pytest.mark.parametrize(("column", "value"), [("fold", 1.5), ("fold", "one"), ("target", None)])
def test_a_fold_or_target_that_is_not_a_whole_number_names_its_row(writable_root, column, value):
    def edit(df):
        df[column] = df[column].astype(object)
        df.loc[4, column] = value
        return df

    _rewrite(writable_root, edit)
    name = pd.read_csv(writable_root / META_RELPATH)["filename"].iloc[4]
    with pytest.raises(DatasetError, match=rf"'{column}' must hold whole numbers; 1 row\(s\) "
                                           rf"do not: row 5 \({name}: {value if value else 'nan'}\)"):
        load_metadata(writable_root)


def test_whole_numbers_written_as_floats_are_read_as_integers(writable_root):
    _rewrite(writable_root, lambda df: df.assign(fold=df["fold"].astype(float)))  # 1.0, 2.0, ...
    df = load_metadata(writable_root)
    assert df["fold"].dtype == "int64" and sorted(df["fold"].unique()) == [1, 2, 3, 4, 5]


def test_a_table_of_only_a_header_says_it_lists_no_clips(writable_root):
    (writable_root / META_RELPATH).write_text(",".join(ESC50_COLUMNS) + "\n")
    with pytest.raises(DatasetError, match="header but no rows: it lists no clips"):
        load_metadata(writable_root)
