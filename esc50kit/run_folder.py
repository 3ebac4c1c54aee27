"""One run folder: its layout, and every read and write of it (:class:`RunFolder`).

:func:`esc50kit.experiment.run_experiment` writes it; the notebooks, ``predict``, the chain
and the benchmarks read it. Keep the layout stable::

    <artifacts_dir>/runs/<run_name>/
        config.json      run_name, data_dir, dataset_files (clips' fingerprint), subset, dataset,
                         class_names (by label), mode, profile, features, model, training,
                         seed, folds, val_offset, splits (name, train/val/test folds),
                         cross_fold, versions, created
        metrics.json     accuracy and macro-F1 per split and mean/std over splits, pooled
                         figures, times, ``warnings``; written last: the run is finished
        predictions.csv  every scored clip (role test; val in validation mode) + ``split``
        summary.md       the figures above as a short report
        audit.txt        every split's leakage audit (sizes, checks, cross-fold clips)
        <split name>/    e.g. ``test5-val4`` (:class:`esc50kit.splits.FoldSplit`)
            checkpoint_best.pt  model state, model_config, train_config, epoch, val_acc
            checkpoint_last.pt  + optimizer, scheduler, scaler, RNG states, history; only
                                while the split trains (unless ``keep_last_checkpoints``)
            history.csv         epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds
            normalizer.json     per-bin mean/std fitted on this split's training rows
            predictions.csv     val and test clips (``role``) scored by the best checkpoint
            metrics.json        this split's figures; written last: the split is done
            seed<k>/            with ``seeds`` > 1 (a seed ensemble): each member's files
                                above, in its own folder; the split's predictions.csv
                                and metrics.json are then the ensemble's (mean
                                probabilities), and metrics.json lists the ``members``
            student/            with ``student`` > 0: the model distilled from the seeds,
                                last; it joins the ensemble and is what ``predict`` loads

The same ``run_name`` resumes: finished splits are read back, an interrupted one continues
from its ``checkpoint_last.pt``. No torch is imported until a model is loaded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from .features import FeatureConfig, Normalizer
from .fileio import atomic_write_csv, atomic_write_json, atomic_write_text

RUNS_DIRNAME = "runs"
CONFIG, METRICS = "config.json", "metrics.json"
PREDICTIONS, NORMALIZER = "predictions.csv", "normalizer.json"
# config.json keys that must agree for a run folder to be resumed
# (the dataset by content, not by path: a moved copy of the same data resumes)
_RESUME_KEYS = ("dataset_files", "subset", "mode", "features", "model", "training", "seed",
                "seeds", "student", "student_epoch_factor", "splits", "cross_fold")
# what a run folder written before a key existed behaved as
_RESUME_DEFAULTS = {"cross_fold": "allow", "seeds": 1, "student": 0.0,
                    "student_epoch_factor": 1.0}


def utc_stamp() -> str:
    """The time now, UTC, as ``YYYYmmdd-HHMMSS`` (run names, set-aside folders)."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


class RunFolderError(RuntimeError):
    """A run folder is missing, unfinished, or inconsistent with its checkpoints."""


def _comparable(key: str, value: Any) -> Any:
    """A config.json section with the defaults of fields added since filled in, so a run
    folder of an older esc50kit (which behaved as those defaults do) resumes."""
    from .models import ModelConfig
    from .training import TrainConfig

    sections = {"features": FeatureConfig, "model": ModelConfig, "training": TrainConfig}
    if key in sections and isinstance(value, dict):
        try:
            return json.loads(json.dumps(sections[key].from_dict(value).to_dict(), default=str))
        except (TypeError, ValueError):
            pass
    return value


@dataclass
class RunResult:
    """A finished run folder, loaded: its files (``histories``: split name -> history.csv)."""

    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    histories: dict[str, pd.DataFrame]

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def split_names(self) -> list[str]:
        return [s["name"] for s in self.config["splits"]]


class TrainedModel(NamedTuple):
    """One split's trained model and what it needs to classify clips."""

    model: Any  # torch module, eval mode
    features: FeatureConfig
    normalizer: Normalizer
    class_names: list[str]
    checkpoint: dict[str, Any]  # the checkpoint file (epoch, val_acc, ema, ...)


@dataclass(frozen=True)
class RunFolder:
    """``<artifacts_dir>/runs/<run_name>/`` (the layout in the module docstring)."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def named(cls, artifacts_dir: str | Path, run_name: str) -> "RunFolder":
        return cls(Path(artifacts_dir) / RUNS_DIRNAME / run_name)

    # --- run level ---------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """``config.json``.

        Raises:
            RunFolderError: there is none, or it is not valid JSON with a ``features`` section.
        """
        path = self.path / CONFIG
        if not path.is_file():
            raise RunFolderError(
                f"{self.path} is not a run folder ({CONFIG} missing). Train one first, "
                "e.g. `python -m esc50kit run --data DATA` (runs land in artifacts/runs/).")
        try:
            config = json.loads(path.read_text())
            FeatureConfig.from_dict(config["features"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RunFolderError(
                f"{path} is unreadable ({type(exc).__name__}: {exc}): the run was "
                "interrupted while it started, or the file was edited. Delete the folder "
                "and train again, or pick another run folder.") from exc
        return config

    def resumable(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` (the JSON view), with the creation time of the run it resumes.

        Raises:
            ValueError: the folder's ``config.json`` is not valid JSON, or differs in a
                setting that changes the run (``_RESUME_KEYS``).
        """
        path = self.path / CONFIG
        if not path.is_file():
            return config
        try:
            old = json.loads(path.read_text())
        except ValueError as exc:  # empty or cut short: a run killed while it started
            raise ValueError(f"{path} is not valid JSON ({exc}); the run cannot be resumed: "
                             f"delete the folder {self.path}, or pick another run name "
                             "(-p run_name NAME, --run-name NAME)") from exc
        diff = [k for k in _RESUME_KEYS if _comparable(k, old.get(k, _RESUME_DEFAULTS.get(k)))
                != _comparable(k, config.get(k, _RESUME_DEFAULTS.get(k)))]
        if diff:
            raise ValueError(
                f"{self.path} holds a run with another configuration (differs in {diff}); "
                "pass another run_name (in the chain: -p run_name NAME), or delete the "
                "folder to start over")
        return {**config, "created": old.get("created", config["created"])}

    def write_start(self, config: dict[str, Any], audit: str) -> None:
        atomic_write_json(self.path / CONFIG, config)
        atomic_write_text(self.path / "audit.txt", audit)

    def write_results(self, predictions: pd.DataFrame, metrics: dict[str, Any],
                      summary: str) -> None:
        """``predictions.csv``, ``summary.md``, then ``metrics.json`` (marks the run finished)."""
        atomic_write_csv(predictions, self.path / PREDICTIONS)
        atomic_write_text(self.path / "summary.md", summary)
        atomic_write_json(self.path / METRICS, metrics)

    def metrics(self) -> dict[str, Any] | None:
        """``metrics.json``, or None while the run is not finished."""
        path = self.path / METRICS
        return json.loads(path.read_text()) if path.is_file() else None

    def load(self) -> RunResult:
        """Read a finished run.

        Raises:
            FileNotFoundError: ``config.json``, ``metrics.json`` or ``predictions.csv`` is
                missing (the run did not finish: run it again with the same ``run_name``).
        """
        for name in (CONFIG, METRICS, PREDICTIONS):
            if not (self.path / name).is_file():
                raise FileNotFoundError(
                    f"{self.path / name} not found: is {self.path} a finished run folder? Run "
                    "run_experiment again with the same run_name to finish it.")
        config = json.loads((self.path / CONFIG).read_text())
        histories = {name: self.history(name) for s in config["splits"]
                     for name in self.member_names(s["name"])}
        return RunResult(run_dir=self.path, config=config, metrics=self.metrics(),
                         predictions=pd.read_csv(self.path / PREDICTIONS),
                         histories={k: v for k, v in histories.items() if v is not None})

    # --- state: what a rerun of the same name will do -------------------------------------

    def state(self) -> tuple[str, list[str], list[str]]:
        """("new" | "finished" | "partial", finished split names, all split names)."""
        if not (self.path / CONFIG).is_file():
            return "new", [], []
        try:
            names = [s["name"] for s in
                     json.loads((self.path / CONFIG).read_text()).get("splits", [])]
        except ValueError:
            return "partial", [], []
        done = [n for n in names if self.split_done(n)]
        return ("finished" if (self.path / METRICS).is_file() else "partial"), done, names

    def describe(self, *, retrain_hint: str = "set retrain = True") -> str:
        """One paragraph for notebook 03: will training happen here, and how to train afresh
        (``retrain_hint``: how the reader asks for a fresh run)."""
        state, done, names = self.state()
        if state == "new":
            return f"Training a new run into {self.path} (progress below)."
        afresh = (f"To train afresh, {retrain_hint} (the old folder is kept, renamed) or choose "
                  "another run_name (give notebook 04 the same one).")
        if state == "finished":
            metrics = self.metrics()
            acc = metrics.get("accuracy", {})
            score = (f", {metrics.get('scored_role', 'test')} accuracy {acc['mean']:.1%}"
                     if isinstance(acc.get("mean"), float) else "")
            when = datetime.fromtimestamp((self.path / METRICS).stat().st_mtime, timezone.utc)
            return (f"Reusing the finished run {self.path} (finished {when:%Y-%m-%d %H:%M} UTC"
                    f"{score}): nothing is trained below; its results are read back. {afresh}")
        left = ", ".join(n for n in names if n not in done) or "the rest"
        return (f"Resuming the interrupted run {self.path}: {len(done)} of {len(names)} "
                f"split(s) finished; training {left} from its last checkpoint. {afresh}")

    def set_aside(self) -> Path | None:
        """Rename the folder to ``<name>.replaced-<UTC time>`` so a run starts afresh;
        returns its new path (None when there was none)."""
        if not self.path.exists():
            return None
        stamp = utc_stamp()
        target, n = self.path.with_name(f"{self.path.name}.replaced-{stamp}"), 1
        while target.exists():
            target, n = self.path.with_name(f"{self.path.name}.replaced-{stamp}-{n}"), n + 1
        self.path.rename(target)
        return target

    # --- split level ---------------------------------------------------------------------

    def member_names(self, split: str) -> list[str]:
        """The folders (relative to the run) of a split's models, in training order: the
        split itself for one model, else ``<split>/seed<k>`` for each seed, then
        ``<split>/student`` where the profile distils them into a student."""
        config = self.config()
        first = config["seed"]
        names = [f"{split}/seed{first + k}" for k in range(config.get("seeds", 1))]
        names += [f"{split}/student"] if config.get("student", 0) > 0 else []
        return names if len(names) > 1 else [split]

    def deployed_member(self, split: str) -> str:
        """The folder of the one model that stands for a split by default (``predict``,
        the upload widget): the student where there is one, else the first seed's."""
        names = self.member_names(split)
        return names[-1] if names[-1].endswith("/student") else names[0]

    def split_done(self, split: str) -> bool:
        return (self.path / split / METRICS).is_file()

    def read_split(self, split: str) -> tuple[dict[str, Any], pd.DataFrame]:
        """A finished split's (metrics, predictions)."""
        d = self.path / split
        return json.loads((d / METRICS).read_text()), pd.read_csv(d / PREDICTIONS)

    def write_split(self, split: str, metrics: dict[str, Any], predictions: pd.DataFrame) -> None:
        """The split's predictions, then its metrics (which mark it done)."""
        atomic_write_csv(predictions, self.path / split / PREDICTIONS)
        atomic_write_json(self.path / split / METRICS, metrics)

    def history(self, split: str) -> pd.DataFrame | None:
        """The split's per-epoch ``history.csv``, or None before its first epoch."""
        from .training import HISTORY

        path = self.path / split / HISTORY
        return pd.read_csv(path) if path.is_file() else None

    def drop_last_checkpoint(self, split: str) -> None:
        from .training import LAST

        (self.path / split / LAST).unlink(missing_ok=True)

    def select_splits(self, split: str | None = None, *, ensemble: bool | None = None) -> list[str]:
        """Split names: ``split`` (a name or a test fold number), every split (``ensemble``;
        default True for a ``cv`` run), or the first.

        Raises:
            RunFolderError: ``split`` is not in the run (or see :meth:`config`).
        """
        config = self.config()
        names = [s["name"] for s in config["splits"]]
        if split is not None:
            wanted = [s for s in names if s == split or s.startswith(f"test{split}-")]
            if not wanted:
                raise RunFolderError(f"split {split!r} is not in {self.path}; it has {names}")
            return wanted
        return names if ensemble or (ensemble is None and config.get("mode") == "cv") else names[:1]

    def load_model(self, split: str | None = None, *, device: str = "cpu",
                   checkpoint: str | None = None, member: int | None = None) -> TrainedModel:
        """The model of one split (default: the first) from its ``checkpoint`` (file name,
        default ``checkpoint_best.pt``), ready to classify clips: of a split of several
        models, its ``member``-th (:meth:`member_names`; default :meth:`deployed_member`,
        the student or else the first seed's); ``split`` may also name a member folder
        (``test5-noval/seed1``).

        Raises:
            RunFolderError: the folder, the checkpoint or the statistics are missing, or
                config.json disagrees with what the checkpoint was trained on.
        """
        from .models import load_checkpoint_model
        from .training import BEST

        config = self.config()
        split = split or config["splits"][0]["name"]
        if "/" not in split:
            split = (self.deployed_member(split) if member is None
                     else self.member_names(split)[member])
        d = self.path / split
        ckpt_path, norm_path = d / (checkpoint or BEST), d / NORMALIZER
        for p in (ckpt_path, norm_path):
            if not p.is_file():
                raise RunFolderError(
                    f"{p} is missing: the split {split} did not finish. Rerun the experiment "
                    "with the same run_name to resume it, or choose another split.")
        model, ckpt = load_checkpoint_model(ckpt_path, device=device)
        features, norm = FeatureConfig.from_dict(config["features"]), Normalizer.load(norm_path)
        names = list(config["class_names"])
        _check_consistent(d, features, ckpt, norm, n_classes=len(names))
        return TrainedModel(model, features, norm, names, ckpt)


def _check_consistent(split_dir: Path, fconf: FeatureConfig, ckpt: dict, norm: Normalizer,
                      *, n_classes: int) -> None:
    """Refuse a run whose features disagree with what its checkpoint was trained on."""
    trained = ckpt.get("features")
    if trained is not None and FeatureConfig.from_dict(trained) != fconf:
        diff = {k: (v, trained.get(k)) for k, v in fconf.to_dict().items() if trained.get(k) != v}
        raise RunFolderError(
            f"{split_dir}: config.json's feature configuration does not match the checkpoint "
            f"(config.json vs checkpoint: {diff}). The run folder was edited or mixed; retrain "
            "or restore its config.json.")
    if norm.n_bins != fconf.shape[0]:
        raise RunFolderError(
            f"{split_dir}: normalizer.json has {norm.n_bins} frequency bins but config.json's "
            f"features give {fconf.shape[0]}; the run folder was edited or mixed. Retrain or "
            "restore its config.json.")
    out = ckpt.get("model_config", {}).get("n_classes")
    if out is not None and out != n_classes:
        raise RunFolderError(
            f"{split_dir}: the checkpoint predicts {out} classes but config.json names "
            f"{n_classes}; the run folder was edited or mixed.")
