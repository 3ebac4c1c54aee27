"""Log-mel and MFCC features of a clip, their configuration, and the normaliser.

The log-mel spectrogram is computed with numpy and scipy (a framed, windowed ``rfft`` and
one sparse product with the mel filterbank), without librosa's per-call overhead. It
equals, to float32 rounding (a test checks it)::

    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop_length,
                                       n_mels=n_mels, fmin=fmin, fmax=fmax, norm=None)
    librosa.power_to_db(S / (window.sum() / 2) ** 2, ref=1.0,
                        amin=10 ** (floor_db / 10), top_db=None)

that is, dB relative to full scale: a full-scale sine reads about 0 dB in the band of its
frequency and silence reads ``floor_db``. The scale is absolute, not relative to each
clip's loudest bin (librosa's ``ref=np.max``), so loudness stays comparable between clips.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .audio import PAD_MODES, load_audio, n_samples
from .fileio import atomic_write_text

KINDS = ("logmel", "mfcc", "waveform")
FEATURE_VERSION = 1  # bump when the numbers change for a configuration: old caches are stale


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter that decides the feature array of a clip.

    Attributes:
        sr: sample rate the audio is resampled to, Hz.
        duration: clip length in seconds after padding/cropping.
        pad_mode: ``"constant"`` (silence) or ``"wrap"`` (repeat) for short clips.
        n_fft: FFT size and Hann window length; ``hop_length``: hop between frames (samples).
        fmax: highest mel band edge, Hz (``None``: ``sr / 2``).
        floor_db: dB floor relative to full scale; silence reads this finite value.
        kind: ``"logmel"``, ``"mfcc"`` or ``"waveform"`` (the resampled clip itself, shape
            (1, samples), for raw-waveform models; the spectral fields are then unused).
        resize: optional ``(height, width)`` to resize the feature image to with OpenCV;
            ``None`` keeps ``(n_bins, frames)``.
    """

    sr: int = 22050
    duration: float = 5.0
    pad_mode: str = "constant"
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 20.0
    fmax: float | None = None
    floor_db: float = -100.0
    kind: str = "logmel"
    n_mfcc: int = 40
    resize: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.resize is not None:
            object.__setattr__(self, "resize", tuple(int(v) for v in self.resize))
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not supported; choose one of {KINDS}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode={self.pad_mode!r} is not supported; "
                             f"choose one of {PAD_MODES}")
        for name in ("sr", "n_fft", "hop_length", "n_mels", "n_mfcc"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive integer")
        if self.duration is None or self.duration <= 0:
            raise ValueError(f"duration={self.duration} must be positive seconds")
        _check_band(self.fmin, self.fmax_hz, self.sr)
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc={self.n_mfcc} cannot exceed n_mels={self.n_mels}")
        if self.resize is not None and (len(self.resize) != 2 or min(self.resize) <= 0):
            raise ValueError(f"resize={self.resize} must be None or (height, width) > 0")
        if self.resize is not None and self.kind == "waveform":
            raise ValueError("resize applies to spectrogram images, not to kind='waveform'")

    @property
    def fmax_hz(self) -> float:
        """``fmax`` with ``None`` resolved to the Nyquist frequency ``sr / 2``."""
        return float(self.sr) / 2 if self.fmax is None else float(self.fmax)

    @property
    def n_samples(self) -> int:
        """Samples of one clip after padding/cropping: ``round(sr * duration)``."""
        return n_samples(sr=self.sr, duration=self.duration)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_bins, frames)`` of the features of one full clip (after ``resize``)."""
        if self.resize is not None:
            return (self.resize[0], self.resize[1])
        if self.kind == "waveform":
            return (1, self.n_samples)
        n_bins = self.n_mels if self.kind == "logmel" else self.n_mfcc
        # centred frames (librosa's default): one every hop, the first centred on sample 0
        return (n_bins, 1 + self.n_samples // self.hop_length)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {**asdict(self), "resize": list(self.resize) if self.resize is not None else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        """Rebuild a config from :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown FeatureConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def key(self) -> str:
        """A short hash, stable across runs and machines, of the fields and FEATURE_VERSION."""
        payload = json.dumps({"v": FEATURE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:12]


# Slaney's mel scale: 200/3 Hz per mel below 1 kHz, logarithmic above.
_F_SP, _LOGSTEP = 200.0 / 3, np.log(6.4) / 27.0
_MIN_LOG_MEL = 1000.0 / _F_SP  # the mel of 1 kHz


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_part = _MIN_LOG_MEL + np.log(np.maximum(f, 1e-12) / 1000.0) / _LOGSTEP
    return np.where(f >= 1000.0, log_part, f / _F_SP)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= _MIN_LOG_MEL, 1000.0 * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


@functools.lru_cache(maxsize=16)
def mel_filterbank(*, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters with unit peaks on the Slaney mel scale.

    Equals ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
    norm=None)`` (a test checks it); written out here so that computing features does not
    import librosa, whose first use costs about a second in every process.

    Returns:
        np.ndarray, shape (n_mels, 1 + n_fft // 2), float32, read-only.
    """
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]  # (n_mels + 2, bins)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=16)
def _sparse_mel(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
    """The filterbank as a CSR matrix: each filter spans a few bins, so a sparse product
    does ~1/60 of the multiplications of the dense one."""
    import scipy.sparse

    return scipy.sparse.csr_matrix(mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels,
                                                  fmin=fmin, fmax=fmax))


@functools.lru_cache(maxsize=16)
def _window(n_fft: int) -> np.ndarray:
    """Periodic Hann window, shape (n_fft,), scaled by 2 / sum: a full-scale sine reads ~1."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    w = (w / (w.sum() / 2)).astype(np.float32)
    w.flags.writeable = False
    return w


def _check_int(name: str, value: int) -> int:
    if int(value) != value or value <= 0:
        raise ValueError(f"{name}={value} must be a positive integer")
    return int(value)


def _check_band(fmin: float, fmax: float, sr: int) -> None:
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")


def _power_1d(y: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """Power STFT of one waveform (samples,). Returns shape (frames, 1 + n_fft // 2), float32."""
    import scipy.fft

    # Centred frames with zero padding at both ends, as librosa >= 0.10 computes them.
    y = np.pad(y, (n_fft // 2, n_fft // 2))
    # (frames, n_fft): a strided view, copied once by the window product
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop_length]
    spec = scipy.fft.rfft(frames * _window(n_fft), axis=-1, overwrite_x=True)  # complex64
    v = spec.view(np.float32).reshape(*spec.shape, 2)  # (frames, bins, [re, im])
    np.square(v, out=v)
    return v[..., 0] + v[..., 1]


def log_mel(
    y: np.ndarray,
    *,
    sr: int = 22050,
    n_fft: int = 1024,
    hop_length: int = 512,
    n_mels: int = 128,
    fmin: float = 20.0,
    fmax: float | None = None,
    floor_db: float = -100.0,
) -> np.ndarray:
    """Log-mel spectrogram in dB relative to full scale (see the module docstring).

    Args:
        y: waveform(s), shape (samples,) or (batch, samples), float in [-1, 1].
        n_fft: FFT size and Hann window length; ``hop_length``: hop between centred frames.
        fmax: highest band edge, Hz (``None``: ``sr / 2``).
        floor_db: values below this many dB are clipped to it, so silence is finite.

    Returns:
        np.ndarray, shape (n_mels, frames) or (batch, n_mels, frames), float32, with
        ``frames = 1 + samples // hop_length``.
    """
    n_fft = _check_int("n_fft", n_fft)
    hop_length = _check_int("hop_length", hop_length)
    fmax = float(sr) / 2 if fmax is None else float(fmax)
    _check_band(fmin, fmax, sr)
    y = np.asarray(y, dtype=np.float32)
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ValueError(f"y must have shape (samples,) or (batch, samples), got {y.shape}")
    mel = _sparse_mel(int(sr), n_fft, _check_int("n_mels", n_mels), float(fmin), fmax)
    amin = np.float32(10.0 ** (floor_db / 10.0))
    flat = y.reshape(-1, y.shape[-1])
    out = np.empty((flat.shape[0], n_mels, 1 + flat.shape[1] // hop_length), dtype=np.float32)
    # One clip at a time: a clip's frames fit in the CPU cache, a whole batch's do not.
    for i, row in enumerate(flat):
        power = _power_1d(row, n_fft, hop_length)  # (frames, bins)
        S = np.asarray(mel @ power.T, dtype=np.float32)  # (n_mels, frames)
        np.maximum(S, amin, out=S)
        np.log10(S, out=out[i])
    out *= np.float32(10.0)
    return out.reshape(*y.shape[:-1], *out.shape[1:])


def mfcc(
    y: np.ndarray,
    *,
    sr: int = 22050,
    n_mfcc: int = 40,
    n_fft: int = 1024,
    hop_length: int = 512,
    n_mels: int = 128,
    fmin: float = 20.0,
    fmax: float | None = None,
    floor_db: float = -100.0,
) -> np.ndarray:
    """MFCCs: the orthonormal type-II DCT of :func:`log_mel` along the mel axis.

    Same as ``librosa.feature.mfcc(S=log_mel(...), n_mfcc=n_mfcc)``.

    Returns:
        np.ndarray, shape (n_mfcc, frames) or (batch, n_mfcc, frames), float32.
    """
    import scipy.fft

    if not 0 < n_mfcc <= n_mels:
        raise ValueError(f"n_mfcc={n_mfcc} must be between 1 and n_mels={n_mels}")
    S = log_mel(y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                fmin=fmin, fmax=fmax, floor_db=floor_db)
    out = scipy.fft.dct(S, type=2, norm="ortho", axis=-2)[..., :n_mfcc, :]
    return np.ascontiguousarray(out, dtype=np.float32)


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``x`` to ``size = (height, width)`` with OpenCV."""
    import cv2

    h, w = size
    # INTER_AREA averages when shrinking (no aliasing); INTER_LINEAR interpolates when growing.
    shrink = h <= x.shape[-2] and w <= x.shape[-1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    flat = x.reshape(-1, *x.shape[-2:])  # (images, n_bins, frames)
    out = np.stack([cv2.resize(img, (w, h), interpolation=interp) for img in flat])
    return out.reshape(*x.shape[:-2], h, w)


def compute(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Features of waveform(s) of shape (samples,) or (batch, samples) already at
    ``config.sr``: ``kind``, then optional ``resize``.

    Returns:
        np.ndarray, shape (n_bins, frames) or (batch, n_bins, frames), float32;
        ``config.shape`` for a clip of ``config.n_samples`` samples (``kind="waveform"``:
        (1, samples), the waveform itself).
    """
    if config.kind == "waveform":  # (..., samples) -> (..., 1, samples)
        return np.asarray(y, dtype=np.float32)[..., None, :]
    common = dict(sr=config.sr, n_fft=config.n_fft, hop_length=config.hop_length,
                  n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax_hz,
                  floor_db=config.floor_db)
    x = log_mel(y, **common) if config.kind == "logmel" else mfcc(y, n_mfcc=config.n_mfcc, **common)
    if config.resize is not None:
        x = _resize(x, config.resize)
    return x.astype(np.float32, copy=False)


def extract(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """Load one file with :func:`esc50kit.audio.load_audio` and compute its features.

    Returns:
        np.ndarray, shape ``config.shape``, float32.
    """
    return compute(load_audio(path, sr=config.sr, duration=config.duration,
                              pad_mode=config.pad_mode), config)


class Normalizer:
    """Per-frequency-bin standardisation: ``(x - mean[bin]) / std[bin]``.

    Protocol: fit on the TRAINING rows of a split only (never on validation or test
    rows), so the statistics carry no information about the clips a model is scored
    on; the same fitted statistics then transform train, validation and test alike.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, *, n_fit: int = 0, eps: float = 1e-6):
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        std = np.asarray(std, dtype=np.float64).reshape(-1)
        if mean.shape != std.shape:
            raise ValueError(f"mean shape {mean.shape} and std shape {std.shape} differ")
        self.mean = mean
        self.std = np.maximum(std, eps)  # a constant bin (e.g. above fmax) must not divide by 0
        self.n_fit = int(n_fit)

    @property
    def n_bins(self) -> int:
        return self.mean.shape[0]

    @classmethod
    def fit(cls, X: np.ndarray, *, chunk: int = 256) -> "Normalizer":
        """Mean and std of every bin over clips and frames of the TRAINING rows.

        Args:
            X: training features, shape (N, n_bins, frames) (float16 or float32); pass
                only the rows of the split's training folds.
            chunk: clips summed at a time (float64 sums, bounded memory).

        Returns:
            Normalizer: with ``mean`` and ``std`` of shape (n_bins,).

        Raises:
            ValueError: ``X`` has the wrong shape, or a value that is not finite (the
                message names the first rows).
        """
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[0] == 0:
            raise ValueError(f"fit expects X of shape (N>0, n_bins, frames), got {X.shape}")
        s, ss, bad_rows = np.zeros(X.shape[1]), np.zeros(X.shape[1]), []
        count = X.shape[0] * X.shape[2]
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite rows: reported below
            for i in range(0, X.shape[0], chunk):
                part = X[i : i + chunk].astype(np.float64)
                sq = np.square(part)
                per_clip = sq.sum(axis=(1, 2))  # (clips,): inf or NaN where a clip has one
                bad_rows.extend((i + np.flatnonzero(~np.isfinite(per_clip))).tolist())
                s += part.sum(axis=(0, 2))
                ss += sq.sum(axis=(0, 2))
            mean = s / count
            var = np.maximum(ss / count - mean**2, 0.0)
        if bad_rows or not (np.isfinite(mean).all() and np.isfinite(var).all()):
            # A NaN here would silently turn every normalised clip into NaN: chance accuracy.
            raise ValueError(
                f"Normalizer.fit: the training features are not finite ({len(bad_rows)} of "
                f"{X.shape[0]} clips hold NaN, inf or values too large to square, e.g. rows "
                f"{bad_rows[:5]}); the mean or std of a bin would be NaN. A clip or a feature "
                "cache is damaged: check those clips' audio, or delete the feature cache "
                "(artifacts/features) to recompute it.")
        return cls(mean, np.sqrt(var), n_fit=X.shape[0])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardise features of shape (..., n_bins, frames), e.g. (N, n_bins, frames).

        Returns:
            np.ndarray, same shape, float32.
        """
        X = np.asarray(X)
        if X.ndim < 2 or X.shape[-2] != self.n_bins:
            raise ValueError(f"transform expects (..., {self.n_bins}, frames), got shape "
                             f"{X.shape}: was this normaliser fitted on another feature "
                             "configuration?")
        mean = self.mean.astype(np.float32)[:, None]
        std = self.std.astype(np.float32)[:, None]
        return ((X.astype(np.float32) - mean) / std).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready statistics (``mean``, ``std`` lists of length n_bins, ``n_fit`` clips)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "n_fit": self.n_fit}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalizer":
        return cls(d["mean"], d["std"], n_fit=d.get("n_fit", 0))

    def save(self, path: str | Path) -> Path:
        """Write the statistics as JSON, atomically. Returns the path."""
        atomic_write_text(path, json.dumps(self.to_dict()))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Normalizer":
        """Read statistics written by :meth:`save`."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"could not read normaliser statistics from {path}: {exc}. "
                             "Refit it on the training rows and save it again.") from exc

    def __repr__(self) -> str:
        return f"Normalizer(n_bins={self.n_bins}, n_fit={self.n_fit})"
