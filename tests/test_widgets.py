"""Explorers: the live widgets respond to their controls; the static twins render headless."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from esc50kit import widgets  # noqa: E402
from esc50kit.data import load_metadata  # noqa: E402
from esc50kit.features import FeatureConfig  # noqa: E402

CONFIG = FeatureConfig(sr=16000, n_fft=512, hop_length=256, n_mels=32)


@pytest.fixture(scope="module")
def table(synthetic_root):
    return load_metadata(synthetic_root)


def test_clip_explorer_follows_the_category(table):
    explorer = widgets.ClipExplorer(table, config=CONFIG)
    other = [c for c in explorer.category.options if c != explorer.category.value][0]
    explorer.category.value = other
    expected = table.loc[table["category"] == other, "filename"].tolist()
    assert list(explorer.clip.options) == expected
    assert explorer.clip.value == expected[0]


def test_static_explorer_displays_without_widgets(table, capsys):
    assert widgets.clip_explorer(table, config=CONFIG, interactive=False, n_static=2) is None


def test_augmentation_examples_keep_length_and_change_the_sound(table):
    from esc50kit.audio import load_audio

    y = load_audio(table["path"].iloc[0], sr=CONFIG.sr)
    examples = widgets.augment_examples(y, sr=CONFIG.sr, seed=0)
    assert len(examples) == 6
    for name, v in examples.items():
        assert v.shape == y.shape, name
        assert np.isfinite(v).all(), name
        if name != "original":
            assert not np.allclose(v, y), name


def test_static_playground_returns_a_figure(table):
    fig = widgets.augmentation_playground(table, config=CONFIG, interactive=False)
    assert len([ax for ax in fig.axes if ax.axison]) == 7  # 6 waveform variants + SpecAugment


def test_uploaded_file_values_are_read_in_both_ipywidgets_formats():
    v8 = ({"name": "a.wav", "content": memoryview(b"abc")},)
    v7 = {"a.wav": {"name": "a.wav", "content": b"abc"}}
    assert widgets._uploaded_files(v8) == [("a.wav", b"abc")]
    assert widgets._uploaded_files(v7) == [("a.wav", b"abc")]
