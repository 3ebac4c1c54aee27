"""Named training recipes: plain, visible configuration, overridable key by key.

A profile is the features, the model, the training settings and the default mode of a
run. Print one to see every setting; change any of them with ``overrides``::

    get_profile("quick", {"training.epochs": 10, "features.n_mels": 96})
    get_profile("full", {"model": {"width": 32}})

``model.n_classes`` is a placeholder: the experiment sets it from the data. The profiles
were tuned on VALIDATION folds only (the test folds were scored, never used to choose);
timings are for a 2-core laptop-class CPU.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .features import FeatureConfig
from .models import ModelConfig
from .splits import MODES
from .training import TrainConfig


@dataclass(frozen=True)
class Profile:
    """A complete recipe: what it is for and roughly how long it runs (``description``), the
    default mode (one of :data:`esc50kit.splits.MODES`), the three configurations,
    ``seeds``: how many models (seeds ``seed``, ``seed + 1``, ...) each split trains, and
    ``student``: the weight of their mean class probabilities in the training targets of
    one more model per split, trained after them on the same rows (knowledge distillation,
    ``TrainConfig.distill``), or 0 for none. With more than one model a split is scored by
    their ensemble (mean class probabilities); with a student, ``predict`` uses the student
    alone by default: one network that learnt from the ensemble. ``student_epoch_factor``:
    the student trains ``round(training.epochs * student_epoch_factor)`` epochs (1: as many
    as each seed), so an epochs override scales it too."""

    name: str
    description: str
    mode: str
    seeds: int = 1
    student: float = 0.0
    student_epoch_factor: float = 1.0
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"profile {self.name!r}: mode={self.mode!r}; choose one of {MODES}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"profile {self.name!r}: seeds={self.seeds!r} must be an integer "
                             ">= 1 (the models trained per split)")
        if not 0 <= self.student <= 1:
            raise ValueError(f"profile {self.name!r}: student={self.student!r} must be a weight "
                             "in [0, 1] (0: no student)")
        if (isinstance(self.student_epoch_factor, bool)
                or not isinstance(self.student_epoch_factor, (int, float))
                or not self.student_epoch_factor > 0):
            raise ValueError(f"profile {self.name!r}: student_epoch_factor="
                             f"{self.student_epoch_factor!r} must be a number > 0 (1: the "
                             "student trains as many epochs as each seed)")

    @property
    def student_epochs(self) -> int:
        """The epochs the student trains: ``training.epochs * student_epoch_factor``, rounded."""
        return max(1, round(self.training.epochs * self.student_epoch_factor))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "mode": self.mode,
                "seeds": self.seeds, "student": self.student,
                "student_epoch_factor": self.student_epoch_factor,
                **{section: getattr(self, section).to_dict() for section in _SECTIONS}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Profile":
        return cls(name=d["name"], description=d.get("description", ""), mode=d["mode"],
                   seeds=d.get("seeds", 1), student=d.get("student", 0.0),
                   student_epoch_factor=d.get("student_epoch_factor", 1.0),
                   **{name: kind.from_dict(d[name]) for name, kind in _SECTIONS.items()})


# 64 mel bands and a 1024-sample hop at 22.05 kHz: a 5 s clip is a (64, 108) image,
# about a sixth of the pixels of the full (128, 216) input.
_SMALL_FEATURES = FeatureConfig(sr=22050, n_fft=2048, hop_length=1024, n_mels=64)

# 128 mel bands and a 512-sample hop: (128, 216). With the stem's max-pooling kept, the first
# stage sees (32, 54) of it, which makes the CPU recipes' epoch 1.5x faster than the
# (128, 108) input without that pooling, at the same validation accuracy (round 8 of
# benchmarks/results/quick-tuning-esc50.txt).
_FINE_FEATURES = replace(_SMALL_FEATURES, hop_length=512, n_mels=128)
_CPU_MODEL = ModelConfig(arch="resnet18", width=16, stem_pool=True)

# The CPU recipe shared by quick and cpu-cv (both add epochs, crops and a weight average);
# what it does not name (batch 32, AdamW, one-cycle schedule, ...) is TrainConfig's default.
_CPU_TRAINING = TrainConfig(lr=3e-3, warmup=0.25, time_width=12)

PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        description=("Seconds, for tests and smoke runs: an 8-wide ResNet18 on 32 mel bands, "
                     "3 epochs."),
        mode="cv",
        features=FeatureConfig(sr=16000, n_fft=512, hop_length=1024, n_mels=32),
        model=ModelConfig(arch="resnet18", width=8),
        training=TrainConfig(epochs=3, batch_size=16, lr=3e-3, warmup=0.3, time_width=8,
                             freq_width=4),
    ),
    "quick": Profile(
        name="quick",
        description=("The default, about 6 minutes of training on a 2-core CPU with native bf16 "
                     "(about 1.5x longer in float32): one split, final-refit mode (folds 1-4 "
                     "train for a fixed 100 epochs, fold 5 tests once with the last weights); "
                     "the cpu-esc50 model and input (a quarter-width ResNet18 with EMA of the "
                     "weights on (128, 216) log-mels) with its random time stretch and mel "
                     "shift, one seed, plain mixup (cpu-esc50 mixes in power: its single "
                     "model did not gain from that on validation). Chosen on ESC-50's "
                     "validation fold 4 (benchmarks/README.md)."),
        mode="final-refit",
        features=_FINE_FEATURES,
        model=_CPU_MODEL,
        training=replace(_CPU_TRAINING, epochs=100, ema=0.98, crop_frames=172, mixup_alpha=1.0,
                         amp="bf16", time_stretch=0.25, freq_shift=4),
    ),
    "cpu-cv": Profile(
        name="cpu-cv",
        description=("5-fold cross-validation sized for a 2-core CPU (about 6 minutes per run on "
                     "ESC-10): the quick model and crops, mixup alpha 0.2, 120 epochs; "
                     "validation and test clips are scored whole. Chosen on validation folds "
                     "(benchmarks/README.md)."),
        mode="cv",
        features=_SMALL_FEATURES,
        model=ModelConfig(arch="resnet18", width=16, stem_pool=False),
        training=replace(_CPU_TRAINING, epochs=120, ema=0.98, crop_frames=86),
    ),
    "cpu-esc50": Profile(
        name="cpu-esc50",
        description=("The CPU cross-validation recipe for ESC-50, about 90 minutes for all "
                     "five folds on a 2-core CPU with native bf16, two models at a time (about "
                     "1.5x longer in float32): refit mode, so each test fold's models train on "
                     "all four other folds for a fixed epoch count and their last weights are "
                     "scored; two seeds per fold (100 epochs), then a student (150 epochs) whose "
                     "targets are half the label, half the two seeds' mean probabilities; the "
                     "fold is scored by the mean probabilities of all three, and predict uses "
                     "the student; a quarter-width ResNet18 with "
                     "EMA of the weights on (128, 216) log-mels, random 4 s crops, time "
                     "stretch and mel shift, between-class mixing (the sounds mixed in "
                     "power, alpha 1.0), bf16 autocast. Chosen on ESC-50's validation fold 4 "
                     "(benchmarks/README.md); the student's 150 epochs on the inner "
                     "cross-validation over folds 1-4."),
        mode="refit",
        seeds=2,
        student=0.5,
        student_epoch_factor=1.5,
        features=_FINE_FEATURES,
        model=_CPU_MODEL,
        training=replace(_CPU_TRAINING, epochs=100, ema=0.98, crop_frames=172, mixup_alpha=1.0,
                         amp="bf16", time_stretch=0.25, freq_shift=4, mix="power"),
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
        training=TrainConfig(epochs=120, mixup_alpha=0.3, freq_width=16, time_width=24,
                             crop_frames=172),
    ),
}

_SECTIONS = {"features": FeatureConfig, "model": ModelConfig, "training": TrainConfig}
_TOP_LEVEL = ("mode", "seeds", "student", "student_epoch_factor", "description")


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
            ``mode``, ``seeds``, ``student``, ``student_epoch_factor`` and ``description``
            are accepted too.

    Raises:
        ValueError: an unknown section or field, naming the known ones.
    """
    if not overrides:
        return profile
    changes: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    top: dict[str, Any] = {}
    for key, value in _flatten(overrides).items():
        if key in _TOP_LEVEL:
            top[key] = value
            continue
        section, _, name = key.partition(".")
        if section not in _SECTIONS or not name:
            raise ValueError(f"override {key!r}: use 'section.field' with section one of "
                             f"{sorted(_SECTIONS)} (e.g. 'training.epochs'), or one of "
                             f"{_TOP_LEVEL}")
        known = {f.name for f in fields(_SECTIONS[section])}
        if name not in known:
            raise ValueError(f"override {key!r}: {section} has no field {name!r}; "
                             f"known: {sorted(known)}")
        if name in ("resize", "trainable", "variant_transforms") and isinstance(value, list):
            value = tuple(value)
        changes[section][name] = value
    return replace(profile, **top, **{section: replace(getattr(profile, section), **changed)
                                      for section, changed in changes.items()})


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Command-line settings ``SECTION.FIELD=VALUE`` (``--set``) as overrides; VALUE is
    JSON (``0.01``, ``null``, ``true``, ``"bf16"``) or else a bare string (``adam``).

    Raises:
        ValueError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: write SECTION.FIELD=VALUE, e.g. training.lr=0.001")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def get_profile(name: str | Profile, overrides: dict[str, Any] | None = None) -> Profile:
    """A named profile (or a :class:`Profile` itself) with ``overrides`` applied."""
    if isinstance(name, Profile):
        return apply_overrides(name, overrides)
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} or pass "
                         "a Profile")
    return apply_overrides(PROFILES[name], overrides)
