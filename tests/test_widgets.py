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


def test_spec_augment_masks_take_the_mean_level_not_the_loudest():
    rng = np.random.default_rng(0)
    S = rng.uniform(-90, -30, size=(32, 200)).astype(np.float32)  # a dB picture
    out = widgets.spec_augment_example(S, seed=1)
    masked = out != S
    assert masked.any()
    assert np.allclose(out[masked], S.mean(), atol=1e-3)  # the mean, never 0 dB (the brightest)
    assert out.max() <= S.max()


def test_static_playground_has_a_player_for_every_waveform(table, monkeypatch):
    from IPython import display as ipd

    shown = []
    monkeypatch.setattr(ipd, "display", lambda *objs, **kw: shown.extend(objs))
    widgets.augmentation_playground(table, config=CONFIG, interactive=False)
    players = [o for o in shown if isinstance(o, ipd.Audio)]
    titles = [o.data for o in shown if isinstance(o, ipd.HTML)]
    assert len(players) == 6  # the original and all five augmentations, pitch, gain and shift included
    assert any("pitch" in t for t in titles) and any("gain" in t for t in titles) \
        and any("time shift" in t for t in titles)


def test_upload_error_names_the_users_file_not_the_temporary_copy():
    msg = widgets.upload_error("notes.txt", "LibsndfileError: Error opening '/tmp/tmpab12.wav': "
                               "Format not recognised.", temp_path="/tmp/tmpab12.wav")
    assert "/tmp" not in msg and ".." not in msg
    assert msg.startswith("notes.txt could not be read as audio (Error opening 'notes.txt': Format not recognised)")
    assert "WAV, FLAC or OGG" in msg


def test_prediction_table_shows_three_decimals(table, monkeypatch):
    from IPython import display as ipd

    from esc50kit.audio import load_audio
    from esc50kit.predict import Prediction

    shown = []
    monkeypatch.setattr(ipd, "display", lambda *objs, **kw: shown.extend(objs))
    y = load_audio(table["path"].iloc[0], sr=CONFIG.sr)
    pred = Prediction(source="a.wav", seconds=5.0, windows=[(0.0, 5.0)],
                      probs=np.array([[0.123456, 0.876544]]), class_names=["dog", "rain"])
    widgets.show_prediction(pred, y, config=CONFIG, top=2)
    html = next(o for o in shown if hasattr(o, "to_html")).to_html()
    assert "0.877" in html and "0.876544" not in html
