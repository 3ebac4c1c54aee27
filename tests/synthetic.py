"""A small synthetic dataset in the ESC-50 layout, for tests and offline demos.

Each class is a sound with its own spectral signature (a low hum, a whistle, a chirp,
noise bursts, ...). Each source recording is a longer random instance of its class; its
takes are different windows of it, so takes of one source are alike, as in ESC-50, and a
split that separates them would leak. Every second take is a shorter event padded with
silence to the clip length, as many ESC-50 clips are.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from esc50kit.data import AUDIO_DIRNAME, META_RELPATH, OFFICIAL_FOLDS
from esc50kit.fileio import atomic_path

CLASS_NAMES = (
    "low_hum", "whistle", "chirp", "noise_burst", "rumble",
    "hiss", "clicks", "beeps", "warble", "drone",
)


def _bandpass_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """White noise restricted to [lo, hi] Hz in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[(freqs < lo) | (freqs > hi)] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.abs(out).max() + 1e-9)


def _source_signal(kind: int, rng: np.random.Generator, *, sr: int, seconds: float) -> np.ndarray:
    """One random 'source recording' of class ``kind``. Returns shape (samples,)."""
    n = int(sr * seconds)
    t = np.arange(n) / sr
    jitter = rng.uniform(0.9, 1.1)
    if kind == 0:  # low hum: 120-150 Hz with harmonics
        f0 = 135 * jitter
        y = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
    elif kind == 1:  # whistle: a steady 3 kHz tone
        y = np.sin(2 * np.pi * 3000 * jitter * t)
    elif kind == 2:  # chirps: a rising sweep repeated every second
        phase = (t % 1.0)
        f = 500 + 3500 * phase * jitter
        y = np.sin(2 * np.pi * np.cumsum(f) / sr)
    elif kind == 3:  # broadband noise bursts, four per second
        env = ((t * 4 * jitter) % 1.0 < 0.3).astype(float)
        y = rng.standard_normal(n) * env * 0.5
    elif kind == 4:  # rumble: noise below 300 Hz
        y = _bandpass_noise(rng, n, sr, 20, 300)
    elif kind == 5:  # hiss: noise above 6 kHz
        y = _bandpass_noise(rng, n, sr, 6000, min(12000, sr / 2 - 1))
    elif kind == 6:  # clicks: short impulses ten times a second
        y = np.zeros(n)
        step = int(sr / (10 * jitter))
        y[::step] = 1.0
        y = np.convolve(y, np.hanning(32), mode="same")
    elif kind == 7:  # beeps: 1 kHz on/off twice a second
        env = ((t * 2 * jitter) % 1.0 < 0.5).astype(float)
        y = np.sin(2 * np.pi * 1000 * t) * env
    elif kind == 8:  # warble: a 2 kHz tone frequency-modulated at 6 Hz
        f = 2000 * jitter + 300 * np.sin(2 * np.pi * 6 * t)
        y = np.sin(2 * np.pi * np.cumsum(f) / sr)
    elif kind == 9:  # drone: a 500 + 700 Hz chord
        y = np.sin(2 * np.pi * 500 * jitter * t) + np.sin(2 * np.pi * 700 * jitter * t)
    else:
        raise ValueError(f"synthetic class index {kind} out of range 0-{len(CLASS_NAMES) - 1}")
    y = np.asarray(y, dtype=np.float64)
    y = y / (np.abs(y).max() + 1e-9) * rng.uniform(0.3, 0.8)
    return y + 0.01 * rng.standard_normal(n)


def _check_layout(n_classes: int, clips_per_class: int, takes_per_source: int) -> None:
    if not 1 <= n_classes <= len(CLASS_NAMES):
        raise ValueError(f"n_classes={n_classes}: choose 1-{len(CLASS_NAMES)}")
    per_fold_group = len(OFFICIAL_FOLDS) * takes_per_source
    if clips_per_class % per_fold_group:
        raise ValueError(
            f"clips_per_class={clips_per_class} must be a multiple of "
            f"5 folds x {takes_per_source} takes = {per_fold_group}"
        )


def make_synthetic_dataset(
    root: str | Path,
    *,
    n_classes: int = 5,
    clips_per_class: int = 10,
    takes_per_source: int = 2,
    sr: int = 44100,
    duration: float = 5.0,
    seed: int = 0,
) -> Path:
    """Write a synthetic dataset with real WAV files and the official ESC-50 table.

    Clips are spread evenly over the five official folds; each source recording gives
    ``takes_per_source`` takes, all in one fold. The first half of the classes is flagged
    ``esc10=True`` so subset selection can be exercised.

    Args:
        root: folder to create (``meta/`` and ``audio/`` are written inside it).
        n_classes: 1-10 classes, named from :data:`CLASS_NAMES`.
        clips_per_class: a multiple of ``5 * takes_per_source``.
        takes_per_source: clips cut from one source recording (takes A, B, ...).
        sr: sample rate of the WAV files (ESC-50 uses 44100).
        duration: clip length in seconds (ESC-50 uses 5.0).
        seed: seeds every random choice; the same arguments give the same files.

    Returns:
        Path: ``root``.
    """
    _check_layout(n_classes, clips_per_class, takes_per_source)
    root = Path(root)
    audio_dir = root / AUDIO_DIRNAME
    audio_dir.mkdir(parents=True, exist_ok=True)
    (root / META_RELPATH).parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clip_n = int(round(sr * duration))
    hop = clip_n // 2  # consecutive takes overlap by half a clip, like cuts of one recording
    rows = []
    sources_per_class = clips_per_class // takes_per_source
    for target in range(n_classes):
        for s in range(sources_per_class):
            fold = OFFICIAL_FOLDS[s % len(OFFICIAL_FOLDS)]
            src_file = str(100000 + 1000 * target + s)
            source = _source_signal(
                target, rng, sr=sr, seconds=duration + hop * (takes_per_source - 1) / sr
            )
            for k in range(takes_per_source):
                take = chr(ord("A") + k)
                clip = source[k * hop : k * hop + clip_n].copy()
                if k % 2 == 1:
                    # Like many ESC-50 clips: a shorter event padded with digital silence.
                    clip[int(rng.uniform(0.5, 0.8) * clip_n):] = 0.0
                name = f"{fold}-{src_file}-{take}-{target}.wav"
                sf.write(audio_dir / name, clip.astype(np.float32), sr, subtype="PCM_16")
                rows.append((name, fold, target, CLASS_NAMES[target],
                             target < max(1, n_classes // 2), src_file, take))
    table = pd.DataFrame(rows, columns=["filename", "fold", "target", "category",
                                        "esc10", "src_file", "take"])
    with atomic_path(root / META_RELPATH) as tmp:
        table.sort_values(["fold", "filename"]).to_csv(tmp, index=False)
    return root
