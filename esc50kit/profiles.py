"""Named training recipes: plain, visible configuration, overridable key by key.

A profile is the features, the model, the training settings and the default mode of a
run. Print one to see every setting; change any of them with ``overrides``::

    get_profile("quick", {"training.epochs": 10, "features.n_mels": 96})
    get_profile("full", {"model": {"width": 32}})

``model.n_classes`` is a placeholder: the experiment sets it from the data.

The profiles were tuned on VALIDATION folds only (the test folds were scored, never
used to choose); timings are for a 2-core laptop-class CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from .features import FeatureConfig
from .models import ModelConfig
from .splits import MODES
from .training import TrainConfig


@dataclass(frozen=True)
class Profile:
    """A complete recipe.

    Attributes:
        name: the profile's name.
        description: what it is for and roughly how long it runs.
        mode: the default mode (``cv``, ``validation`` or ``final``).
        features: feature parameters.
        model: architecture (``n_classes`` is set from the data).
        training: optimiser, schedule, augmentation, stopping.
    """

    name: str
    description: str
    mode: str
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"profile {self.name!r}: mode={self.mode!r}; choose one of {MODES}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "mode": self.mode,
                "features": self.features.to_dict(), "model": self.model.to_dict(),
                "training": self.training.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Profile":
        return cls(name=d["name"], description=d.get("description", ""), mode=d["mode"],
                   features=FeatureConfig.from_dict(d["features"]),
                   model=ModelConfig.from_dict(d["model"]),
                   training=TrainConfig.from_dict(d["training"]))


# 64 mel bands and a 1024-sample hop at 22.05 kHz: a 5 s clip is a (64, 108) image,
# about a sixth of the pixels of the full (128, 216) input.
_SMALL_FEATURES = FeatureConfig(sr=22050, n_fft=2048, hop_length=1024, n_mels=64)

# The CPU recipe shared by quick and cpu-cv (both add epochs, crops and a weight average).
_CPU_TRAINING = TrainConfig(batch_size=32, lr=3e-3, weight_decay=1e-2, schedule="onecycle",
                            warmup=0.25, label_smoothing=0.1, mixup_alpha=0.2, freq_masks=2,
                            freq_width=8, time_masks=2, time_width=12, crop_frames=None)

PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        description="Seconds, for tests and smoke runs: an 8-wide ResNet18 on 32 mel bands, 3 epochs.",
        mode="cv",
        features=FeatureConfig(sr=16000, n_fft=512, hop_length=1024, n_mels=32),
        model=ModelConfig(arch="resnet18", width=8),
        training=TrainConfig(epochs=3, batch_size=16, lr=3e-3, warmup=0.3, time_width=8,
                             freq_width=4),
    ),
    "quick": Profile(
        name="quick",
        description="The default, about 7 minutes of training on a 2-core CPU: one split "
                    "(final mode: train folds 1-3, validate on 4, test once on 5), the "
                    "cpu-cv model (a quarter-width ResNet18 without the stem's max-pooling, "
                    "EMA of the weights) on (64, 108) log-mels, random 4 s crops, 120 epochs, "
                    "mixup alpha 1.0. Chosen on ESC-50's validation fold 4 over the "
                    "half-width ResNet18 of 30 and 60 epochs, 128 mel bands, width 24, "
                    "batch 64, a higher learning rate and mixup 0.2 (benchmarks/README.md).",
        mode="final",
        features=_SMALL_FEATURES,
        model=ModelConfig(arch="resnet18", width=16, stem_pool=False),
        training=replace(_CPU_TRAINING, epochs=120, ema=0.98, crop_frames=86, mixup_alpha=1.0),
    ),
    "cpu-cv": Profile(
        name="cpu-cv",
        description="5-fold cross-validation sized for a 2-core CPU (about 6 minutes "
                    "per run on ESC-10; benchmarks/train_cv.py --val-offsets 1 2 3 4 "
                    "ensembles four runs, each test fold's models validated on the four "
                    "other folds, in about 24): a quarter-width ResNet18 without the stem's "
                    "max-pooling on (64, 108) log-mels, trained on random 4 s crops "
                    "(86 frames) for 120 epochs, with an exponential moving average of "
                    "the weights; validation and test clips are scored whole. Chosen on "
                    "validation folds over the full-width and half-width models, 44.1 kHz "
                    "input, a finer hop, pitch/stretch variants with test-time averaging "
                    "and 60 epochs (README: how the recipe was chosen).",
        mode="cv",
        features=_SMALL_FEATURES,
        model=ModelConfig(arch="resnet18", width=16, stem_pool=False),
        training=replace(_CPU_TRAINING, epochs=120, ema=0.98, crop_frames=86),
    ),
    "cpu-esc50": Profile(
        name="cpu-esc50",
        description="The CPU cross-validation recipe for ESC-50, about an hour for all five "
                    "folds on a 2-core CPU with native bf16 (AVX512-BF16; about 1.5x longer "
                    "in float32 elsewhere): refit mode, so each test fold's model trains on "
                    "ALL four other folds (a third more data than cv) for a fixed 120 "
                    "epochs and its last weights are scored; the quick model (quarter-width "
                    "ResNet18 without the stem's max-pooling, EMA of the weights, random 4 s "
                    "crops, mixup alpha 1.0) on (128, 108) log-mels, bf16 autocast. Chosen on "
                    "ESC-50's validation fold 4 (train folds 1-3, fold 5 never scored): 128 "
                    "mel bands over 64 (0.780 vs 0.757), bf16 over float32 (0.780 both, 1.5x "
                    "faster), 120 epochs (the validation score plateaus from epoch ~80 to "
                    "120), and training on 1200 clips over 800 (0.765 vs 0.660 at the last "
                    "epoch) (benchmarks/README.md). The CPU cross-validation recipe is two "
                    "seeds of it at 80 epochs (benchmarks/train_cv.py --epochs 80 --seeds 2, "
                    "their mean probabilities: 0.792 on validation fold 4 against 0.765 for "
                    "one 120-epoch model; about 75 minutes for all five folds).",
        mode="refit",
        features=replace(_SMALL_FEATURES, n_mels=128),
        model=ModelConfig(arch="resnet18", width=16, stem_pool=False),
        training=replace(_CPU_TRAINING, epochs=120, ema=0.98, crop_frames=86, mixup_alpha=1.0,
                         amp="bf16"),
    ),
    "wave-cv": Profile(
        name="wave-cv",
        description="The raw-waveform comparison: the M5 1-D CNN (64 channels) on 8 kHz "
                    "waveforms, 5-fold cross-validation, the cpu-cv training recipe with "
                    "time masks of up to 0.1 s and no frequency masks.",
        mode="cv",
        features=FeatureConfig(sr=8000, kind="waveform"),
        model=ModelConfig(arch="wavecnn", width=64),
        training=replace(_CPU_TRAINING, epochs=60, ema=0.98, freq_masks=0, time_masks=2,
                         time_width=800),
    ),
    "full": Profile(
        name="full",
        description="The real recipe, meant for a GPU: 5-fold cross-validation, the "
                    "full ResNet18 on (128, 216) log-mels, 120 epochs, random 4 s crops.",
        mode="cv",
        features=FeatureConfig(),
        model=ModelConfig(arch="resnet18", width=64),
        training=TrainConfig(epochs=120, batch_size=32, lr=2e-3, weight_decay=1e-2,
                             schedule="onecycle", warmup=0.2, label_smoothing=0.1,
                             mixup_alpha=0.3, freq_masks=2, freq_width=16, time_masks=2,
                             time_width=24, crop_frames=172),
    ),
}

_SECTIONS = {"features": FeatureConfig, "model": ModelConfig, "training": TrainConfig}


def _flatten(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"training": {"epochs": 3}}`` and ``{"training.epochs": 3}`` both give the latter."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in _SECTIONS and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def apply_overrides(profile: Profile, overrides: dict[str, Any] | None) -> Profile:
    """A copy of ``profile`` with settings replaced.

    Args:
        overrides: ``{"section.field": value}`` (sections ``features``, ``model``,
            ``training``) or nested ``{"section": {"field": value}}``; top-level
            ``mode`` and ``description`` are accepted too.

    Raises:
        ValueError: an unknown section or field, naming the known ones.
    """
    if not overrides:
        return profile
    changes: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    top: dict[str, Any] = {}
    for key, value in _flatten(overrides).items():
        if key in ("mode", "description"):
            top[key] = value
            continue
        section, _, name = key.partition(".")
        if section not in _SECTIONS or not name:
            raise ValueError(
                f"override {key!r}: use 'section.field' with section one of {sorted(_SECTIONS)} "
                "(e.g. 'training.epochs'), or 'mode'"
            )
        known = {f.name for f in fields(_SECTIONS[section])}
        if name not in known:
            raise ValueError(f"override {key!r}: {section} has no field {name!r}; known: {sorted(known)}")
        if name in ("resize", "trainable", "variant_transforms") and isinstance(value, list):
            value = tuple(value)
        changes[section][name] = value
    return replace(
        profile, **top,
        features=replace(profile.features, **changes["features"]),
        model=replace(profile.model, **changes["model"]),
        training=replace(profile.training, **changes["training"]),
    )


def get_profile(name: str | Profile, overrides: dict[str, Any] | None = None) -> Profile:
    """A named profile (or a :class:`Profile` itself) with ``overrides`` applied."""
    if isinstance(name, Profile):
        return apply_overrides(name, overrides)
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} or pass a Profile")
    return apply_overrides(PROFILES[name], overrides)
