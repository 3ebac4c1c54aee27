"""Data augmentation, by where it acts:

* waveform transforms (numpy, one clip of shape (samples,), explicit ``rng``):
  :func:`add_noise`, :func:`time_stretch`, :func:`pitch_shift`, :func:`gain`, :func:`time_shift`;
* batch transforms on feature tensors during training (torch, CPU or CUDA):
  :func:`spec_augment`, :func:`warp`, :func:`mixup`, :func:`between_class`;
* :func:`expand_offline`, which writes augmented copies of clips to disk. Apply it to the
  TRAINING rows of a split only: a copy of a validation or test clip in training is the
  same recording on both sides. Each copy names its original in ``origin``, so
  :func:`esc50kit.splits.audit` catches a copy on the wrong side.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from .audio import fix_length, load_audio
from .fileio import atomic_path, atomic_write_csv

def _as_wave(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (samples,), got shape {y.shape}")
    return y


def add_noise(y: np.ndarray, *, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at a signal-to-noise ratio of ``snr_db`` dB (of the clip's
    mean power, so a silent clip stays silent).

    Returns:
        np.ndarray, shape (samples,), float32.
    """
    y = _as_wave(y)
    signal_power = float(np.mean(np.square(y, dtype=np.float64))) if y.size else 0.0
    noise_std = np.sqrt(signal_power / 10.0 ** (snr_db / 10.0))
    return (y + rng.standard_normal(y.shape[0]).astype(np.float32) * np.float32(noise_std))


def gain(y: np.ndarray, *, db: float) -> np.ndarray:
    """Scale by ``db`` decibels (``10 ** (db / 20)``). Values may leave [-1, 1].

    Returns:
        np.ndarray, shape (samples,), float32.
    """
    return _as_wave(y) * np.float32(10.0 ** (db / 20.0))


def time_shift(y: np.ndarray, *, shift: int, mode: str = "constant") -> np.ndarray:
    """Delay (``shift > 0``) or advance (``shift < 0``) a clip by ``shift`` samples.

    Args:
        mode: ``"constant"`` fills the gap with silence (as padding in
            :func:`esc50kit.audio.load_audio`); ``"roll"`` wraps the clip around.

    Returns:
        np.ndarray, shape (samples,), float32.
    """
    y = _as_wave(y)
    shift = int(shift)
    if mode == "roll":
        return np.roll(y, shift)
    if mode != "constant":
        raise ValueError(f"mode={mode!r}; choose 'constant' or 'roll'")
    out = np.zeros_like(y)
    if abs(shift) >= y.shape[0]:
        return out
    if shift >= 0:
        out[shift:] = y[: y.shape[0] - shift]
    else:
        out[:shift] = y[-shift:]
    return out


def time_stretch(y: np.ndarray, *, rate: float, keep_length: bool = True) -> np.ndarray:
    """Speed up (``rate > 1``) or slow down a clip without changing its pitch (phase vocoder).

    Args:
        keep_length: crop or zero-pad the result back to ``samples`` (fixed-length
            pipelines); False returns librosa's ``round(samples / rate)`` samples.

    Returns:
        np.ndarray, shape (samples,) or (round(samples / rate),), float32.
    """
    import librosa

    if rate <= 0:
        raise ValueError(f"rate={rate} must be > 0 (1.0 keeps the speed)")
    y = _as_wave(y)
    out = librosa.effects.time_stretch(y, rate=float(rate)).astype(np.float32)
    return fix_length(out, size=y.shape[0]) if keep_length else out


def pitch_shift(y: np.ndarray, *, sr: int, n_steps: float) -> np.ndarray:
    """Shift the pitch by ``n_steps`` semitones, keeping the duration (librosa, soxr resampling).

    Returns:
        np.ndarray, shape (samples,), float32.
    """
    import librosa

    y = _as_wave(y)
    out = librosa.effects.pitch_shift(y, sr=sr, n_steps=float(n_steps), res_type="soxr_hq")
    return fix_length(out.astype(np.float32), size=y.shape[0])


# Random numbers are drawn on the generator's device (a CPU generator by default; a few
# numbers per example) and moved to the data's device, so one seed gives the same masks
# and mixing whether the batch lives on the CPU or on a GPU.
def _gen_device(generator) -> str:
    return "cpu" if generator is None else generator.device


def spec_augment(x, *, freq_masks: int = 2, freq_width: int = 16, time_masks: int = 2,
                 time_width: int = 32, value: float = 0.0, generator=None):
    """SpecAugment masking (Park et al., 2019) of a batch, vectorised over the batch.

    Each example gets ``freq_masks`` bands of ``0..freq_width`` mel bins and
    ``time_masks`` spans of ``0..time_width`` frames, at random places, set to
    ``value`` (0 is the mean of normalised features).

    Args:
        x: Tensor, shape (batch, 1, n_mels, frames) or (batch, n_mels, frames), any device.
        freq_width, time_width: largest mask width (clipped to the axis length).
        generator: ``torch.Generator`` for repeatable masks (CPU or the data's device).

    Returns:
        Tensor, same shape, dtype and device as ``x`` (a new tensor; ``x`` is unchanged).
    """
    import torch

    if x.dim() not in (3, 4):
        raise ValueError("spec_augment expects (batch, 1, n_mels, frames), "
                         f"got shape {tuple(x.shape)}")
    batch, n_mels, n_frames = x.shape[0], x.shape[-2], x.shape[-1]

    def axis_mask(n_masks: int, width: int, size: int) -> torch.Tensor:
        """(batch, size) boolean: True inside one of the ``n_masks`` random spans."""
        if n_masks <= 0 or width <= 0:
            return torch.zeros(batch, size, dtype=torch.bool, device=x.device)
        width = min(width, size)
        u = torch.rand((2, batch, n_masks), generator=generator,
                       device=_gen_device(generator)).to(x.device)
        widths = (u[0] * (width + 1)).long()  # (batch, masks), 0..width
        starts = (u[1] * (size - widths + 1)).long()  # (batch, masks), mask fits in the axis
        pos = torch.arange(size, device=x.device)  # (size,)
        # (batch, masks, size) -> (batch, size)
        return ((pos >= starts[..., None]) & (pos < (starts + widths)[..., None])).any(dim=1)

    fmask = axis_mask(freq_masks, freq_width, n_mels)[:, :, None]  # (batch, n_mels, 1)
    tmask = axis_mask(time_masks, time_width, n_frames)[:, None, :]  # (batch, 1, frames)
    mask = fmask | tmask  # (batch, n_mels, frames)
    return x.masked_fill(mask[:, None] if x.dim() == 4 else mask, value)  # 4-D: (batch, 1, ...)


def _resample_time(x, pos):
    """``x`` (batch, rows, frames) read at fractional frames ``pos`` (batch, 1, n) by linear
    interpolation, 0 outside the clip: shape (batch, rows, n)."""
    import torch

    last = x.shape[-1] - 1
    lo = pos.floor()
    frac = (pos - lo).to(x.dtype)
    out = 0
    for k, w in ((lo, 1 - frac), (lo + 1, frac)):
        idx = k.clamp(0, last).long().expand(*x.shape[:-1], -1)
        out = out + torch.gather(x, -1, idx) * (w * ((k >= 0) & (k <= last)))
    return out


def warp(x, *, max_stretch: float, max_shift: int, generator=None):
    """Random time stretch and mel-axis shift of each example: the log-mel counterparts of
    time-stretching and pitch-shifting the waveform, at a tiny cost.

    Each example is stretched in time by a factor ``r`` drawn log-uniformly in
    ``[1 / (1 + max_stretch), 1 + max_stretch]`` (``r > 1`` slows it; linear
    interpolation between frames) about a random point, and moved by a whole number of mel
    bins, up to ``max_shift`` up or down. What comes in from outside the image is 0, the
    mean of normalised features.

    Args:
        x: Tensor, shape (batch, n_mels, frames) or (batch, 1, n_mels, frames), float.
        max_stretch: largest relative change of duration (0.25: factors 0.8 to 1.25).
        max_shift: largest shift in mel bins (0 turns it off).
        generator: ``torch.Generator`` for repeatable draws (CPU or the data's device).

    Returns:
        Tensor, same shape, dtype and device as ``x``.
    """
    import torch

    if x.dim() not in (3, 4) or max_stretch < 0 or max_shift < 0:
        raise ValueError(f"warp expects (batch, n_mels, frames) and max_stretch, max_shift "
                         f">= 0; got shape {tuple(x.shape)}, {max_stretch}, {max_shift}")
    img = x if x.dim() == 3 else x[:, 0]
    batch, n_mels, frames = img.shape
    u = torch.rand((3, batch, 1), generator=generator, device=_gen_device(generator)).to(x.device)
    scale = torch.exp((2 * u[0] - 1) * np.log1p(max_stretch))  # input frames per output frame
    centre = (frames - 1) / 2 + (2 * u[1] - 1) * (scale - 1).abs() * frames / 2
    t = torch.arange(frames, device=x.device) - (frames - 1) / 2  # (frames,)
    out = _resample_time(img, (centre + scale * t)[:, None, :])  # (batch, n_mels, frames)
    shift = ((2 * u[2] - 1) * (max_shift + 0.5)).round().clamp(-max_shift, max_shift).long()
    src = torch.arange(n_mels, device=x.device) + shift  # (batch, n_mels): bin read by bin m
    inside = ((src >= 0) & (src < n_mels)).to(x.dtype)[..., None]  # (batch, n_mels, 1)
    idx = src.clamp(0, n_mels - 1)[..., None].expand(-1, -1, frames)
    out = torch.gather(out, 1, idx) * inside
    return out if x.dim() == 3 else out[:, None]


def mixup(x, y, *, alpha: float, generator=None):
    """Mixup (Zhang et al., 2018): convex combinations of pairs of examples and targets.

    Each example ``i`` is mixed with example ``perm[i]`` of the batch with its own
    weight ``lam[i] ~ Beta(alpha, alpha)``; targets are mixed with the same weights, so
    rows of soft targets still sum to 1.

    Args:
        x: Tensor, shape (batch, ...), float.
        y: Tensor, shape (batch, n_classes): one-hot or soft targets.
        alpha: Beta concentration, > 0 (0 returns the batch unchanged).
        generator: ``torch.Generator`` for repeatable mixing (CPU or the data's device).

    Returns:
        (x_mixed, y_mixed): Tensors of the shapes, dtypes and device of ``x`` and ``y``.
    """
    import torch

    if y.dim() != 2 or not torch.is_floating_point(y):
        raise ValueError(f"mixup needs float targets of shape (batch, n_classes), got "
                         f"{tuple(y.shape)} {y.dtype}; use "
                         "torch.nn.functional.one_hot(labels, n_classes).float()")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    if alpha < 0:
        raise ValueError(f"alpha={alpha} must be >= 0 (0 turns mixup off)")
    if alpha == 0:
        return x.clone(), y.clone()
    lam, perm = _mix_draw(x, alpha=alpha, generator=generator)
    lam_x = lam.reshape(-1, *([1] * (x.dim() - 1)))  # (batch, 1, ..., 1)
    return lam_x * x + (1 - lam_x) * x[perm], _mix_targets(y, lam, perm)


def _mix_draw(x, *, alpha: float, generator=None):
    """Mixup's draws for the batch ``x``: (``lam``, shape (batch,), in x's dtype; ``perm``,
    shape (batch,): example ``i`` is mixed with ``perm[i]``)."""
    import torch

    batch = x.shape[0]
    dev = _gen_device(generator)
    perm = torch.randperm(batch, generator=generator, device=dev).to(x.device)
    # torch's Beta sampler takes no generator: draw lam with numpy, seeded from the generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=dev).item())
    lam = torch.as_tensor(np.random.default_rng(seed).beta(alpha, alpha, size=batch),
                          dtype=x.dtype, device=x.device)  # (batch,)
    return lam, perm


def _mix_targets(y, lam, perm):
    """Targets ``y`` (batch, n_classes) mixed with weights ``lam`` (batch,) and partners ``perm``."""
    lam_y = lam.to(y.dtype)[:, None]  # (batch, 1)
    return lam_y * y + (1 - lam_y) * y[perm]


def between_class(x, y, *, alpha: float, mean, std, generator=None):
    """Between-class mixing (Tokozume et al., 2018) of normalised log-mels: the two sounds
    are mixed as waveforms would be, in power, at a ratio that allows for their loudness.

    Each example ``i`` is mixed with example ``perm[i]``: targets at ``r ~ Beta(alpha,
    alpha)`` as in :func:`mixup`, the sounds with waveform weights ``p`` and ``1 - p``,
    ``p = 1 / (1 + 10 ** ((G1 - G2) / 20) * (1 - r) / r)`` where ``G`` is each clip's
    loudest frame in dB, so that a quiet sound is not drowned by a loud one at equal ``r``.
    The mixed power ``p**2 P1 + (1 - p)**2 P2`` is divided by ``p**2 + (1 - p)**2``.

    Args:
        x: Tensor, shape (batch, ...,  n_mels, frames): features normalised per mel bin.
        y: Tensor, shape (batch, n_classes): one-hot or soft targets.
        alpha: Beta concentration of ``r``, > 0 (1: uniform, as in the paper).
        mean, std: shape (n_mels,), the normaliser's statistics (dB), which undo the
            normalisation (``x * std + mean`` is in dB) and redo it after mixing.
        generator: ``torch.Generator`` for repeatable mixing (CPU or the data's device).

    Returns:
        (x_mixed, y_mixed): Tensors of the shapes, dtypes and device of ``x`` and ``y``.
    """
    import torch

    if alpha <= 0:
        raise ValueError(f"alpha={alpha} must be > 0 for between-class mixing")
    lam, perm = _mix_draw(x, alpha=alpha, generator=generator)
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device)[:, None]  # (n_mels, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device)[:, None]
    power = 10 ** ((x.float() * std + mean) / 10)  # (batch, ..., n_mels, frames), mel power
    loudest = 10 * torch.log10(power.sum(-2).flatten(1).amax(1) + 1e-12)  # (batch,), loudest frame
    r = lam.float().clamp(1e-3, 1 - 1e-3)
    p = 1 / (1 + 10 ** ((loudest - loudest[perm]) / 20) * (1 - r) / r)  # (batch,)
    p = p.reshape(-1, *([1] * (x.dim() - 1)))
    mixed = (p**2 * power + (1 - p) ** 2 * power[perm]) / (p**2 + (1 - p) ** 2)
    floor = power.amin()  # the features' own floor: silence stays silence
    out = (10 * torch.log10(mixed.clamp_min(floor)) - mean) / std
    return out.to(x.dtype), _mix_targets(y, lam, perm)


RandomTransform = Callable[..., tuple[np.ndarray, str]]


def _random_gain(y, *, sr, rng):
    db = float(rng.uniform(-6.0, 6.0))
    return gain(y, db=db), f"gain({db:+.1f} dB)"


def _random_shift(y, *, sr, rng):
    shift = int(rng.integers(-sr // 2, sr // 2 + 1))
    return time_shift(y, shift=shift, mode="roll"), f"time_shift({shift} samples, roll)"


def _random_noise(y, *, sr, rng):
    snr = float(rng.uniform(10.0, 30.0))
    return add_noise(y, snr_db=snr, rng=rng), f"add_noise({snr:.1f} dB SNR)"


def _random_stretch(y, *, sr, rng):
    rate = float(rng.uniform(0.9, 1.1))
    return time_stretch(y, rate=rate), f"time_stretch(x{rate:.3f})"


def _random_pitch(y, *, sr, rng):
    steps = float(rng.uniform(-2.0, 2.0))
    return pitch_shift(y, sr=sr, n_steps=steps), f"pitch_shift({steps:+.2f} st)"


#: Named random transforms for :func:`expand_offline`: ``f(y, *, sr, rng) -> (y, description)``.
RANDOM_TRANSFORMS: dict[str, RandomTransform] = {
    "gain": _random_gain,
    "time_shift": _random_shift,
    "add_noise": _random_noise,
    "time_stretch": _random_stretch,
    "pitch_shift": _random_pitch,
}
DEFAULT_TRANSFORMS = ("time_shift", "gain", "add_noise")


def random_copies(y: np.ndarray, *, sr: int, filename: str, seed: int, copies: int,
                  chain: Sequence[RandomTransform]) -> Iterator[tuple[np.ndarray, str]]:
    """Augmented copies of one clip: ``chain`` applied in order with random strengths.

    Copy ``k`` depends only on ``seed``, ``filename`` and ``k``, not on the other clips.

    Yields:
        (copy, what was applied), the copy of shape (samples,) for the length-keeping
        transforms of :data:`RANDOM_TRANSFORMS`.
    """
    name_key = zlib.crc32(str(filename).encode())
    for k in range(int(copies)):
        rng = np.random.default_rng([int(seed), name_key, k])
        z, applied = y, []
        for fn in chain:
            z, what = fn(z, sr=sr, rng=rng)
            applied.append(what)
        yield z, "; ".join(applied)


def _check_expandable(df: pd.DataFrame, copies_per_clip: int,
                      transforms: Sequence[str | RandomTransform]) -> list[RandomTransform]:
    """The chain of transforms of :func:`expand_offline`, once its arguments are checked."""
    if copies_per_clip < 1:
        raise ValueError(f"copies_per_clip={copies_per_clip} must be >= 1")
    missing = [c for c in ("filename", "path") if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks column(s) {missing}; build it with esc50kit.data.load_metadata")
    if "origin" in df.columns and (df["origin"].notna() & (df["origin"] != df["filename"])).any():
        raise ValueError("df already holds augmented copies (rows with 'origin'); "
                         "expand originals only")
    unknown = [t for t in transforms if not callable(t) and t not in RANDOM_TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown transform {unknown[0]!r}; choose from "
                         f"{sorted(RANDOM_TRANSFORMS)} or pass a callable")
    return [t if callable(t) else RANDOM_TRANSFORMS[t] for t in transforms]


def expand_offline(df: pd.DataFrame, *, out_dir: str | Path, copies_per_clip: int, seed: int,
                   sr: int = 44100,
                   transforms: Sequence[str | RandomTransform] = DEFAULT_TRANSFORMS,
                   progress: bool = True) -> pd.DataFrame:
    """Write ``copies_per_clip`` randomly augmented copies of every clip of ``df``.

    Apply this to the TRAINING rows of a split only (``df[roles == "train"]``): a copy
    of a validation or test clip in training leaks that recording. Every copy keeps its
    original's columns (``fold``, ``src_file``, ...) and names it in ``origin``, so
    :func:`esc50kit.splits.audit` reports a misplaced copy.

    Args:
        df: rows to copy, with ``filename`` and ``path`` (from
            :func:`esc50kit.data.load_metadata`).
        out_dir: folder for the copies (``out_dir/audio/*.wav``) and their table
            (``out_dir/augmented.csv``).
        seed: with the clip's file name and ``k``, seeds the copy ``k`` of a clip, so it
            does not depend on the other rows.
        sr: sample rate of the written files (ESC-50's 44100 by default).
        transforms: names from :data:`RANDOM_TRANSFORMS` or callables
            ``f(y, *, sr, rng) -> (y, description)``, applied in order to each copy.

    Returns:
        pd.DataFrame: one row per copy, the columns of ``df`` with ``filename``
        (``<original stem>.aug<k>.wav``), ``path``, ``origin`` (the original
        ``filename``) and ``augmentation`` (what was applied) set for the copy.
    """
    import soundfile as sf
    from tqdm.auto import tqdm

    chain = _check_expandable(df, copies_per_clip, transforms)
    audio_dir = Path(out_dir) / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with tqdm(total=len(df) * copies_per_clip, desc="augment", unit="copy",
              disable=not progress, leave=False) as bar:
        for row in df.to_dict("records"):
            y0 = load_audio(row["path"], sr=sr, duration=None)
            copies = random_copies(y0, sr=sr, filename=row["filename"], seed=seed,
                                   copies=copies_per_clip, chain=chain)
            for k, (y, applied) in enumerate(copies):
                path = audio_dir / f"{Path(row['filename']).stem}.aug{k}.wav"
                with atomic_path(path) as tmp:  # clipped: libsndfile would wrap past +-1
                    sf.write(tmp, np.clip(y, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
                rows.append({**row, "filename": path.name, "path": str(path.resolve()),
                             "origin": row["filename"], "augmentation": applied})
                bar.update(1)
    table = pd.DataFrame(rows, columns=[*df.columns, *[c for c in ("origin", "augmentation")
                                                       if c not in df.columns]])
    atomic_write_csv(table, Path(out_dir) / "augmented.csv")
    return table
