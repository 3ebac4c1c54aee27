"""MLflow tracking of training runs: a browsable view of the run folders, off unless asked for.

The run folder (:mod:`esc50kit.experiment`) stays the record; with tracking on, each call
of ``run_experiment(..., track=True)`` also writes one MLflow run, in the experiment named
after the dataset (``ESC-10``, ``ESC-50``; another table: its folder's name;
``MLFLOW_EXPERIMENT_NAME`` overrides it):

- params: the configuration (``features.*``, ``model.*``, ``training.*``, ``profile``,
  ``seed``, ``mode``, ``folds``, ``val_offset``, ``splits``, ``subset``, ``cross_fold``);
- per-epoch curves of every split, logged as the split finishes, with the epoch as step:
  ``<split>/train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr``, ``seconds``
  (the columns of its ``history.csv``);
- the split's final figures (``<split>/val_accuracy``, ``<split>/test_accuracy``, ...) and,
  at the end, the run's (``overall_accuracy``, ``accuracy_mean``, ``accuracy_std``, ...),
  all read from the dictionaries written to ``metrics.json``;
- artifacts: ``confusion_matrix.png`` (the pooled scored clips) and the run folder under
  ``run/``.

A resumed run folder gives a new MLflow run that logs every split again (those read back
too), so the newest MLflow run of a folder is always complete; an interrupted one ends
``KILLED`` (Ctrl-C) or ``FAILED``.

Where runs land: ``MLFLOW_TRACKING_URI`` when set, else the SQLite file
``<artifacts>/mlflow.db`` with the artifacts beside it in ``<artifacts>/mlflow-artifacts/``.
Look at them with ``mlflow ui --backend-store-uri sqlite:///<artifacts>/mlflow.db``.

Nothing here imports mlflow until a run is tracked: tracking off costs nothing, and a
machine without mlflow runs everything; ``track=True`` there warns
(:class:`TrackingOffWarning`) that tracking is off, why, and how to install it.
"""
from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from .run_folder import RunFolder

INSTALL_HINT = 'pip install -e ".[tracking]"'
DB_NAME = "mlflow.db"
ARTIFACTS_DIRNAME = "mlflow-artifacts"
_BATCH = 1000  # MLflow's limit of metrics per log_batch call (100 for params)
# config.json entries logged as they are (the feature, model and training sections are
# logged field by field)
_RUN_PARAMS = ("dataset", "subset", "mode", "seed", "folds", "val_offset", "cross_fold")


class TrackingOffWarning(UserWarning):
    """``track=True`` was asked for, but mlflow cannot be imported: the run goes on untracked."""


def tracking_uri(artifacts_dir: str | Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<artifacts_dir>/mlflow.db`` (absolute)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(artifacts_dir).expanduser().resolve() / DB_NAME}"


def ui_command(uri: str) -> str:
    """The command that shows the runs of ``uri`` in a browser."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} (an MLflow server)"
    return f"mlflow ui --backend-store-uri {uri}"


def unavailable_reason() -> str | None:
    """Why tracking cannot run here (mlflow does not import), or None when it can."""
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        return (f"tracking is off: mlflow cannot be imported ({exc}); the run goes on "
                f"untracked. Install it with {INSTALL_HINT} (or pip install mlflow)")
    return None


def experiment_name(config: dict[str, Any]) -> str:
    """``MLFLOW_EXPERIMENT_NAME``, else ``ESC-10``/``ESC-50``, else the data folder's name."""
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return os.environ["MLFLOW_EXPERIMENT_NAME"]
    if config.get("dataset") in ("ESC-10", "ESC-50"):
        return config["dataset"]
    return Path(config["data_dir"]).name or str(config.get("dataset", "esc50kit"))


def config_params(config: dict[str, Any]) -> dict[str, str]:
    """The params of a run: ``config.json`` flattened to ``section.field`` strings."""
    params = {"profile": config["profile"]["name"], "run_name": config["run_name"],
              "splits": " ".join(s["name"] for s in config["splits"])}
    params.update({key: config[key] for key in _RUN_PARAMS if key in config})
    for section in ("features", "model", "training"):
        params.update({f"{section}.{k}": v for k, v in config[section].items()})
    return {k: str(v) for k, v in params.items()}


def _numbers(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The int and float entries of ``d`` (no bools, no None), keys prefixed."""
    return {f"{prefix}{k}": float(v) for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def split_metric_values(metrics: dict[str, Any]) -> dict[str, float]:
    """A split's ``metrics.json`` as MLflow metrics: ``<split>/<figure>``."""
    return _numbers(metrics, f"{metrics['name']}/")


def run_metric_values(metrics: dict[str, Any]) -> dict[str, float]:
    """A run's ``metrics.json`` (the run level) as MLflow metrics.

    ``overall_accuracy``, ``overall_macro_f1``, ``n_scored``, ``samples_per_s``,
    ``accuracy_mean``/``_std``/``_n``, ``macro_f1_mean``/``_std``/``_n`` and
    ``times_features_s``, ``times_training_s``, ``times_total_s``.
    """
    out = _numbers(metrics)
    for key in ("accuracy", "macro_f1", "times"):
        out.update(_numbers(metrics.get(key) or {}, f"{key}_"))
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


class RunTracker:
    """One MLflow run, written as a run folder fills (see the module docstring).

    Use :func:`tracked`, which opens it (or nothing, when tracking is off) and closes it
    with the run's outcome.
    """

    def __init__(self, client, run_id: str, uri: str) -> None:
        self.client, self.run_id, self.uri = client, run_id, uri

    @classmethod
    def start(cls, *, config: dict[str, Any], artifacts_dir: str | Path) -> "RunTracker":
        """Create the run (and its experiment, the first time) and log the configuration."""
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        uri = tracking_uri(artifacts_dir)
        client = MlflowClient(tracking_uri=uri)
        name = experiment_name(config)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = None  # a server or another database keeps its own artifact root
            if uri.startswith("sqlite:///"):  # beside the database, never the working folder
                db = Path(uri.removeprefix("sqlite:///"))
                location = (db.parent / ARTIFACTS_DIRNAME / _safe(name)).as_uri()
            try:
                experiment_id = client.create_experiment(name, artifact_location=location)
            except MlflowException:  # another process created it in between
                experiment_id = client.get_experiment_by_name(name).experiment_id
        else:
            experiment_id = experiment.experiment_id
        run_dir = RunFolder.named(Path(artifacts_dir).expanduser().resolve(), config["run_name"]).path
        tags = {"esc50kit.run_dir": str(run_dir),
                "dataset": str(config.get("dataset")), "profile": config["profile"]["name"],
                "mode": config["mode"]}
        run = client.create_run(experiment_id, run_name=config["run_name"], tags=tags)
        params = [Param(k, v) for k, v in config_params(config).items()]
        for i in range(0, len(params), 100):
            client.log_batch(run.info.run_id, params=params[i:i + 100])
        return cls(client, run.info.run_id, uri)

    def _log_metrics(self, values: dict[str, float], *, step: int = 0) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in values.items()]
        for i in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + _BATCH])

    def log_split(self, metrics: dict[str, Any], history: pd.DataFrame | None) -> None:
        """One finished split: its per-epoch curves (step = epoch) and final figures.

        Args:
            metrics: the split's ``metrics.json``.
            history: its ``history.csv``, one row per epoch (None: no curves).
        """
        from mlflow.entities import Metric

        if history is not None and len(history):
            stamp = int(time.time() * 1000)
            curves = [Metric(f"{metrics['name']}/{col}", float(row[col]), stamp, int(row["epoch"]))
                      for _, row in history.iterrows() for col in history.columns
                      if col != "epoch" and pd.notna(row[col])]  # refit: no validation curve
            for i in range(0, len(curves), _BATCH):
                self.client.log_batch(self.run_id, metrics=curves[i:i + _BATCH])
        self._log_metrics(split_metric_values(metrics))

    def finish(self, *, run_dir: str | Path, metrics: dict[str, Any], predictions: pd.DataFrame,
               class_names: list[str]) -> None:
        """The run's figures, its confusion matrix and its folder; the run ends FINISHED."""
        import matplotlib.pyplot as plt

        from .evaluation import confusion
        from .plots import plot_confusion

        self._log_metrics(run_metric_values(metrics))
        size = max(5.0, 0.25 * len(class_names) + 2)
        fig, ax = plt.subplots(figsize=(size, size))
        plot_confusion(confusion(predictions, class_names), ax,
                       title=f"{Path(run_dir).name}: {metrics['scored_role']} clips, all splits")
        try:
            self.client.log_figure(self.run_id, fig, "confusion_matrix.png")
        finally:
            plt.close(fig)
        self.client.log_artifacts(self.run_id, str(run_dir), artifact_path="run")
        self.client.set_terminated(self.run_id, status="FINISHED")

    def end(self, exc: BaseException) -> None:
        """Close the run after ``exc`` stopped it: ``KILLED`` after Ctrl-C, else ``FAILED``."""
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        self.client.set_tag(self.run_id, "esc50kit.stopped_by", type(exc).__name__)
        self.client.set_terminated(self.run_id, status=status)


class _Off:
    """The tracker of an untracked run: every call does nothing."""

    def log_split(self, metrics, history) -> None:
        pass

    def finish(self, **kwargs) -> None:
        pass


@contextlib.contextmanager
def tracked(*, enabled: bool, config: dict[str, Any],
            artifacts_dir: str | Path) -> Iterator[RunTracker | _Off]:
    """The tracker of one run: an MLflow run when ``enabled`` and mlflow imports, else a
    no-op (with a :class:`TrackingOffWarning` when it was asked for). An exception inside
    ends the MLflow run as ``FAILED`` (``KILLED`` for Ctrl-C) and goes on."""
    if not enabled:
        yield _Off()
        return
    reason = unavailable_reason()
    if reason:
        warnings.warn(reason, TrackingOffWarning, stacklevel=3)
        yield _Off()
        return
    tracker = RunTracker.start(config=config, artifacts_dir=artifacts_dir)
    try:
        yield tracker
    except BaseException as exc:
        tracker.end(exc)
        raise
