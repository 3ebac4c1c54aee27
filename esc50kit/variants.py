"""Augmented feature variants: a few waveform-augmented copies of every clip, as features.

Pitch shifting and time stretching run a phase vocoder (tens of milliseconds a clip), far
too slow for every training batch on a CPU. So each clip gets ``copies`` augmented versions
ONCE, cached beside its own features (:func:`esc50kit.cache.load_or_compute` with
``variants=``), and training draws one version of each clip per epoch
(:func:`esc50kit.training.fit` with a 4-D ``X_train``): an epoch costs the same.

Leakage: the variants of a clip are extra slices of that clip's OWN row, shape
(N, 1 + copies, n_bins, frames), so they share its fold, split role and source recording
by construction. Validation and test clips are scored from their original features.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from .augment import RANDOM_TRANSFORMS, random_copies


@dataclass(frozen=True)
class VariantSpec:
    """How the augmented copies of each clip are made.

    Attributes:
        copies: augmented versions per clip (the original is kept besides them).
        transforms: names from :data:`esc50kit.augment.RANDOM_TRANSFORMS`, applied in
            order to each copy with random strengths (e.g. pitch within +-2 semitones,
            speed within x0.9-1.1).
        seed: with the clip's file name and the copy's number, seeds every draw, so a
            copy does not depend on the other clips.
    """

    copies: int = 4
    transforms: tuple[str, ...] = ("pitch_shift", "time_stretch", "gain")
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))
        if int(self.copies) < 1:
            raise ValueError(f"copies={self.copies} must be >= 1")
        unknown = [t for t in self.transforms if t not in RANDOM_TRANSFORMS]
        if unknown or not self.transforms:
            raise ValueError(f"transforms={list(self.transforms)}: choose one or more of "
                             f"{sorted(RANDOM_TRANSFORMS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"copies": int(self.copies), "transforms": list(self.transforms),
                "seed": int(self.seed)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VariantSpec":
        return cls(copies=d["copies"], transforms=tuple(d["transforms"]), seed=d["seed"])

    def key(self) -> str:
        """A short stable hash of the spec (part of the cache file name)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]


def make_copies(y: np.ndarray, *, sr: int, filename: str, spec: VariantSpec) -> list[np.ndarray]:
    """The ``spec.copies`` augmented versions of one clip ``y``, shape (samples,) at ``sr``,
    whose ``filename`` seeds its draws with ``spec.seed``.

    Returns:
        list of ``spec.copies`` arrays, each shape (samples,), float32.
    """
    chain = [RANDOM_TRANSFORMS[t] for t in spec.transforms]
    return [np.asarray(z, dtype=np.float32) for z, _ in random_copies(
        y, sr=sr, filename=filename, seed=spec.seed, copies=spec.copies, chain=chain)]
