"""Augmentation: waveform transforms, SpecAugment, mixup, and leak-safe offline copies."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from esc50kit.augment import (
    add_noise,
    between_class,
    expand_offline,
    gain,
    mixup,
    pitch_shift,
    spec_augment,
    time_shift,
    time_stretch,
    warp,
)
from esc50kit.data import load_metadata
from esc50kit.splits import LeakageError, assign_roles, audit, make_splits

# ---------------------------------------------------------------- waveform transforms


def _tone(n: int = 8000, sr: int = 8000) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)


def test_add_noise_hits_the_requested_snr():
    y = _tone()
    noisy = add_noise(y, snr_db=10.0, rng=np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(y**2) / np.mean((noisy - y) ** 2))
    assert noisy.shape == y.shape and abs(snr - 10.0) < 0.5
    assert np.all(add_noise(np.zeros(100), snr_db=0.0, rng=np.random.default_rng(0)) == 0)


def test_gain_and_time_shift():
    y = _tone()
    np.testing.assert_allclose(gain(y, db=-6.0), y * 10 ** (-6 / 20), rtol=1e-6)
    shifted = time_shift(y, shift=100)
    assert shifted.shape == y.shape and np.all(shifted[:100] == 0)
    np.testing.assert_array_equal(shifted[100:], y[:-100])
    np.testing.assert_array_equal(time_shift(y, shift=-100, mode="roll"), np.roll(y, -100))


def test_stretch_and_pitch_keep_the_length():
    y = _tone()
    assert time_stretch(y, rate=1.2).shape == y.shape
    assert time_stretch(y, rate=2.0, keep_length=False).shape[0] == pytest.approx(y.shape[0] / 2, abs=2)
    assert pitch_shift(y, sr=8000, n_steps=2.0).shape == y.shape


# ---------------------------------------------------------------- batch transforms


def test_spec_augment_masks_and_keeps_shape():
    x = torch.randn(6, 1, 40, 50) + 10.0  # no natural zeros
    g = torch.Generator().manual_seed(0)
    out = spec_augment(x, freq_masks=1, freq_width=8, time_masks=1, time_width=10, generator=g)
    assert out.shape == x.shape and out.dtype == x.dtype
    masked = out == 0
    assert masked.any() and not masked.all()
    assert torch.equal(out[~masked], x[~masked])  # what is not masked is untouched
    assert not (x == 0).any()  # the input is not changed in place
    # every masked cell lies in a fully masked mel row or a fully masked frame column
    rows = masked.all(dim=-1, keepdim=True)
    cols = masked.all(dim=-2, keepdim=True)
    assert torch.equal(masked, rows | cols)
    again = spec_augment(x, freq_masks=1, freq_width=8, time_masks=1, time_width=10,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_spec_augment_on_cuda_matches_cpu():
    x = torch.randn(4, 1, 32, 40) + 10.0
    cpu = spec_augment(x, generator=torch.Generator().manual_seed(3))
    gpu = spec_augment(x.cuda(), generator=torch.Generator().manual_seed(3))
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu)


def test_mixup_repeats_with_a_seed_and_keeps_soft_targets():
    x = torch.randn(8, 1, 16, 20)
    y = torch.nn.functional.one_hot(torch.arange(8) % 4, 4).float()
    a = mixup(x, y, alpha=0.4, generator=torch.Generator().manual_seed(7))
    b = mixup(x, y, alpha=0.4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == x.shape and a[1].shape == y.shape
    torch.testing.assert_close(a[1].sum(dim=1), torch.ones(8))
    assert not torch.equal(a[0], x)
    with pytest.raises(ValueError, match="one_hot"):
        mixup(x, torch.arange(8), alpha=0.4)


def _normalised(db: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """dB log-mels (batch, 1, n_mels, frames) normalised per mel bin."""
    return ((db - torch.tensor(mean)[:, None]) / torch.tensor(std)[:, None]).float()


def _decibels(x: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    return x * torch.tensor(std).float()[:, None] + torch.tensor(mean).float()[:, None]


def test_between_class_mixes_power_as_waveforms_add():
    mean, std = np.linspace(-70, -30, 6), np.linspace(8, 12, 6)
    db = torch.empty(16, 1, 6, 10).uniform_(-90, -10, generator=torch.Generator().manual_seed(0))
    y = torch.eye(16)  # one class per clip: a target's non-zero entries name the partner
    x = _normalised(db, mean, std)
    a = between_class(x, y, alpha=1.0, mean=mean, std=std,
                      generator=torch.Generator().manual_seed(3))
    b = between_class(x, y, alpha=1.0, mean=mean, std=std,
                      generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and a[0].shape == x.shape and a[0].dtype == x.dtype
    torch.testing.assert_close(a[1].sum(dim=1), torch.ones(16))
    out = _decibels(a[0], mean, std)
    for i in range(16):  # a mix of powers lies between its two sounds, bin by bin
        pair = db[a[1][i] > 0]  # (1 or 2, 1, n_mels, frames)
        assert (out[i] >= pair.amin(0) - 1e-3).all() and (out[i] <= pair.amax(0) + 1e-3).all()
    c = between_class(x[:, 0], y, alpha=1.0, mean=mean, std=std,  # (batch, mels, frames) too
                      generator=torch.Generator().manual_seed(3))
    assert torch.equal(c[0], a[0][:, 0]) and torch.equal(c[1], a[1])
    same = x[:1].repeat(8, 1, 1, 1)  # one sound repeated mixes into itself at any ratio
    mixed, _ = between_class(same, y[:8], alpha=1.0, mean=mean, std=std)
    torch.testing.assert_close(mixed, same, atol=1e-4, rtol=0)


def test_between_class_gives_a_quiet_sound_its_share():
    """At equal loudness the sounds mix at the target ratio r; a sound 40 dB quieter is
    raised by the loudness correction, so that r of the target is r of what is heard."""
    mean, std = np.zeros(4), np.ones(4)
    loud = torch.full((1, 1, 4, 6), -20.0)
    quiet = torch.full((1, 1, 4, 6), -60.0)
    x = torch.cat([loud, quiet])  # (2, 1, 4, 6) in dB (mean 0, std 1: normalised = dB)
    y = torch.eye(2)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        out, target = between_class(x, y, alpha=1.0, mean=mean, std=std, generator=g)
        if target[0, 0] < 1:  # the loud clip was mixed with the quiet one
            break
    r = float(target[0, 0])
    p = 1 / (1 + 10 ** (40 / 20) * (1 - r) / r)
    power = (p**2 * 1e-2 + (1 - p) ** 2 * 1e-6) / (p**2 + (1 - p) ** 2)
    torch.testing.assert_close(out[0], torch.full((1, 4, 6), 10 * np.log10(power)).float())
    # the quiet sound's weight (1 - p) far exceeds its target share (1 - r)
    assert 1 - p > 1 - r
    with pytest.raises(ValueError, match="alpha"):
        between_class(x, y, alpha=0, mean=mean, std=std)


def test_warp_is_identity_when_off_and_moves_content_by_whole_bins():
    x = torch.randn(5, 1, 32, 40)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(warp(x, max_stretch=0, max_shift=0, generator=g), x)
    shifted = warp(x[:, 0], max_shift=3, max_stretch=0, generator=g)  # (batch, n_mels, frames)
    assert shifted.shape == (5, 32, 40)
    for clip, out in zip(x[:, 0], shifted):  # each clip moved by one whole shift in -3..3
        matches = [s for s in range(-3, 4)
                   if torch.equal(out, torch.roll(clip, -s, 0) * _inside(32, s)[:, None])]
        assert len(matches) == 1


def _inside(n: int, shift: int) -> torch.Tensor:
    """1 for the bins that read a bin of the image when shifted by ``shift``, else 0."""
    src = torch.arange(n) + shift
    return ((src >= 0) & (src < n)).float()


def test_warp_stretches_time_within_its_range_and_repeats():
    x = torch.zeros(64, 1, 8, 101)
    x[..., 40:61] = 1.0  # a 21-frame sound in the middle
    g = torch.Generator().manual_seed(1)
    out = warp(x, max_stretch=0.25, max_shift=0, generator=g)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, warp(x, max_stretch=0.25, max_shift=0,
                                 generator=torch.Generator().manual_seed(1)))
    # stretched by r in [0.8, 1.25], the sound lasts 21 r frames, give or take an edge frame
    r = out[:, 0, 0].sum(dim=-1) / 21  # (batch,); the sound never leaves the image here
    assert r.min() >= 0.8 - 1 / 21 and r.max() <= 1.25 + 1 / 21
    assert r.std() > 0.05  # factors differ from clip to clip
    with pytest.raises(ValueError, match="max_stretch"):
        warp(x, max_stretch=-0.1, max_shift=0)


# ---------------------------------------------------------------- offline expansion


def test_offline_copy_of_a_test_clip_in_training_is_caught(synthetic_root, tmp_path):
    df = load_metadata(synthetic_root)
    roles = assign_roles(df, make_splits("cv")[0])
    train_rows = df[roles == "train"].head(2)
    test_rows = df[roles == "test"].head(1)

    good = expand_offline(train_rows, out_dir=tmp_path / "good", copies_per_clip=2, seed=0,
                          progress=False)
    assert len(good) == 4 and good["filename"].is_unique
    for col in ("src_file", "fold", "target", "category", "esc10", "take"):
        assert good[col].tolist() == np.repeat(train_rows[col].to_numpy(), 2).tolist()
    assert set(good["origin"]) == set(train_rows["filename"])
    assert all(sf.info(p).samplerate == 44100 for p in good["path"])
    table = pd.concat([df, good], ignore_index=True)
    ok_roles = pd.concat([roles, pd.Series("train", index=good.index)], ignore_index=True)
    assert audit(table, ok_roles).ok

    leaked = expand_offline(test_rows, out_dir=tmp_path / "bad", copies_per_clip=1, seed=0,
                            progress=False)
    # a careless pipeline relabels the copy as a training clip of another fold
    leaked = leaked.assign(fold=train_rows["fold"].iloc[0], src_file="999999")
    table = pd.concat([df, leaked], ignore_index=True)
    bad_roles = pd.concat([roles, pd.Series("train", index=leaked.index)], ignore_index=True)
    with pytest.raises(LeakageError) as info:
        audit(table, bad_roles)
    assert any(leak.kind == "augmented copy" for leak in info.value.report.leaks)


def test_offline_expansion_is_repeatable(synthetic_root, tmp_path):
    rows = load_metadata(synthetic_root).head(1)
    a = expand_offline(rows, out_dir=tmp_path / "a", copies_per_clip=2, seed=5, progress=False)
    b = expand_offline(rows, out_dir=tmp_path / "b", copies_per_clip=2, seed=5, progress=False)
    assert a["augmentation"].tolist() == b["augmentation"].tolist()
    np.testing.assert_array_equal(sf.read(a["path"][1])[0], sf.read(b["path"][1])[0])
    assert (tmp_path / "a" / "augmented.csv").is_file()
