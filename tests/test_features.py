"""Audio loading, log-mel features, the feature cache and the normaliser, by property."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from esc50kit.audio import AudioReadError, load_audio
from esc50kit.cache import load_or_compute
from esc50kit.data import load_metadata
from esc50kit.features import (
    FeatureConfig,
    Normalizer,
    compute,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
    mfcc,
)
from esc50kit.splits import assign_roles, make_splits

SR = 22050


def _sine(freq: float, *, sr: int = SR, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---------------------------------------------------------------- log-mel


@pytest.mark.parametrize("freq", [250.0, 1000.0, 4000.0])
def test_sine_peaks_in_the_mel_band_that_contains_it(freq):
    S = log_mel(_sine(freq), sr=SR, n_mels=64)  # (n_mels, frames)
    centres = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(SR / 2), 64 + 2))[1:-1]
    assert S.shape[0] == 64
    assert int(S.mean(axis=1).argmax()) == int(np.abs(centres - freq).argmin())


def test_full_scale_sine_reads_about_zero_db():
    S = log_mel(_sine(1000.0, amp=1.0), sr=SR)
    assert -3.0 < S.max() <= 0.5


@settings(max_examples=8, deadline=None)
@given(
    n_mels=st.integers(8, 96),
    log2_fft=st.integers(8, 11),
    hop=st.sampled_from([128, 256, 320, 512]),
    samples=st.integers(2048, 8000),
)
def test_shapes_follow_the_parameters(n_mels, log2_fft, hop, samples):
    n_fft = 2**log2_fft
    y = np.random.default_rng(0).uniform(-0.5, 0.5, samples).astype(np.float32)
    S = log_mel(y, sr=SR, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    assert S.shape == (n_mels, 1 + samples // hop)
    assert S.dtype == np.float32
    batch = log_mel(np.stack([y, y]), sr=SR, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    assert batch.shape == (2, n_mels, 1 + samples // hop)
    np.testing.assert_allclose(batch[1], S, atol=1e-4)


@pytest.mark.parametrize(
    "config",
    [FeatureConfig(), FeatureConfig(kind="mfcc", n_mfcc=20), FeatureConfig(n_mels=64, hop_length=256),
     FeatureConfig(resize=(128, 128)), FeatureConfig(duration=1.0, n_fft=2048)],
)
def test_config_shape_matches_compute(config):
    y = np.zeros(config.n_samples, dtype=np.float32)
    y[::97] = 0.3
    assert compute(y, config).shape == config.shape


def test_log_mel_matches_the_librosa_formula():
    librosa = pytest.importorskip("librosa")
    y = np.random.default_rng(1).uniform(-0.3, 0.3, SR).astype(np.float32)
    ours = log_mel(y, sr=SR, n_fft=1024, hop_length=512, n_mels=128, fmin=20.0)
    window_sum = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)).sum()
    S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=512, n_mels=128,
                                       fmin=20.0, norm=None)
    ref = librosa.power_to_db(S / (window_sum / 2) ** 2, ref=1.0, amin=1e-10, top_db=None)
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    basis = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=128, fmin=20.0, fmax=SR / 2, norm=None)
    np.testing.assert_allclose(mel_filterbank(sr=SR, n_fft=1024, n_mels=128, fmin=20.0, fmax=SR / 2),
                               basis, atol=1e-6)


def test_silent_clip_gives_finite_features():
    y = np.zeros(SR, dtype=np.float32)
    S = log_mel(y, sr=SR, floor_db=-100.0)
    assert np.isfinite(S).all() and np.all(S == pytest.approx(-100.0))
    assert np.isfinite(mfcc(y, sr=SR)).all()


# ---------------------------------------------------------------- audio loading


def test_stereo_and_22k_inputs_are_converted(tmp_path):
    left, right = _sine(440.0, sr=SR, seconds=2.0), _sine(880.0, sr=SR, seconds=2.0)
    path = tmp_path / "stereo22k.wav"
    sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    same_rate = load_audio(path, sr=SR, duration=None)
    assert same_rate.shape == (2 * SR,) and same_rate.dtype == np.float32
    np.testing.assert_allclose(same_rate, (left + right) / 2, atol=1e-6)
    up = load_audio(path, sr=44100, duration=5.0)  # resampled, then padded with silence
    assert up.shape == (5 * 44100,)
    assert np.all(up[3 * 44100 :] == 0)
    wrapped = load_audio(path, sr=SR, duration=3.0, pad_mode="wrap")
    np.testing.assert_allclose(wrapped[2 * SR :], same_rate[:SR], atol=1e-6)


def test_pcm16_input_is_scaled_to_unit_range(tmp_path):
    path = tmp_path / "pcm16.wav"
    sf.write(path, _sine(1000.0, amp=0.5, sr=44100), 44100, subtype="PCM_16")
    y = load_audio(path, sr=SR, duration=1.0)
    assert y.shape == (SR,)
    assert 0.45 < np.abs(y).max() < 0.55


def test_corrupt_file_raises_an_error_naming_it(tmp_path):
    bad = tmp_path / "1-999-A-0.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(AudioReadError, match="1-999-A-0.wav"):
        load_audio(bad)


# ---------------------------------------------------------------- the cache

SMALL = FeatureConfig(duration=1.0, n_mels=32)


def test_corrupt_file_in_a_table_raises_or_is_skipped(writable_root, tmp_path):
    df = load_metadata(writable_root)
    victim = df["filename"].iloc[3]
    (writable_root / "audio" / victim).write_bytes(b"not a wav file at all")
    with pytest.raises(AudioReadError, match=victim):
        load_or_compute(df, SMALL, cache_dir=tmp_path / "c", n_jobs=2, progress=False)
    with pytest.warns(RuntimeWarning, match=victim):
        fs = load_or_compute(df, SMALL, cache_dir=tmp_path / "c", n_jobs=2, progress=False,
                             on_error="skip")
    assert fs.skipped == [victim]
    assert fs.X.shape == (len(df) - 1, *SMALL.shape)
    assert victim not in fs.filenames
    assert fs.rows(df)["filename"].tolist() == fs.filenames
    # the cache remembers the skipped file: 'skip' reuses it, 'raise' still names it
    again = load_or_compute(df, SMALL, cache_dir=tmp_path / "c", progress=False, on_error="skip")
    assert again.skipped == [victim] and again.path == fs.path
    with pytest.raises(AudioReadError, match=victim):
        load_or_compute(df, SMALL, cache_dir=tmp_path / "c", progress=False)


def test_features_are_row_aligned_and_parallel_equals_serial(synthetic_root, tmp_path):
    df = load_metadata(synthetic_root).sample(frac=1.0, random_state=0).head(20)
    par = load_or_compute(df, SMALL, cache_dir=None, n_jobs=2, progress=False)
    ser = load_or_compute(df, SMALL, cache_dir=None, n_jobs=1, progress=False)
    assert par.X.dtype == np.float16 and par.filenames == df["filename"].tolist()
    np.testing.assert_array_equal(par.X, ser.X)
    one = compute(load_audio(df["path"].iloc[5], sr=SMALL.sr, duration=SMALL.duration), SMALL)
    np.testing.assert_allclose(par.X[5], one, atol=0.05)


def test_changed_parameter_or_file_misses_the_cache(writable_root, tmp_path):
    df = load_metadata(writable_root).head(10)
    a = load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False)
    b = load_or_compute(df, FeatureConfig(duration=1.0, n_mels=24), cache_dir=tmp_path, progress=False)
    assert a.path != b.path and b.X.shape[1] == 24
    assert load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False).path == a.path
    # the same file list in another order is another table: another cache file
    assert load_or_compute(df.iloc[::-1], SMALL, cache_dir=tmp_path, progress=False).path != a.path
    # a changed clip (same name, same size) is another input
    path = df["path"].iloc[0]
    y, sr = sf.read(path, dtype="int16")
    sf.write(path, -y, sr, subtype="PCM_16")
    c = load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False)
    assert c.path != a.path


def test_truncated_cache_file_is_rebuilt(synthetic_root, tmp_path):
    df = load_metadata(synthetic_root).head(8)
    first = load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False)
    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="unusable"):
        rebuilt = load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(rebuilt.X, first.X)
    assert rebuilt.path.stat().st_size == len(data)


def test_flipped_bytes_in_cache_fail_the_checksum(synthetic_root, tmp_path):
    df = load_metadata(synthetic_root).head(4)
    first = load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False)
    data = bytearray(first.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="unusable"):
        rebuilt = load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(rebuilt.X, first.X)


# ---------------------------------------------------------------- configuration and normaliser


def test_config_round_trip_and_key():
    c = FeatureConfig(n_mels=64, resize=(64, 64))
    assert FeatureConfig.from_dict(c.to_dict()) == c
    assert c.key() == FeatureConfig(n_mels=64, resize=[64, 64]).key()
    assert c.key() != FeatureConfig(n_mels=64).key()
    with pytest.raises(ValueError, match="kind"):
        FeatureConfig(kind="cqt")
    with pytest.raises(ValueError, match="unknown"):
        FeatureConfig.from_dict({"n_mel": 64})


def test_normaliser_statistics_ignore_a_changed_test_clip(writable_root, tmp_path):
    df = load_metadata(writable_root)
    roles = assign_roles(df, make_splits("cv")[0])
    train = (roles == "train").to_numpy()

    def stats() -> tuple[Normalizer, Normalizer]:
        X = load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False).X
        return Normalizer.fit(X[train]), Normalizer.fit(X)

    fitted, all_rows = stats()
    test_clip = df.loc[roles == "test", "path"].iloc[0]
    noise = np.random.default_rng(0).uniform(-0.9, 0.9, 44100 * 5).astype(np.float32)
    sf.write(test_clip, noise, 44100, subtype="PCM_16")
    refitted, all_rows_after = stats()
    np.testing.assert_array_equal(fitted.mean, refitted.mean)
    np.testing.assert_array_equal(fitted.std, refitted.std)
    # the check has teeth: statistics over every row do move
    assert not np.allclose(all_rows.mean, all_rows_after.mean)


def test_normaliser_transform_and_save_load(tmp_path):
    X = np.random.default_rng(0).normal(3.0, 2.0, (20, 16, 30)).astype(np.float16)
    norm = Normalizer.fit(X)
    Z = norm.transform(X)
    assert Z.shape == X.shape and Z.dtype == np.float32
    np.testing.assert_allclose(Z.mean(axis=(0, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(Z.std(axis=(0, 2)), 1.0, atol=1e-3)
    loaded = Normalizer.load(norm.save(tmp_path / "norm.json"))
    np.testing.assert_array_equal(loaded.transform(X[0]), norm.transform(X[0]))
    with pytest.raises(ValueError, match="16"):
        norm.transform(np.zeros((2, 8, 30)))
    assert len(norm.to_dict()["mean"]) == 16 and norm.to_dict()["n_fit"] == 20


# ---------------------------------------------------------------- augmented variants


def test_variants_are_cached_per_spec_and_depend_only_on_their_clip(synthetic_root, tmp_path):
    from esc50kit.variants import VariantSpec

    df = load_metadata(synthetic_root).head(6)
    spec = VariantSpec(copies=2, transforms=("gain", "time_shift"), seed=3)
    v = load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False, variants=spec)
    assert v.X.shape == (6, 2, *SMALL.shape) and v.X.dtype == np.float16
    assert v.path.name.startswith("variants-")
    orig = load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False)
    assert orig.path != v.path
    # the copies are new versions of each clip, not the clip itself, nor each other
    assert not np.array_equal(v.X[:, 0], orig.X) and not np.array_equal(v.X[:, 0], v.X[:, 1])
    # a clip's copies depend on the spec's seed and its own name, not on the other rows
    alone = load_or_compute(df.iloc[[4, 2]], SMALL, cache_dir=None, progress=False, variants=spec)
    np.testing.assert_array_equal(alone.X, v.X[[4, 2]])
    # read back from the cache; another spec is another file
    assert load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False, variants=spec).path == v.path
    other = load_or_compute(df, SMALL, cache_dir=tmp_path, progress=False,
                            variants=VariantSpec(copies=2, transforms=("gain", "time_shift"), seed=4))
    assert other.path != v.path and not np.array_equal(other.X, v.X)


def test_variant_spec_rejects_unknown_transforms():
    from esc50kit.variants import VariantSpec

    with pytest.raises(ValueError, match="reverse"):
        VariantSpec(transforms=("reverse",))
    with pytest.raises(ValueError, match="copies"):
        VariantSpec(copies=0)


def test_waveform_kind_is_the_resampled_clip_as_one_row(tmp_path):
    cfg = FeatureConfig(sr=8000, duration=1.0, kind="waveform")
    assert cfg.shape == (1, 8000)
    y = _sine(440.0, sr=SR, seconds=1.0)
    path = tmp_path / "a.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    from esc50kit.features import extract

    x = extract(path, cfg)
    assert x.shape == cfg.shape and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], load_audio(path, sr=8000, duration=1.0))
    assert compute(np.zeros((3, 8000), np.float32), cfg).shape == (3, 1, 8000)
    with pytest.raises(ValueError, match="resize"):
        FeatureConfig(kind="waveform", resize=(128, 128))
