"""One training loop for every model: optimiser, schedule, augmentation, checkpoints.

Features sit on the training device as one tensor and batches are indexed from it (no
DataLoader). Augmentation (random crop, SpecAugment, mixup) touches training batches only;
validation and test clips are scored whole. The validation fold alone picks the checkpoint
(best accuracy, ties to lower loss) and stops training early; the test fold is never seen
here. Every random draw comes from explicit generators whose states, with every other state,
go into ``checkpoint_last.pt`` after each epoch: a run stopped after any epoch and started
again resumes there and ends, on the CPU, with exactly the weights of an uninterrupted run.

A training folder holds ``checkpoint_last.pt``, ``checkpoint_best.pt`` and ``history.csv``
(:data:`HISTORY_COLUMNS`), all written atomically::

    result = fit(model, X_train, y_train, X_val, y_val, config=TrainConfig(), out_dir="run")
"""
from __future__ import annotations

import copy
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .augment import between_class, mixup, spec_augment, warp
from .fileio import WriteError, atomic_path, atomic_write_csv
from .models import load_checkpoint

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("onecycle", "cosine", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")
MIXES = ("linear", "power")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
LAST, BEST, HISTORY = "checkpoint_last.pt", "checkpoint_best.pt", "history.csv"
# what checkpoint_last.pt holds beside meta and generator states: states, then the record
_STATEFUL = ("model", "ema", "optimizer", "scheduler", "scaler")
_RECORD = ("history", "best", "bad_epochs", "train_seconds", "samples_seen", "finished")
Array = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is trained (stored in checkpoints and runs).

    Attributes:
        epochs: passes over the training rows (the schedule spans all of them).
        lr: peak learning rate (reached after the warm-up).
        weight_decay: decoupled (AdamW) or L2 (Adam); none on biases and norms.
        schedule: ``"onecycle"``, ``"cosine"`` (linear warm-up, cosine decay) or ``"constant"``.
        warmup: fraction of all steps spent warming up.
        label_smoothing: mass spread evenly over the classes of each training target.
        mixup_alpha: Beta(alpha, alpha) of mixup; 0 turns mixup off.
        mix: ``"linear"`` (mixup: the normalised log-mels mixed linearly) or ``"power"``
            (:func:`esc50kit.augment.between_class`: the sounds mixed in power, allowing
            for their loudness; :func:`fit` then needs the normaliser's ``levels``).
        freq_masks, freq_width, time_masks, time_width: SpecAugment masks (count and
            maximum width in bins/frames); 0 masks turn it off.
        crop_frames: random time crop of each training clip (None: whole clips).
        time_stretch, freq_shift: random time stretch (largest relative change of duration,
            e.g. 0.25 for factors 0.8 to 1.25) and mel-axis shift (largest, in bins) of each
            training clip's log-mels before the crop (:func:`esc50kit.augment.warp`); 0: off.
        patience: stop after this many epochs without a better validation score (None: never).
        amp: mixed precision: ``"auto"`` (CUDA: bf16 where supported, else fp16; CPU:
            float32), ``"bf16"`` (CUDA, and CPUs with native bf16 such as AVX512-BF16 or
            AMX, about 1.6x faster there; elsewhere float32, as emulated bf16 is slower),
            ``"fp16"`` (CUDA) or ``"off"``.
        device: ``"auto"`` (CUDA, then Apple MPS, then CPU) or a torch device string.
        grad_clip: clip the gradient norm to this value (None: no clipping).
        variants: waveform-augmented copies of each clip made once, before training (0:
            none); each epoch draws every clip as itself or a copy (:mod:`esc50kit.variants`).
        variant_transforms: what makes them, names from :data:`esc50kit.augment.RANDOM_TRANSFORMS`.
        tta: score validation and test clips by the mean probabilities of the clip and its
            variants (test-time augmentation; needs ``variants``).
        distill: weight of a teacher's class probabilities in each training target
            (knowledge distillation: :func:`fit` takes them as ``teacher``); 0: off.
        ema: decay per step of an exponential moving average of the weights (e.g. 0.99), or
            None. With it the AVERAGED weights are validated, chosen and saved: they move
            less from epoch to epoch than the raw ones.
    """

    epochs: int = 60
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-2
    schedule: str = "onecycle"
    warmup: float = 0.2
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.2
    mix: str = "linear"
    freq_masks: int = 2
    freq_width: int = 8
    time_masks: int = 2
    time_width: int = 16
    crop_frames: int | None = None
    time_stretch: float = 0.0
    freq_shift: int = 0
    patience: int | None = None
    eval_batch_size: int = 128
    amp: str = "auto"
    device: str = "auto"
    grad_clip: float | None = None
    variants: int = 0
    variant_transforms: tuple[str, ...] = ("pitch_shift", "time_stretch", "gain")
    ema: float | None = None
    tta: bool = False
    distill: float = 0.0

    def __post_init__(self) -> None:
        if self.tta and not self.variants:
            raise ValueError("tta=True averages over a clip's variants: set variants >= 1 too")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema={self.ema} must be a decay in (0, 1), e.g. 0.99, or None")
        object.__setattr__(self, "variant_transforms", tuple(self.variant_transforms))
        if self.variants < 0:
            raise ValueError(f"variants={self.variants} must be >= 0 (0 turns them off)")
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("amp", AMP_MODES), ("mix", MIXES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r}; choose one of {choices}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"epochs={self.epochs} must be >= 1 and batch_size={self.batch_size}"
                             " >= 2 (batch norm needs two clips per batch)")
        if self.time_stretch < 0 or self.freq_shift < 0:
            raise ValueError(f"time_stretch={self.time_stretch} and freq_shift="
                             f"{self.freq_shift} must be >= 0 (0 turns them off)")
        if not 0 <= self.distill <= 1:
            raise ValueError(f"distill={self.distill} must be a weight in [0, 1] (0: off)")
        if not 0 <= self.warmup < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError(f"warmup={self.warmup} and label_smoothing={self.label_smoothing} "
                             "must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        history: one row per epoch, columns :data:`HISTORY_COLUMNS`.
        best_epoch: epoch (1-based) of the checkpoint chosen on the validation fold
            (without validation rows: the last epoch).
        best_val_acc, best_val_loss: its validation scores (NaN without validation rows).
        epochs_run: epochs trained in total (resumed ones included).
        stopped_early: True when ``patience`` ended the run.
        resumed_from: epoch of the checkpoint the run resumed from, else None.
        train_seconds: time spent in training steps (scoring excluded), all epochs.
        samples_per_s: training clips per second over ``train_seconds``.
    """

    history: pd.DataFrame
    best_epoch: int
    best_val_acc: float
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    resumed_from: int | None
    train_seconds: float
    samples_per_s: float
    device: str


def choose_device(preference: str = "auto") -> torch.device:
    """``preference`` (a device string such as ``"cuda:1"``, checked to exist) or, for
    ``"auto"``, CUDA if present, then Apple MPS, then the CPU."""
    if preference != "auto":
        return _checked_device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps" if torch.backends.mps.is_available() else "cpu")


def _checked_device(name: str) -> torch.device:
    """``torch.device(name)``, refused here if this machine lacks it (torch would fail
    later, mid-run, with a traceback about deserialising or initialising CUDA)."""
    hint = "use device 'cpu' or 'auto' (--device cpu, or --set training.device=\"auto\")"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {name!r} is not a torch device ({exc}); {hint}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA" if torch.version.cuda is None
                   else "no NVIDIA GPU or driver is visible")
            raise ValueError(f"device {name!r}: CUDA is not available on this machine ({why}; "
                             f"torch {torch.__version__}); {hint}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s), numbered from 0; {hint}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}: Apple MPS is not available here; {hint}")
    return device


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full float32).

    CUDA: bf16 where the GPU supports it (no loss scaling needed), else fp16 with a
    GradScaler. The CPU autocasts only for an explicit ``"bf16"`` and native bf16; ``"auto"``
    keeps it in float32, so results measured before stay reproducible.
    """
    if amp == "off" or device.type not in ("cpu", "cuda"):
        return None
    if device.type == "cpu":
        return torch.bfloat16 if amp == "bf16" and cpu_has_native_bf16() else None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX512-BF16 or AMX, via oneDNN)."""
    mkldnn = torch.backends.mkldnn
    return bool(mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def use_channels_last(model: nn.Module, device: torch.device) -> bool:
    """Whether ``model`` runs channels-last (NHWC): those that prefer it (the ResNets) on
    CUDA and on the CPU, where oneDNN's NHWC convolutions are faster too; not on MPS."""
    return device.type in ("cuda", "cpu") and getattr(model, "prefers_channels_last", False)


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device,
             dtype: torch.dtype | None) -> torch.Tensor:
    """``model(x)``, autocast to ``dtype`` (None: float32), channels-last where it helps."""
    if use_channels_last(model, device):
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
        return model(x)


class TrainingDivergedError(RuntimeError):
    """A training or validation loss became NaN or infinite; the message says where."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace`` it.

    Raises:
        WriteError: (an OSError) e.g. a full disk; the message names ``path`` and what to
            do. ``path`` is left as it was and the temporary file is removed.
    """
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (RuntimeError, OSError) as exc:
        # torch reports a failed write (full disk) as a RuntimeError of its C++ zip writer,
        # with no errno ("PytorchStreamWriter failed writing file data/0: file write failed")
        if not isinstance(exc, OSError) and not any(
                s in str(exc) for s in ("inline_container", "PytorchStreamWriter", "write failed")):
            raise
        raise WriteError(path, exc, what="checkpoint") from exc


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or Adam over the trainable parameters; no weight decay on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=config.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    """Per-step learning-rate schedule spanning ``total_steps`` steps."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps,
            pct_start=max(config.warmup, 1e-3), anneal_strategy="cos",
        )
    warm = int(round(config.warmup * total_steps))

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def random_crop(x: torch.Tensor, frames: int, generator: torch.Generator) -> torch.Tensor:
    """A random window of ``frames`` frames from each clip of ``x``, shape (batch, n_bins, time).

    Each clip gets its own offset, drawn on the CPU ``generator`` so that a seed gives the
    same crops on every device. Clips no longer than ``frames`` are returned unchanged.

    Returns:
        Tensor, shape (batch, n_bins, min(frames, time)).
    """
    batch, n_bins, time_ = x.shape
    if frames >= time_:
        return x
    start = torch.randint(0, time_ - frames + 1, (batch, 1), generator=generator).to(x.device)
    idx = start + torch.arange(frames, device=x.device)  # (batch, frames)
    return torch.gather(x, 2, idx[:, None, :].expand(batch, n_bins, frames))


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy, in float32, of logits (batch, n_classes) of any float dtype
    against soft targets (batch, n_classes) whose rows sum to 1 (smoothing, mixup)."""
    return torch.sum(-target * F.log_softmax(logits.float(), dim=1), dim=1).mean()


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, *, n_classes: int, config: TrainConfig,
    generator: torch.Generator, levels: tuple[np.ndarray, np.ndarray] | None = None,
    teacher: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-only augmentation of ``x``, shape (batch, n_bins, frames), with integer
    labels ``y``, shape (batch,): stretch and shift, crop, SpecAugment, label smoothing, mixup.
    ``levels``: the normaliser's (mean, std), each of shape (n_bins,), for ``mix="power"``;
    ``teacher``: shape (batch, n_classes), a teacher's probabilities, blended into the targets
    with weight ``config.distill`` before mixing.

    Returns:
        (x of shape (batch, 1, n_bins, frames'), soft targets of shape (batch, n_classes)).
    """
    if config.time_stretch or config.freq_shift:
        x = warp(x, max_stretch=config.time_stretch, max_shift=config.freq_shift,
                 generator=generator)
    if config.crop_frames is not None:
        x = random_crop(x, config.crop_frames, generator)
    x = x.unsqueeze(1)  # (batch, 1, n_bins, frames)
    if config.freq_masks or config.time_masks:
        x = spec_augment(x, freq_masks=config.freq_masks, freq_width=config.freq_width,
                         time_masks=config.time_masks, time_width=config.time_width,
                         generator=generator)
    smooth = config.label_smoothing  # one-hot targets, smoothed: (batch, n_classes)
    target = F.one_hot(y, n_classes).float() * (1 - smooth) + smooth / n_classes
    if teacher is not None:
        target = (1 - config.distill) * target + config.distill * teacher.float()
    if config.mixup_alpha > 0 and config.mix == "power":
        if levels is None:
            raise ValueError('mix="power" mixes in dB: pass the normaliser\'s levels '
                             "(mean, std) to fit (levels=(norm.mean, norm.std))")
        x, target = between_class(x, target, alpha=config.mixup_alpha, mean=levels[0],
                                  std=levels[1], generator=generator)
    elif config.mixup_alpha > 0:
        x, target = mixup(x, target, alpha=config.mixup_alpha, generator=generator)
    return x, target


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches of one epoch; a last batch of one clip is dropped (batch norm)."""
    perm = torch.randperm(n, generator=generator)
    out = list(torch.split(perm, batch_size))
    if len(out) > 1 and len(out[-1]) < 2:
        out.pop()
    return out


@torch.no_grad()
def predict_logits(
    model: nn.Module, X: Array, *, batch_size: int = 128,
    device: torch.device | str | None = None, amp: str = "auto",
) -> torch.Tensor:
    """Logits of whole clips ``X``, shape (N, n_bins, frames), in eval mode, no augmentation.

    Returns:
        Tensor, shape (N, n_classes), float32, on the CPU.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    X = torch.as_tensor(X, dtype=torch.float32)
    dtype = amp_dtype(amp, device)
    model.eval()
    outs = []
    for i in range(0, len(X), batch_size):
        xb = X[i : i + batch_size].to(device, non_blocking=True)[:, None]  # (batch, 1, bins, t)
        outs.append(_forward(model, xb, device, dtype).float().cpu())
    return torch.cat(outs) if outs else torch.zeros(0, 0)


def predict_proba(model: nn.Module, X, **kwargs) -> np.ndarray:
    """Class probabilities of whole clips. Returns np.ndarray, shape (N, n_classes)."""
    return torch.softmax(predict_logits(model, X, **kwargs), dim=1).numpy()


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, **kwargs) -> tuple[float, float]:
    """Cross-entropy (no smoothing) and accuracy of whole clips. Returns (loss, accuracy)."""
    logits = predict_logits(model, X, **kwargs)
    y = torch.as_tensor(y).cpu()
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, *, decay: float, step: int) -> None:
    """Move ``ema_model`` towards ``model``: ``ema = d * ema + (1 - d) * weights``.

    The decay ramps up as ``min(decay, (1 + step) / (10 + step))``, so the first steps
    are not tied to the random initial weights. Batch-norm statistics are copied.
    """
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema_model.parameters()),
                         [p.detach() for p in model.parameters()], 1.0 - d)
    for b_ema, b in zip(ema_model.buffers(), model.buffers()):
        b_ema.copy_(b)


def _n_classes(model: nn.Module) -> int:
    cfg = getattr(model, "config", None)
    if hasattr(cfg, "n_classes"):
        return int(cfg.n_classes)
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features


def _diverged(which: str, value: float, epoch: int, out: Path | None) -> str:
    kept = (f" {out / LAST} still holds the last finished epoch." if out is not None
            and (out / LAST).is_file() else "")
    return (f"the {which} loss became {value} in epoch {epoch}: training diverged, and "
            "every later result would be meaningless. Lower the learning rate (e.g. "
            "--set training.lr=...) or set training.grad_clip, and start a new run "
            f"(resuming repeats the same steps).{kept}")


def _checked_inputs(X_train: Array, y_train: Array, X_val: Array, y_val: Array, *,
                    patience: int | None) -> list[torch.Tensor]:
    """``[X_train, y_train, X_val, y_val]`` as float32/long tensors, checked (see :func:`fit`)."""
    if len(X_train) != len(y_train) or len(X_val) != len(y_val):
        raise ValueError(f"features and labels differ in length: train {len(X_train)} vs "
                         f"{len(y_train)}, val {len(X_val)} vs {len(y_val)}")
    if len(X_train) < 2:
        raise ValueError(f"need >= 2 training clips, got {len(X_train)}")
    if not len(X_val) and patience is not None:
        raise ValueError(f"patience={patience} stops on the validation score, and there "
                         "are no validation clips: set patience=None (a fixed epoch count)")
    tensors = [torch.as_tensor(a, dtype=torch.long if i % 2 else torch.float32)
               for i, a in enumerate((X_train, y_train, X_val, y_val))]
    for name, X in (("X_train", tensors[0]), ("X_val", tensors[2])):
        if not bool(torch.isfinite(X).all()):
            raise ValueError(f"{name} holds NaN or infinite values; a clip or the normaliser "
                             "statistics are damaged (check the clips' audio, or delete the "
                             "feature cache to recompute it)")
    if tensors[0].dim() not in (3, 4):
        raise ValueError(f"X_train must have shape (N, n_bins, frames) or (N, V, n_bins, frames), "
                         f"got {tuple(tensors[0].shape)}")
    return tensors


@dataclass
class _Training:
    """What :func:`fit` and :func:`lr_find` train with, and fit's record of the epochs so far.

    ``rngs``: CPU generators (``esc50kit.augment`` draws there) of shuffling, augmentation
    and variant picks. :attr:`scored` (``ema``, with ``config.ema``) is validated and saved.
    """

    model: nn.Module
    config: TrainConfig
    device: torch.device
    dtype: torch.dtype | None
    n_classes: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: nn.Module | None
    rngs: dict[str, torch.Generator]
    levels: tuple[np.ndarray, np.ndarray] | None = None  # the normaliser's (mean, std)
    teacher: torch.Tensor | None = None  # (N, n_classes): distillation targets, on the device
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(
        default_factory=lambda: {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf})
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    train_seconds: float = 0.0
    samples_seen: int = 0
    resumed_from: int | None = None
    finished: bool = False

    @property
    def scored(self) -> nn.Module:
        return self.ema if self.ema is not None else self.model

    @property
    def stopped_early(self) -> bool:
        patience = self.config.patience
        return bool(self.history) and patience is not None and self.bad_epochs >= patience


def _start(model: nn.Module, config: TrainConfig, *, seed: int, schedule) -> _Training:
    """Move ``model`` to the training device (channels-last where that is faster) and make
    what trains it: optimiser, ``schedule(optimizer)``, grad scaler, EMA copy, generators."""
    device = choose_device(config.device)
    dtype = amp_dtype(config.amp, device)
    model.to(device)
    if use_channels_last(model, device):
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    return _Training(
        model=model, config=config, device=device, dtype=dtype, n_classes=_n_classes(model),
        optimizer=optimizer, scheduler=schedule(optimizer),
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        ema=copy.deepcopy(model) if config.ema is not None else None,
        rngs={name: torch.Generator().manual_seed(seed + i)
              for i, name in enumerate(("shuffle", "augment", "variant"))},
    )


def _resume(run: _Training, path: Path) -> None:
    """Restore ``run`` (weights, optimiser, generators, history) from ``checkpoint_last.pt``."""
    ckpt = load_checkpoint(path)
    if TrainConfig.from_dict(ckpt["train_config"]) != run.config:  # older files: defaults filled
        raise ValueError(f"{path} was written with another training configuration "
                         f"({ckpt['train_config']}); use the same settings to resume, or "
                         "pass resume=False / a new folder to start over")
    for key in _STATEFUL:
        if getattr(run, key) is not None:
            getattr(run, key).load_state_dict(ckpt[key])
    for name, generator in run.rngs.items():
        if ckpt["rng"].get(name) is not None:  # older files have no "variant"
            generator.set_state(ckpt["rng"][name])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if run.device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    for key in _RECORD:  # older files have no "finished"
        setattr(run, key, ckpt.get(key, getattr(run, key)))
    run.resumed_from = ckpt["epoch"]


def _train_step(run: _Training, X: torch.Tensor, y: torch.Tensor,
                idx: torch.Tensor) -> tuple[float, int]:
    """One step of :func:`fit` and :func:`lr_find` on the clips ``idx`` (CPU indices into
    ``X``, shape (N, n_bins, frames) or (N, V, n_bins, frames), and ``y``, shape (N,)).

    Returns:
        (the loss, maybe NaN or infinite; clips whose logits' argmax is the target's).
    """
    pos = idx.to(run.device)
    if X.dim() == 4:  # one version of each clip: itself or a variant
        pick = torch.randint(0, X.shape[1], (len(idx),), generator=run.rngs["variant"])
        x = X[pos, pick.to(run.device)]
    else:
        x = X[pos]
    xb, target = augment_batch(x, y[pos], n_classes=run.n_classes, config=run.config,
                               generator=run.rngs["augment"], levels=run.levels,
                               teacher=None if run.teacher is None else run.teacher[pos])
    logits = _forward(run.model, xb, run.device, run.dtype)
    loss = soft_cross_entropy(logits, target)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.config.grad_clip is not None:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    if run.ema is not None:
        ema_update(run.ema, run.model, decay=run.config.ema, step=run.scheduler.last_epoch)
    return loss.item(), int((logits.argmax(1) == target.argmax(1)).sum())


def _run_epoch(run: _Training, data: list[torch.Tensor], epoch: int, out: Path | None) -> bool:
    """Train one epoch, score it on the validation clips, record it in ``run.history``.

    Returns whether its weights are the best so far (then kept in ``run.best_state``).
    Raises TrainingDivergedError if a training or the validation loss is not finite.
    """
    X, y, X_val, y_val = data
    t0 = time.perf_counter()
    run.model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for idx in _batches(len(X), run.config.batch_size, run.rngs["shuffle"]):
        loss, right = _train_step(run, X, y, idx)
        if not math.isfinite(loss):
            raise TrainingDivergedError(_diverged("training", loss, epoch, out))
        loss_sum, correct, seen = loss_sum + loss * len(idx), correct + right, seen + len(idx)
    run.train_seconds += time.perf_counter() - t0
    run.samples_seen += seen
    val_loss = val_acc = math.nan
    if len(X_val):
        val_loss, val_acc = evaluate(run.scored, X_val, y_val, device=run.device,
                                     batch_size=run.config.eval_batch_size, amp=run.config.amp)
        if not math.isfinite(val_loss):
            raise TrainingDivergedError(_diverged("validation", val_loss, epoch, out))
    run.history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                        "val_loss": val_loss, "val_acc": val_acc,
                        "lr": run.optimizer.param_groups[0]["lr"],
                        "seconds": time.perf_counter() - t0})
    # The validation fold alone chooses: higher accuracy, ties to lower loss. Without
    # one, the last epoch's weights are kept (a fixed epoch count), so they are copied
    # and saved once, at the end, not every epoch.
    improved = ((val_acc, -val_loss) > (run.best["val_acc"], -run.best["val_loss"])
                if len(X_val) else epoch == run.config.epochs)
    if improved:
        run.best = {"epoch": epoch, "val_acc": val_acc, "val_loss": val_loss}
        run.bad_epochs = 0
        run.best_state = copy.deepcopy(run.scored.state_dict())
    else:
        run.bad_epochs += 1
    run.finished = run.stopped_early or epoch == run.config.epochs
    return improved


def _save(run: _Training, out: Path, meta: dict[str, Any], *, improved: bool) -> None:
    """Write ``checkpoint_best.pt`` (if ``improved``), ``checkpoint_last.pt`` (all that
    resuming needs) and ``history.csv`` to ``out``."""
    if improved:
        atomic_save({**meta, "model": run.best_state, **run.best}, out / BEST)
    rng = {name: generator.get_state() for name, generator in run.rngs.items()}
    rng["torch"] = torch.get_rng_state()
    rng["cuda"] = torch.cuda.get_rng_state() if run.device.type == "cuda" else None
    states = {key: getattr(run, key) for key in _STATEFUL}
    atomic_save({**meta, **{key: part.state_dict() if part is not None else None
                            for key, part in states.items()},
                 **{key: getattr(run, key) for key in _RECORD}, "rng": rng}, out / LAST)
    atomic_write_csv(pd.DataFrame(run.history, columns=HISTORY_COLUMNS), out / HISTORY)


def _train_epochs(run: _Training, data: list[torch.Tensor], *, out: Path | None,
                  meta: dict[str, Any], stop_after: int | None, progress: bool, desc: str) -> None:
    """The epochs left after ``run.history``, each saved to ``out``, until the last one,
    early stopping or ``stop_after``, with a tqdm bar (when ``progress``) labelled ``desc``."""
    from tqdm.auto import tqdm

    epochs = run.config.epochs
    with tqdm(total=epochs, initial=epochs if run.finished else len(run.history), desc=desc,
              unit="epoch", disable=not progress, leave=True, dynamic_ncols=True,
              mininterval=0.1 if sys.stderr.isatty() else 30.0) as bar:
        for epoch in range(len(run.history) + 1, epochs + 1):
            if run.stopped_early or run.finished:
                break
            improved = _run_epoch(run, data, epoch, out)
            if out is not None:
                _save(run, out, {**meta, "epoch": epoch}, improved=improved)
            bar.update(1)
            row, best = run.history[-1], run.best
            postfix = {"loss": f"{row['train_loss']:.3f}"}
            if len(data[2]):
                postfix.update(val_acc=f"{row['val_acc']:.3f}",
                               best=f"{best['val_acc']:.3f}@{best['epoch']}")
            bar.set_postfix(postfix, refresh=False)
            if stop_after is not None and epoch >= stop_after:
                break


def _result(run: _Training, out: Path | None) -> FitResult:
    """Load the chosen weights into ``run.model`` and say what the run did."""
    best_state = run.best_state
    if best_state is None and out is not None and (out / BEST).is_file():
        best_state = load_checkpoint(out / BEST)["model"]
    if best_state is not None:
        run.model.load_state_dict(best_state)
    return FitResult(
        history=pd.DataFrame(run.history, columns=HISTORY_COLUMNS),
        best_epoch=int(run.best["epoch"]), best_val_acc=float(run.best["val_acc"]),
        best_val_loss=float(run.best["val_loss"]), epochs_run=len(run.history),
        stopped_early=run.stopped_early, resumed_from=run.resumed_from,
        train_seconds=run.train_seconds, device=str(run.device),
        samples_per_s=(run.samples_seen / run.train_seconds if run.train_seconds > 0
                       else float("nan")),
    )


def fit(
    model: nn.Module, X_train: Array, y_train: Array, X_val: Array, y_val: Array, *,
    config: TrainConfig, out_dir: str | Path | None = None, seed: int = 0,
    progress: bool = True, desc: str = "train", resume: bool = True,
    stop_after_epoch: int | None = None, checkpoint_meta: dict[str, Any] | None = None,
    levels: tuple[np.ndarray, np.ndarray] | None = None, teacher: Array | None = None,
) -> FitResult:
    """Train ``model`` on the training rows, choosing the checkpoint on the validation rows.

    Args:
        model: any module mapping (batch, 1, n_bins, frames) to (batch, n_classes).
        X_train: shape (N, n_bins, frames), features normalised with statistics of the
            training rows only; or (N, V, n_bins, frames): V versions of every clip
            (itself and its augmented variants), one drawn at random per clip and epoch.
        y_train: shape (N,), integer labels 0..n_classes-1.
        X_val, y_val: the validation fold, same layout (any number of frames). Empty
            (0 rows): no validation, for an epoch count chosen on validation before
            (``refit`` mode): the last epoch's weights are the "best" checkpoint, the
            history's validation columns are NaN and ``patience`` must be None.
        out_dir: folder for checkpoints and ``history.csv`` (None: nothing on disk, no
            resuming).
        progress, desc: show a tqdm bar labelled ``desc`` (one per call, updated every epoch).
        resume: continue from ``out_dir/checkpoint_last.pt`` when it exists.
        stop_after_epoch: return after this epoch as if interrupted (for tests, or to
            split a long run); a later call with ``resume=True`` goes on from there.
        checkpoint_meta: extra entries stored in every checkpoint (the experiment
            stores the feature configuration, so a predictor can check it).
        levels: the normaliser's per-bin (mean, std) in dB, shape (n_bins,) each; needed
            by ``config.mix="power"``, which mixes the sounds before normalising again.
        teacher: shape (N, n_classes), a teacher's class probabilities of every training
            clip (e.g. an ensemble's): with ``config.distill > 0`` each target becomes
            ``(1 - distill) * label + distill * teacher`` (knowledge distillation).

    Returns:
        FitResult. ``model`` holds the best weights (chosen on the validation fold; the
        last ones without validation rows).

    Raises:
        ValueError: inputs of mismatched lengths or with non-finite values, or a
            checkpoint written with another training configuration.
        TrainingDivergedError: a loss became NaN or infinite (checked every step).
        WriteError: a checkpoint could not be written (e.g. a full disk).
    """
    data = _checked_inputs(X_train, y_train, X_val, y_val, patience=config.patience)
    total_steps = config.epochs * len(_batches(len(data[0]), config.batch_size, torch.Generator()))
    run = _start(model, config, seed=seed,
                 schedule=lambda opt: make_scheduler(opt, config, total_steps))
    run.levels = levels
    run.teacher = _checked_teacher(teacher, config, len(data[0]), run)
    # The whole training set lives on the device: batches are indexed, never copied from host.
    data[0], data[1] = data[0].to(run.device), data[1].to(run.device)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and resume and (out / LAST).is_file():
        _resume(run, out / LAST)
    elif out is not None:
        for name in (LAST, BEST, HISTORY):  # a fresh start leaves no stale files behind
            (out / name).unlink(missing_ok=True)
    cfg = getattr(model, "config", None)
    meta = {**(checkpoint_meta or {}),
            "model_config": cfg.to_dict() if hasattr(cfg, "to_dict") else None,
            "train_config": config.to_dict(), "seed": seed}
    _train_epochs(run, data, out=out, meta=meta, stop_after=stop_after_epoch,
                  progress=progress, desc=desc)
    return _result(run, out)


def _checked_teacher(teacher: Array | None, config: TrainConfig, n: int,
                     run: _Training) -> torch.Tensor | None:
    """The teacher's probabilities as a (n, n_classes) tensor on the device, or None."""
    if (teacher is None) != (config.distill == 0):
        raise ValueError(f"distill={config.distill} and teacher "
                         f"{'None' if teacher is None else 'given'}: give a teacher's "
                         "probabilities exactly when distill > 0")
    if teacher is None:
        return None
    t = torch.as_tensor(np.asarray(teacher), dtype=torch.float32)
    if t.shape != (n, run.n_classes) or not torch.allclose(t.sum(1), torch.ones(n), atol=1e-3):
        raise ValueError(f"teacher has shape {tuple(t.shape)}; need ({n}, {run.n_classes}): "
                         "one row of class probabilities (summing to 1) per training clip")
    return t.to(run.device)


@dataclass
class LRFinderResult:
    """Loss against learning rate from :func:`lr_find`.

    Attributes:
        history: columns ``lr``, ``loss`` and ``smoothed`` (exponential moving average).
        suggestion: the learning rate where the smoothed loss falls fastest.
    """

    history: pd.DataFrame
    suggestion: float


def lr_find(
    model: nn.Module, X: Array, y: Array, *, config: TrainConfig, start_lr: float = 1e-6,
    end_lr: float = 1.0, num_steps: int = 60, seed: int = 0, diverge: float = 4.0,
    levels: tuple[np.ndarray, np.ndarray] | None = None,
) -> LRFinderResult:
    """The learning-rate range test: raise the rate exponentially, step by step.

    Training steps of :func:`fit` (augmentation, channels-last, mixed precision, grad
    clipping as ``config`` says; no EMA) run on TRAINING rows only, with the learning
    rate growing from ``start_lr`` to ``end_lr``; the test stops early when the loss
    exceeds ``diverge`` times its best. The model's weights are restored afterwards.
    ``levels``: the normaliser's (mean, std), for ``config.mix="power"`` (as in :func:`fit`).

    Returns:
        LRFinderResult: the curve and a suggested peak learning rate.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    X, y, _, _ = _checked_inputs(X, y, X[:0], y[:0], patience=None)
    gamma = (end_lr / start_lr) ** (1 / max(1, num_steps - 1))
    saved = copy.deepcopy(model.state_dict())
    run = _start(model, replace(config, lr=start_lr, ema=None), seed=seed,
                 schedule=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: gamma**s))
    run.levels = levels
    X, y = X.to(run.device), y.to(run.device)
    model.train()
    rows, avg, best_loss, batches = [], 0.0, math.inf, []
    try:
        for step in range(num_steps):
            batches = batches or _batches(len(X), config.batch_size, run.rngs["shuffle"])
            value, _ = _train_step(run, X, y, batches.pop(0))
            avg = 0.9 * avg + 0.1 * value
            smoothed = avg / (1 - 0.9 ** (step + 1))  # bias-corrected moving average
            rows.append({"lr": start_lr * gamma**step, "loss": value, "smoothed": smoothed})
            best_loss = min(best_loss, smoothed)
            if not math.isfinite(value) or smoothed > diverge * best_loss:
                break
    finally:
        model.load_state_dict(saved)
    hist = pd.DataFrame(rows, columns=["lr", "loss", "smoothed"])
    if len(hist) < 3:
        suggestion = float(hist["lr"].iloc[0]) if len(hist) else start_lr
    else:
        slope = np.gradient(hist["smoothed"].to_numpy(), np.log10(hist["lr"].to_numpy()))
        suggestion = float(hist["lr"].iloc[int(np.argmin(slope))])
    return LRFinderResult(history=hist, suggestion=suggestion)
