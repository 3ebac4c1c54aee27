"""Classify any recording with a trained run: the Python API and ``python -m esc50kit predict``.

A recording of any length, rate and channel count is read as training clips were (mono, at
the run's rate, short ones padded alike), cut into windows of the training clip length, and
each window is classified; the overall answer averages the windows. The fold models of a
``cv`` run can be averaged or one named; several runs of one feature configuration (seeds,
validation offsets) average with :meth:`Classifier.from_runs` (``--run A B ...``).
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
from .run_folder import RunFolder, RunFolderError

MIN_TAIL_FRACTION = 0.5  # a trailing partial window shorter than this share of a clip is dropped


@dataclass
class Prediction:
    """The classification of one recording."""

    source: str  # the file name (or "<waveform>")
    seconds: float  # length of the recording
    windows: list[tuple[float, float]]  # (start_s, end_s) of each window
    probs: np.ndarray  # (n_windows, n_classes), class probabilities per window
    class_names: list[str]  # ordered as the columns of probs
    models: list[str] = field(default_factory=list)  # the names of the models averaged

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
        def top(window=None):
            return [{"class": c, "prob": round(p, 4)} for c, p in self.top(k, window=window)]

        return {"file": self.source, "seconds": round(self.seconds, 3), "models": self.models,
                "top": top(),
                "windows": [{"start_s": round(a, 3), "end_s": round(b, 3), "top": top(i)}
                            for i, (a, b) in enumerate(self.windows)]}


def window_starts(n: int, *, size: int, min_tail: float = MIN_TAIL_FRACTION) -> list[int]:
    """Start samples of back-to-back windows of ``size`` samples over ``n`` samples.

    A trailing partial window is kept (padded like a short training clip) unless it is
    shorter than ``min_tail * size`` and a full window exists; a short recording gives one.
    """
    if n <= size:
        return [0]
    starts = list(range(0, n - size + 1, size))
    if n - (starts[-1] + size) >= min_tail * size:  # the trailing partial window
        starts.append(starts[-1] + size)
    return starts


@dataclass
class Classifier:
    """One or several models of a run, with the feature configuration and statistics
    each was trained with. Build it with :meth:`from_run` or :meth:`from_runs`."""

    models: list  # torch modules in eval mode
    normalizers: list[Normalizer]  # one per model
    config: FeatureConfig
    class_names: list[str]
    names: list[str] = field(kw_only=True)  # "<split>" or "<run folder>/<split>", one per model
    device: str = field(default="cpu", kw_only=True)

    @classmethod
    def from_run(cls, run_dir: str | Path, *, split: str | None = None,
                 ensemble: bool | None = None, members: bool = False,
                 device: str = "cpu") -> "Classifier":
        """Load a run folder written by :func:`esc50kit.experiment.run_experiment`.

        Args:
            split: use this split's model (e.g. ``"test3-val4"``, or the test fold ``"3"``).
            ensemble: average every split's model. Default: True for a ``cv`` run
                without ``split``, else False (the first split).
            members: of a run whose splits train several models (seeds, a student),
                average every member (their ensemble). Default: one network, the student
                where the profile trains one, else the first seed's model.

        Raises:
            RunFolderError: the folder, a checkpoint or its statistics are missing or
                unreadable, or disagree with what the checkpoint was trained on.
            ValueError: ``device`` is not available on this machine.
        """
        from .training import choose_device

        device = str(choose_device(device))  # refuses a device this machine lacks
        run = RunFolder(run_dir)
        wanted = run.select_splits(split, ensemble=ensemble)
        if members:
            wanted = [name for s in wanted for name in run.member_names(s)]
        loaded = [run.load_model(name, device=device) for name in wanted]
        return cls([m.model for m in loaded], [m.normalizer for m in loaded], loaded[0].features,
                   loaded[0].class_names, names=wanted, device=device)

    @classmethod
    def from_runs(cls, run_dirs, *, split: str | None = None, ensemble: bool | None = None,
                  members: bool = False, device: str = "cpu") -> "Classifier":
        """Average the models :meth:`from_run` loads from each run (e.g. the four runs of a
        fold ensemble); model names become ``<run folder>/<split>``.

        Raises:
            RunFolderError: a run cannot be loaded, or the runs disagree on the feature
                configuration or the classes (their models could not be averaged).
        """
        run_dirs = [Path(r) for r in run_dirs]
        if not run_dirs:
            raise RunFolderError("no run folder given")
        parts = [cls.from_run(r, split=split, ensemble=ensemble, members=members, device=device)
                 for r in run_dirs]
        first = parts[0]
        for run, part in zip(run_dirs[1:], parts[1:]):
            if part.config != first.config or part.class_names != first.class_names:
                what = "feature configuration" if part.config != first.config else "classes"
                raise RunFolderError(
                    f"{run} differs from {run_dirs[0]} in its {what}; only runs of one "
                    "feature configuration and one class list can be averaged")
        if len(parts) == 1:
            return first
        return cls([m for p in parts for m in p.models],
                   [n for p in parts for n in p.normalizers], first.config, first.class_names,
                   names=[f"{r.name}/{n}" for r, p in zip(run_dirs, parts) for n in p.names],
                   device=device)

    def _features(self, y: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """Windows of a waveform at the run's rate -> features (n_windows, n_bins, frames)."""
        c, size = self.config, self.config.n_samples
        starts = window_starts(len(y), size=size)
        feats = [compute(fix_length(y[s:s + size], size=size, pad_mode=c.pad_mode), c)
                 for s in starts]
        return np.stack(feats), [(s / c.sr, min(s + size, len(y)) / c.sr) for s in starts]

    def predict_waveform(self, y: np.ndarray, *, sr: int, source: str = "<waveform>") -> Prediction:
        """Classify a waveform.

        Args:
            y: shape (samples,) or (samples, channels) (channels are averaged).
            sr: its sample rate; it is resampled to the run's rate.
        """
        from .training import predict_proba

        y = np.asarray(y, dtype=np.float32)
        if y.ndim == 2:
            y = y.mean(axis=1)  # (samples, channels) -> (samples,)
        if y.ndim != 1 or len(y) == 0:
            raise ValueError(f"{source}: expected a non-empty waveform of shape (samples,) or "
                             f"(samples, channels), got {y.shape}")
        y = resample(y, orig_sr=int(sr), target_sr=self.config.sr)
        X, spans = self._features(y)
        probs = [predict_proba(model, norm.transform(X), amp="off")  # each (windows, n_classes)
                 for model, norm in zip(self.models, self.normalizers)]
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


# --- command line ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m esc50kit predict``."""
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="audio files (any length, rate, channels)")
    parser.add_argument("--run", required=True, nargs="+", metavar="RUN",
                        help="run folder, e.g. artifacts/runs/quick-ESC-50-master; several "
                             "runs (seeds, validation offsets) are averaged together")
    parser.add_argument("--top", type=int, default=5, help="classes to list (default 5)")
    parser.add_argument("--split", help="use one split's model (name or test fold number)")
    parser.add_argument("--ensemble", action="store_true",
                        help="average every split's model (default for cv runs)")
    parser.add_argument("--members", action="store_true",
                        help="average every model of a split that trains several (seeds and "
                             "any student; default: its student, else its first seed's model)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def format_table(pred: Prediction, *, top: int) -> str:
    """A readable table of one prediction: overall top classes, then each window's best."""
    lines = [f"{pred.source}  ({pred.seconds:.1f} s, {len(pred.windows)} window(s), "
             f"{len(pred.models)} model(s))",
             "  rank  class                 prob"]
    lines += [f"  {i:>4}  {c:<20} {p:6.3f}" for i, (c, p) in enumerate(pred.top(top), 1)]
    if len(pred.windows) > 1:
        lines.append("  per window: " + " | ".join(
            f"{a:.0f}-{b:.0f} s {pred.top(1, window=i)[0][0]} {pred.top(1, window=i)[0][1]:.2f}"
            for i, (a, b) in enumerate(pred.windows)))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the ``predict`` command; exit status 0 when every file was classified."""
    if args.top < 1:
        raise ValueError(f"--top {args.top} must be at least 1")
    # A bad run folder or device is refused (exit 2, by esc50kit.errors) before any file is read.
    clf = Classifier.from_runs(args.run, split=args.split, ensemble=args.ensemble or None,
                               members=args.members, device=args.device)
    status, results = 0, []
    for f in args.files:
        try:
            pred = clf.predict_file(f)
        except (AudioReadError, ValueError) as exc:  # this file only: say why, go on
            why = f"{exc.path}: {exc.reason}" if isinstance(exc, AudioReadError) else exc
            print(f"error: {why}; no prediction for it", file=sys.stderr)
            status = 1
            continue
        if args.json:
            results.append(pred.to_dict(args.top))
        else:
            print(format_table(pred, top=args.top), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return status
