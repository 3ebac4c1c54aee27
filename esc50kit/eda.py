"""Exploratory statistics of a dataset: integrity, durations, loudness, simple spectral features.

Each figure function draws on a matplotlib ``Axes`` it is given, so notebooks compose
them and tests can call them headless.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from .data import CLIP_FRAMES, SAMPLE_RATE

STAT_COLUMNS = (
    "readable", "samplerate", "channels", "duration_s", "peak", "rms_dbfs",
    "silent_fraction", "spectral_centroid_hz", "zero_crossing_rate", "error",
)
SILENCE_DBFS = -60.0  # frames quieter than this count as silent


def clip_stats(path: str, *, frame: int = 2048) -> dict:
    """Integrity and simple acoustic statistics of one file, keyed by :data:`STAT_COLUMNS`.
    Never raises: a file that cannot be decoded gives ``readable=False`` and its ``error``."""
    import soundfile as sf  # here: the notebooks' figures below need no audio library

    try:
        y, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # report, do not stop: this is an integrity survey
        return {**{k: np.nan for k in STAT_COLUMNS}, "readable": False, "channels": 0,
                "error": f"{type(exc).__name__}: {exc}"}
    channels = y.shape[1]
    y = y.mean(axis=1)  # (samples,)
    n = len(y) // frame * frame
    frames = y[:n].reshape(-1, frame) if n else y[None, :]  # (n_frames, frame)
    frame_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    spec = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1)) ** 2
    freqs = np.fft.rfftfreq(frames.shape[1], 1 / sr)
    energy = spec.sum(axis=1)
    voiced = energy > 1e-10
    centroid = float(np.mean((spec[voiced] @ freqs) / energy[voiced])) if voiced.any() else 0.0
    return {
        "readable": True,
        "samplerate": int(sr),
        "channels": int(channels),
        "duration_s": len(y) / sr,
        "peak": float(np.abs(y).max()) if len(y) else 0.0,
        "rms_dbfs": float(10 * np.log10(np.mean(y**2) + 1e-12)),
        "silent_fraction": float(np.mean(frame_db < SILENCE_DBFS)),
        "spectral_centroid_hz": centroid,
        "zero_crossing_rate": float(np.mean(np.abs(np.diff(np.signbit(y).astype(np.int8))))),
        "error": "",
    }


def dataset_stats(df: pd.DataFrame, *, n_jobs: int | None = None) -> pd.DataFrame:
    """``df`` with the :func:`clip_stats` of every row (computed in parallel) joined on."""
    n_jobs = n_jobs or os.cpu_count() or 1
    paths = df["path"].tolist()
    if n_jobs > 1 and len(paths) > 50:
        with ProcessPoolExecutor(n_jobs) as pool:
            rows = list(pool.map(clip_stats, paths, chunksize=max(1, len(paths) // (4 * n_jobs))))
    else:
        rows = [clip_stats(p) for p in paths]
    stats = pd.DataFrame(rows, index=df.index, columns=list(STAT_COLUMNS))
    return pd.concat([df, stats], axis=1)


def integrity_report(stats: pd.DataFrame, *, sr: int = SAMPLE_RATE,
                     duration: float = CLIP_FRAMES / SAMPLE_RATE) -> pd.DataFrame:
    """``filename`` and ``problem`` of each file that breaks the ESC-50 format: unreadable,
    not ``sr`` Hz mono, not ``duration`` s (no rows when all is well)."""
    problems = []
    for row in stats.itertuples():
        if not row.readable:
            problems.append((row.filename, f"unreadable: {row.error}"))
            continue
        if row.samplerate != sr:
            problems.append((row.filename, f"sample rate {row.samplerate} Hz, expected {sr}"))
        if row.channels != 1:
            problems.append((row.filename, f"{row.channels} channels, expected mono"))
        if abs(row.duration_s - duration) > 1e-3:
            problems.append((row.filename, f"{row.duration_s:.3f} s, expected {duration}"))
    return pd.DataFrame(problems, columns=["filename", "problem"])


def per_category(stats: pd.DataFrame, column: str) -> pd.DataFrame:
    """Median, quartiles and range of one statistic per category, sorted by the median."""
    g = stats.groupby("category")[column]
    out = pd.DataFrame({"median": g.median(), "q1": g.quantile(0.25), "q3": g.quantile(0.75),
                        "min": g.min(), "max": g.max()})
    return out.sort_values("median")


def plot_class_fold_balance(df: pd.DataFrame, ax):
    """Heatmap of clips per category (rows) and fold (columns)."""
    import seaborn as sns

    counts = pd.crosstab(df["category"], df["fold"])
    sns.heatmap(counts, annot=counts.shape[0] <= 12, fmt="d", cbar=False, cmap="Blues", ax=ax)
    ax.set(title="Clips per category and fold", xlabel="fold", ylabel="")
    return ax


def plot_stat_by_category(stats: pd.DataFrame, column: str, ax, *, label: str | None = None):
    """Box plot of one statistic per category, ordered by the median."""
    import seaborn as sns

    order = per_category(stats, column).index.tolist()
    sns.boxplot(data=stats, y="category", x=column, order=order, ax=ax, color="#8fb3d9",
                fliersize=2)
    ax.set(xlabel=label or column, ylabel="")
    return ax


def plot_waveform(y: np.ndarray, *, sr: int, ax, title: str = "", buckets: int = 1000):
    """Waveform of a mono clip (shape (samples,)), time in seconds on x."""
    seconds = len(y) / sr
    if len(y) > 2 * buckets:
        # Draw the min/max envelope per bucket: the same picture as every sample, at a
        # fraction of the image size in the rendered reports.
        n = len(y) // buckets * buckets
        chunks = y[:n].reshape(buckets, -1)  # (buckets, samples per bucket)
        t = (np.arange(buckets) + 0.5) * (n / buckets) / sr
        ax.fill_between(t, chunks.min(axis=1), chunks.max(axis=1), color="#355c7d", lw=0)
    else:
        ax.plot(np.arange(len(y)) / sr, y, lw=0.6, color="#355c7d")
    ax.set(xlim=(0, seconds or 1), xlabel="time (s)", ylabel="amplitude", title=title)
    ax.set_yticks([])
    ax.grid(False)
    return ax


def plot_spectrogram(S: np.ndarray, *, sr: int, hop_length: int, ax, title: str = "",
                     fmax: float | None = None, colorbar: str | None = None,
                     vmin: float | None = None, vmax: float | None = None):
    """A log-mel spectrogram image, time in seconds on x, mel band on y.

    Args:
        S: shape (n_mels, frames), dB.
        colorbar: the colour bar's label (for example ``"dB"``); ``None`` draws none.
        vmin, vmax: the colour scale's ends (``None``: the image's own range); give
            several images the same ends to compare them.
    """
    extent = (0, S.shape[1] * hop_length / sr, 0, S.shape[0])
    image = ax.imshow(S, origin="lower", aspect="auto", extent=extent, cmap="magma",
                      vmin=vmin, vmax=vmax)
    ax.set(xlabel="time (s)", ylabel="mel band", title=title)
    ax.grid(False)
    if colorbar is not None:
        ax.figure.colorbar(image, ax=ax, label=colorbar)
    return ax


def category_gallery(df: pd.DataFrame, *, config, per_row: int = 5, seed: int = 0):
    """One clip per category: waveform above its log-mel spectrogram. Returns a Figure.

    Args:
        df: the table (``path``, ``category``).
        config: :class:`esc50kit.features.FeatureConfig` used for the spectrograms.
    """
    import matplotlib.pyplot as plt

    from .audio import load_audio
    from .features import compute

    picks = df.groupby("category", sort=True).sample(1, random_state=seed)
    rows = int(np.ceil(len(picks) / per_row))
    fig, axes = plt.subplots(2 * rows, per_row, figsize=(3 * per_row, 3.2 * rows),
                             layout="constrained", squeeze=False,
                             gridspec_kw={"height_ratios": [1, 2] * rows})
    for i, row in enumerate(picks.itertuples()):
        r, c = divmod(i, per_row)
        y = load_audio(row.path, sr=config.sr, duration=config.duration)
        top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
        plot_waveform(y, sr=config.sr, ax=top, title=row.category)
        top.set(xlabel="", ylabel="")
        # one colour scale for every clip (dB re full scale), so loudness compares across classes
        plot_spectrogram(compute(y, config), sr=config.sr, hop_length=config.hop_length,
                         ax=bottom, vmin=config.floor_db, vmax=0.0)
    for ax in axes.flat:
        if not ax.has_data():  # the grid's cells after the last category
            ax.set_axis_off()
    fig.colorbar(axes[1, 0].images[0], ax=axes, label="dB re full scale (every spectrogram)",
                 shrink=0.3, location="top", aspect=40)
    return fig
