"""MLflow tracking of training runs: a browsable view of the run folders, off unless asked for.

``run_experiment(..., track=True)`` also writes one MLflow run into the experiment named
after the dataset (``ESC-10``, ``ESC-50``, else the data folder; ``MLFLOW_EXPERIMENT_NAME``
overrides it): config.json flattened as params (``training.lr`` ...), each split's curves
(``<split>/val_acc``, step = epoch) and figures (``<split>/test_accuracy``) as it finishes,
the run's figures (``accuracy_mean`` ...), ``confusion_matrix.png`` and the run folder
under ``run/``. The run folder stays the record; a resumed one gives a new, complete MLflow
run; an interrupted one ends ``KILLED`` (Ctrl-C) or ``FAILED``. Runs land in
``MLFLOW_TRACKING_URI``, else ``<artifacts>/mlflow.db``. mlflow is imported only for a
tracked run; without it ``track=True`` warns (:class:`TrackingOffWarning`) and goes on.
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
# config.json entries logged as they are (the sections are logged field by field)
_RUN_PARAMS = ("dataset", "subset", "mode", "seed", "folds", "val_offset", "cross_fold")


class TrackingOffWarning(UserWarning):
    """``track=True`` was asked for, but mlflow cannot be imported: the run goes on untracked."""


def tracking_uri(artifacts_dir: str | Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<artifacts_dir>/mlflow.db`` (absolute)."""
    return (os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{Path(artifacts_dir).expanduser().resolve() / DB_NAME}")


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


def run_metric_values(metrics: dict[str, Any]) -> dict[str, float]:
    """A run's ``metrics.json`` as MLflow metrics: its numbers, and those of ``accuracy``,
    ``macro_f1`` and ``times`` prefixed (``accuracy_mean``, ``times_total_s``, ...)."""
    out = _numbers(metrics)
    for key in ("accuracy", "macro_f1", "times"):
        out.update(_numbers(metrics.get(key) or {}, f"{key}_"))
    return out


class RunTracker:
    """One MLflow run, written as a run folder fills; open it with :func:`tracked`."""

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
                safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
                location = (db.parent / ARTIFACTS_DIRNAME / safe).as_uri()
            try:
                experiment_id = client.create_experiment(name, artifact_location=location)
            except MlflowException:  # another process created it in between
                experiment_id = client.get_experiment_by_name(name).experiment_id
        else:
            experiment_id = experiment.experiment_id
        artifacts = Path(artifacts_dir).expanduser().resolve()
        run_dir = RunFolder.named(artifacts, config["run_name"]).path
        tags = {"esc50kit.run_dir": str(run_dir), "dataset": str(config.get("dataset")),
                "profile": config["profile"]["name"], "mode": config["mode"]}
        run = client.create_run(experiment_id, run_name=config["run_name"], tags=tags)
        params = [Param(k, v) for k, v in config_params(config).items()]
        for i in range(0, len(params), 100):
            client.log_batch(run.info.run_id, params=params[i:i + 100])
        return cls(client, run.info.run_id, uri)

    def _log(self, rows: list[tuple[str, float, int]]) -> None:
        """Log (key, value, step) metrics, in batches of MLflow's size limit."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v, step in rows]
        for i in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + _BATCH])

    def log_split(self, metrics: dict[str, Any], history: pd.DataFrame | None) -> None:
        """One finished split (its ``metrics.json`` and ``history.csv``, None before an
        epoch): the per-epoch curves (step = epoch), then the final figures."""
        curves = [] if history is None else [
            (f"{metrics['name']}/{col}", float(row[col]), int(row["epoch"]))
            for _, row in history.iterrows() for col in history.columns
            if col != "epoch" and pd.notna(row[col])]  # refit: no validation curve
        figures = _numbers(metrics, f"{metrics['name']}/")  # <split>/<figure>
        self._log(curves + [(k, v, 0) for k, v in figures.items()])

    def finish(self, *, run_dir: str | Path, metrics: dict[str, Any], predictions: pd.DataFrame,
               class_names: list[str]) -> None:
        """The run's figures, its confusion matrix and its folder; the run ends FINISHED."""
        import matplotlib.pyplot as plt

        from .evaluation import confusion
        from .plots import plot_confusion

        self._log([(k, v, 0) for k, v in run_metric_values(metrics).items()])
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
    """The tracker of an untracked run: every method (``log_split``, ``finish``) does nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def tracked(*, enabled: bool, config: dict[str, Any],
            artifacts_dir: str | Path) -> Iterator[RunTracker | _Off]:
    """The tracker of one run: an MLflow run when ``enabled`` and mlflow imports, else a
    no-op (with a :class:`TrackingOffWarning` when it was asked for). An exception inside
    ends the MLflow run as ``FAILED`` (``KILLED`` for Ctrl-C) and goes on."""
    reason = enabled and unavailable_reason()  # mlflow is imported only when enabled
    if reason:
        warnings.warn(reason, TrackingOffWarning, stacklevel=3)
    if not enabled or reason:
        yield _Off()
        return
    tracker = RunTracker.start(config=config, artifacts_dir=artifacts_dir)
    try:
        yield tracker
    except BaseException as exc:
        tracker.end(exc)
        raise
