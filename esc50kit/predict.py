"""Classify any recording with a trained run: the Python API and ``python -m esc50kit predict``.

A recording of any length, sample rate and channel count is read as training clips were
(mono, resampled to the run's rate), cut into windows of the training clip length, and
each window is classified; the overall answer averages the windows' probabilities. A
short recording is padded exactly as short training clips were. With a cross-validation
run, the fold models can be averaged (an ensemble) or one fold named; several runs of
one feature configuration (the seeds or validation offsets of
``benchmarks/train_cv.py``) can be averaged together with :meth:`Classifier.from_runs`
(``--run A B ...``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import AudioReadError, fix_length, load_audio, resample
from .features import FeatureConfig, Normalizer, compute

MIN_TAIL_FRACTION = 0.5  # a trailing partial window shorter than this share of a clip is dropped


class RunFolderError(RuntimeError):
    """A run folder is missing, unfinished, or inconsistent with its checkpoints."""


@dataclass
class Prediction:
    """The classification of one recording.

    Attributes:
        source: the file name (or ``"<waveform>"``).
        seconds: length of the recording.
        windows: ``(start_s, end_s)`` of each window.
        probs: shape (n_windows, n_classes), class probabilities per window.
        class_names: names ordered as the columns of ``probs``.
    """

    source: str
    seconds: float
    windows: list[tuple[float, float]]
    probs: np.ndarray
    class_names: list[str]
    models: list[str] = field(default_factory=list)

    @property
    def overall(self) -> np.ndarray:
        """Mean probability over the windows, shape (n_classes,)."""
        return self.probs.mean(axis=0)

    def top(self, k: int = 5, *, window: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` most probable classes, overall or of one window."""
        p = self.overall if window is None else self.probs[window]
        order = np.argsort(-p)[:k]
        return [(self.class_names[i], float(p[i])) for i in order]

    def to_dict(self, k: int = 5) -> dict:
        return {
            "file": self.source,
            "seconds": round(self.seconds, 3),
            "models": self.models,
            "top": [{"class": c, "prob": round(p, 4)} for c, p in self.top(k)],
            "windows": [
                {"start_s": round(a, 3), "end_s": round(b, 3),
                 "top": [{"class": c, "prob": round(p, 4)} for c, p in self.top(k, window=i)]}
                for i, (a, b) in enumerate(self.windows)
            ],
        }


def window_starts(n: int, *, size: int, min_tail: float = MIN_TAIL_FRACTION) -> list[int]:
    """Start samples of the windows of a recording of ``n`` samples.

    Windows of ``size`` samples follow each other without overlap; a trailing partial
    window is kept (and padded like a short training clip) unless it is shorter than
    ``min_tail * size`` and at least one full window exists. A recording shorter than a
    window gives one window.
    """
    if n <= size:
        return [0]
    starts = list(range(0, n - size + 1, size))
    tail = n - (starts[-1] + size)
    if tail >= min_tail * size:
        starts.append(starts[-1] + size)
    return starts


class Classifier:
    """One or several models of a run, with the feature configuration and statistics
    each was trained with.

    Build it with :meth:`from_run`.
    """

    def __init__(self, models: list, normalizers: list[Normalizer], config: FeatureConfig,
                 class_names: list[str], *, names: list[str], device: str = "cpu"):
        self.models = models
        self.normalizers = normalizers
        self.config = config
        self.class_names = class_names
        self.names = names
        self.device = device

    @classmethod
    def from_run(cls, run_dir: str | Path, *, split: str | None = None, ensemble: bool | None = None,
                 device: str = "cpu") -> "Classifier":
        """Load a run folder written by :func:`esc50kit.experiment.run_experiment`.

        Args:
            run_dir: the run folder (holds ``config.json`` and one folder per split).
            split: use this split's model (e.g. ``"test3-val4"``, or just the test fold
                number ``"3"``).
            ensemble: average every split's model. Default: True for a ``cv`` run
                without ``split``, else False (the first split).
            device: torch device.

        Raises:
            RunFolderError: the folder, a checkpoint or its statistics are missing, its
                config.json is unreadable, or the feature configuration does not match
                what the checkpoint was trained on.
            ValueError: ``device`` is not available on this machine.
        """
        from .models import load_checkpoint_model
        from .training import BEST, choose_device

        device = str(choose_device(device))  # refuses a device this machine lacks
        run_dir = Path(run_dir)
        cfg_path = run_dir / "config.json"
        if not cfg_path.is_file():
            raise RunFolderError(
                f"{run_dir} is not a run folder ({cfg_path.name} missing). Train one first, "
                "e.g. `python -m esc50kit run --data DATA` (runs land in artifacts/runs/)."
            )
        try:
            config = json.loads(cfg_path.read_text())
            fconf = FeatureConfig.from_dict(config["features"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RunFolderError(
                f"{cfg_path} is unreadable ({type(exc).__name__}: {exc}): the run was "
                "interrupted while it started, or the file was edited. Delete the folder "
                "and train again, or pick another run folder."
            ) from exc
        all_splits = [s["name"] for s in config["splits"]]
        if split is not None:
            wanted = [s for s in all_splits if s == split or s.startswith(f"test{split}-")]
            if not wanted:
                raise RunFolderError(f"split {split!r} is not in {run_dir}; it has {all_splits}")
        elif ensemble or (ensemble is None and config.get("mode") == "cv"):
            wanted = all_splits
        else:
            wanted = all_splits[:1]
        models, norms = [], []
        for name in wanted:
            ckpt_path = run_dir / name / BEST
            norm_path = run_dir / name / "normalizer.json"
            for p in (ckpt_path, norm_path):
                if not p.is_file():
                    raise RunFolderError(
                        f"{p} is missing: the split {name} did not finish. Rerun the experiment "
                        "with the same run_name to resume it, or choose another split."
                    )
            model, ckpt = load_checkpoint_model(ckpt_path, device=device)
            norm = Normalizer.load(norm_path)
            _check_consistent(run_dir / name, fconf, ckpt, norm, n_classes=len(config["class_names"]))
            models.append(model)
            norms.append(norm)
        return cls(models, norms, fconf, list(config["class_names"]), names=wanted, device=device)

    @classmethod
    def from_runs(cls, run_dirs, *, split: str | None = None, ensemble: bool | None = None,
                  device: str = "cpu") -> "Classifier":
        """Average the models of several runs, e.g. the four runs of a fold ensemble.

        Each run contributes the models :meth:`from_run` would load from it (with the
        same ``split`` and ``ensemble``); model names become ``<run folder>/<split>``.

        Raises:
            RunFolderError: a run cannot be loaded, or the runs disagree on the feature
                configuration or the classes (their models could not be averaged).
        """
        run_dirs = [Path(r) for r in run_dirs]
        if not run_dirs:
            raise RunFolderError("no run folder given")
        parts = [cls.from_run(r, split=split, ensemble=ensemble, device=device) for r in run_dirs]
        first = parts[0]
        for run, part in zip(run_dirs[1:], parts[1:]):
            if part.config != first.config or part.class_names != first.class_names:
                what = "feature configuration" if part.config != first.config else "classes"
                raise RunFolderError(
                    f"{run} differs from {run_dirs[0]} in its {what}; only runs of one "
                    "feature configuration and one class list can be averaged"
                )
        if len(parts) == 1:
            return first
        return cls([m for p in parts for m in p.models],
                   [n for p in parts for n in p.normalizers], first.config, first.class_names,
                   names=[f"{r.name}/{n}" for r, p in zip(run_dirs, parts) for n in p.names],
                   device=device)

    def _features(self, y: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """Windows of a waveform at the run's rate -> features (n_windows, n_bins, frames)."""
        c = self.config
        size = c.n_samples
        starts = window_starts(len(y), size=size)
        feats, spans = [], []
        for s in starts:
            chunk = fix_length(y[s : s + size], size=size, pad_mode=c.pad_mode)
            feats.append(compute(chunk, c))
            spans.append((s / c.sr, min(s + size, len(y)) / c.sr))
        return np.stack(feats), spans

    def predict_waveform(self, y: np.ndarray, *, sr: int, source: str = "<waveform>") -> Prediction:
        """Classify a waveform.

        Args:
            y: shape (samples,) or (samples, channels) (channels are averaged).
            sr: its sample rate; it is resampled to the run's rate.
        """
        import torch

        y = np.asarray(y, dtype=np.float32)
        if y.ndim == 2:
            y = y.mean(axis=1)  # (samples, channels) -> (samples,)
        if y.ndim != 1 or len(y) == 0:
            raise ValueError(f"{source}: expected a non-empty waveform of shape (samples,) or "
                             f"(samples, channels), got {y.shape}")
        y = resample(y, orig_sr=int(sr), target_sr=self.config.sr)
        X, spans = self._features(y)
        probs = []
        with torch.no_grad():
            for model, norm in zip(self.models, self.normalizers):
                x = torch.from_numpy(norm.transform(X)).float()[:, None].to(self.device)  # (windows, 1, bins, frames)
                probs.append(torch.softmax(model(x).float(), dim=1).cpu().numpy())
        return Prediction(source=source, seconds=len(y) / self.config.sr, windows=spans,
                          probs=np.mean(probs, axis=0), class_names=self.class_names,
                          models=self.names)

    def predict_file(self, path: str | Path) -> Prediction:
        """Classify an audio file of any length, rate and channel count.

        Raises:
            AudioReadError: the file cannot be decoded (the message names it).
        """
        y = load_audio(path, sr=self.config.sr, duration=None)
        return self.predict_waveform(y, sr=self.config.sr, source=str(path))


def _check_consistent(split_dir: Path, fconf: FeatureConfig, ckpt: dict, norm: Normalizer,
                      *, n_classes: int) -> None:
    """Refuse a run whose features disagree with what its checkpoint was trained on."""
    trained = ckpt.get("features")
    if trained is not None and FeatureConfig.from_dict(trained) != fconf:
        diff = {k: (v, trained.get(k)) for k, v in fconf.to_dict().items() if trained.get(k) != v}
        raise RunFolderError(
            f"{split_dir}: config.json's feature configuration does not match the checkpoint "
            f"(config.json vs checkpoint: {diff}). The run folder was edited or mixed; retrain "
            "or restore its config.json."
        )
    if norm.n_bins != fconf.shape[0]:
        raise RunFolderError(
            f"{split_dir}: normalizer.json has {norm.n_bins} frequency bins but config.json's "
            f"features give {fconf.shape[0]}; the run folder was edited or mixed. Retrain or "
            "restore its config.json."
        )
    out = ckpt.get("model_config", {}).get("n_classes")
    if out is not None and out != n_classes:
        raise RunFolderError(
            f"{split_dir}: the checkpoint predicts {out} classes but config.json names "
            f"{n_classes}; the run folder was edited or mixed."
        )


# --- command line ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m esc50kit predict``."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (any length, rate, channels)")
    parser.add_argument("--run", required=True, nargs="+", metavar="RUN",
                        help="run folder, e.g. artifacts/runs/quick-ESC-50-master; several "
                             "runs (seeds, validation offsets) are averaged together")
    parser.add_argument("--top", type=int, default=5, help="classes to list (default 5)")
    parser.add_argument("--split", help="use one split's model (name or test fold number)")
    parser.add_argument("--ensemble", action="store_true",
                        help="average every split's model (default for cv runs)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def format_table(pred: Prediction, *, top: int) -> str:
    """A readable table of one prediction: overall top classes, then each window's best."""
    lines = [f"{pred.source}  ({pred.seconds:.1f} s, {len(pred.windows)} window(s), "
             f"{len(pred.models)} model(s))",
             "  rank  class                 prob"]
    for i, (c, p) in enumerate(pred.top(top), 1):
        lines.append(f"  {i:>4}  {c:<20} {p:6.3f}")
    if len(pred.windows) > 1:
        lines.append("  per window: " + " | ".join(
            f"{a:.0f}-{b:.0f} s {pred.top(1, window=i)[0][0]} {pred.top(1, window=i)[0][1]:.2f}"
            for i, (a, b) in enumerate(pred.windows)))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the ``predict`` command; exit status 0 when every file was classified."""
    if args.top < 1:
        raise ValueError(f"--top {args.top} must be at least 1")
    # A bad run folder or device is refused (exit 2, by esc50kit.cli) before any file is read.
    clf = Classifier.from_runs(args.run, split=args.split, ensemble=args.ensemble or None,
                               device=args.device)
    status, results = 0, []
    for f in args.files:
        try:
            pred = clf.predict_file(f)
        except AudioReadError as exc:  # this file only: say why, go on with the others
            print(f"error: {exc.path}: {exc.reason}; no prediction for it", file=sys.stderr)
            status = 1
            continue
        except ValueError as exc:
            print(f"error: {exc}; no prediction for it", file=sys.stderr)
            status = 1
            continue
        if args.json:
            results.append(pred.to_dict(args.top))
        else:
            print(format_table(pred, top=args.top), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return status
