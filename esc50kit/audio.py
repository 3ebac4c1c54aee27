"""Read a clip from disk as a mono float32 waveform at a fixed rate and length.

Every feature, augmentation and model input starts here, so the three protocol choices
of the pipeline live in this one function: mix to mono, resample with soxr, and pad or
crop to a fixed length.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import CLIP_FRAMES, SAMPLE_RATE

# soundfile and soxr are imported where they are used: training from a feature pack
# (esc50kit.packs) imports this module but reads no audio, and the GPU machines it is
# meant for have no audio libraries installed.

PAD_MODES = ("constant", "wrap")
# soxr "HQ" is the quality librosa.load uses by default (res_type="soxr_hq"), so clips
# read here sound the same as clips read by librosa.
RESAMPLE_QUALITY = "HQ"
# Largest sample magnitude accepted from a float file (1.0 is full scale). Float WAVs may
# go a little past full scale, but 1e3 is 60 dB above it: no recording is that loud, while
# a file of the wrong byte order or of uninitialised memory is, and squared in the power
# spectrum it would overflow float32 to inf. Integer PCM files cannot exceed full scale.
MAX_ABS_SAMPLE = 1e3


class AudioReadError(RuntimeError):
    """A clip could not be decoded; the message names the file and what to do."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"could not read audio file {self.path}: {reason}. Check that it is a complete "
            "WAV/FLAC/OGG file (re-download or re-extract the dataset), or pass "
            "on_error='skip' to leave it out and report it."
        )


def sample_problem(data: np.ndarray) -> str | None:
    """What makes decoded samples unusable (a NaN, an infinity, a sample beyond
    ``MAX_ABS_SAMPLE``), or None.

    Args:
        data: shape (samples,) or (samples, channels); integer arrays always pass.
    """
    if data.dtype.kind in "iub" or data.size == 0:
        return None
    finite = np.isfinite(data)
    if not finite.all():
        first = np.argmin(finite.reshape(len(data), -1).all(axis=1))  # the first bad frame
        return (f"{int((~finite).sum())} sample(s) are NaN or infinite (the first at frame "
                f"{int(first)}); the file is damaged or was written from a failed computation")
    peak = float(np.abs(data).max())
    if peak > MAX_ABS_SAMPLE:
        return (f"samples reach {peak:.3g}, beyond the accepted magnitude {MAX_ABS_SAMPLE:g} "
                "(1.0 is full scale); the file is damaged (wrong byte order?) or not audio")
    return None


def _open_problem(path: str | Path, exc: BaseException) -> str:
    """Why libsndfile could not open ``path``, in words (its own say 'System error.')."""
    p = Path(path)
    if not p.exists():
        return "no such file (check the path)"
    if p.is_dir():
        return "it is a folder, not an audio file (give the files in it)"
    text = str(getattr(exc, "error_string", None) or exc).rstrip(".")
    return f"{type(exc).__name__}: {text}"


def n_samples(*, sr: int, duration: float) -> int:
    """Samples in ``duration`` seconds at ``sr`` Hz: ``round(sr * duration)``."""
    return int(round(sr * duration))


def fix_length(y: np.ndarray, *, size: int, pad_mode: str = "constant") -> np.ndarray:
    """Crop or pad the last axis of ``y`` to ``size`` samples.

    Args:
        y: waveform(s), shape (..., samples).
        pad_mode: ``"constant"`` pads with zeros (silence); ``"wrap"`` repeats the clip.

    Returns:
        np.ndarray, shape (..., size), same dtype as ``y``.
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode={pad_mode!r} is not supported; choose one of {PAD_MODES}")
    n = y.shape[-1]
    if n >= size:
        return y[..., :size]
    width = [(0, 0)] * (y.ndim - 1) + [(0, size - n)]
    return np.pad(y, width, mode="wrap" if pad_mode == "wrap" and n > 0 else "constant")


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono waveform with soxr (the same filter librosa uses by default).

    Returns:
        np.ndarray, shape (ceil(samples * target_sr / orig_sr),), float32.
    """
    if orig_sr == target_sr:
        return np.asarray(y, dtype=np.float32)
    import soxr

    return np.asarray(soxr.resample(y, orig_sr, target_sr, quality=RESAMPLE_QUALITY),
                      dtype=np.float32)


def load_audio(
    path: str | Path,
    *,
    sr: int = 22050,
    duration: float | None = CLIP_FRAMES / SAMPLE_RATE,
    pad_mode: str = "constant",
) -> np.ndarray:
    """Read a clip as mono float32 at ``sr`` Hz, padded or cropped to ``duration`` seconds.

    Stereo files are averaged to mono; a file at another rate is resampled with soxr.
    Short clips are padded with silence by default rather than looped: looping invents a
    repetition the sound did not have and doubles short events (``pad_mode="wrap"``).

    Args:
        path: audio file readable by libsndfile (WAV, FLAC, OGG, ...).
        duration: target length in seconds (default the ESC-50 clip's 5 s); ``None``
            keeps the natural length.
        pad_mode: ``"constant"`` (zeros) or ``"wrap"`` (repeat the clip).

    Returns:
        np.ndarray, shape (round(sr * duration),) or (natural samples,), float32, finite:
        in [-1, 1] for integer files, within +-``MAX_ABS_SAMPLE`` for float files.

    Raises:
        AudioReadError: the file is missing, truncated, not audio, holds no samples, or
            holds a non-finite sample or one beyond ``MAX_ABS_SAMPLE``.
        ValueError: a parameter is out of range.
    """
    if sr <= 0:
        raise ValueError(f"sr={sr} must be a positive sample rate in Hz")
    if duration is not None and duration <= 0:
        raise ValueError(f"duration={duration} must be positive seconds, or None")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode={pad_mode!r} is not supported; choose one of {PAD_MODES}")
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as fh:
            file_sr = fh.samplerate
            # 16-bit files (all of ESC-50) are read as int16 and scaled below: libsndfile's
            # own float conversion is several times slower. Other formats read as float32.
            pcm16 = fh.subtype == "PCM_16"
            data = fh.read(dtype="int16" if pcm16 else "float32", always_2d=True)
    except Exception as exc:  # libsndfile reports missing, truncated and foreign files alike
        raise AudioReadError(path, _open_problem(path, exc)) from exc
    problem = "the file holds no samples" if data.shape[0] == 0 else sample_problem(data)
    if problem is not None:
        raise AudioReadError(path, problem)
    if pcm16:
        data = data.astype(np.float32) * np.float32(1 / 32768)
    # (samples, channels) -> (samples,)
    y = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    y = resample(np.ascontiguousarray(y), orig_sr=int(file_sr), target_sr=sr)
    if duration is not None:
        y = fix_length(y, size=n_samples(sr=sr, duration=duration), pad_mode=pad_mode)
    return np.ascontiguousarray(y, dtype=np.float32)
