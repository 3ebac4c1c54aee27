"""MLflow tracking: a tracked run's MLflow record equals its run folder; without mlflow, runs go on."""
from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from esc50kit.experiment import run_experiment
from esc50kit.tracking import TrackingOffWarning

pytestmark = pytest.mark.usefixtures("torch_one_thread")
TINY = dict(profile="tiny", overrides={"training.epochs": 2}, progress=False)


def _script(name: str):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_tracked_run_logs_what_its_run_folder_holds(synthetic_root, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    run = run_experiment(synthetic_root, artifacts_dir=tmp_path / "a", mode="cv", folds=(1, 2, 3),
                         run_name="tracked", track=True, **TINY)

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(synthetic_root.name)  # a custom table: its folder
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "tracked" and found.info.status == "FINISHED"
    assert found.data.tags["esc50kit.run_dir"] == str(run.run_dir.resolve())

    # params: the configuration, section by section
    config = json.loads((run.run_dir / "config.json").read_text())
    params = found.data.params
    assert params["profile"] == "tiny" and params["seed"] == "0" and params["mode"] == "cv"
    assert params["training.epochs"] == "2" and params["training.lr"] == str(config["training"]["lr"])
    assert params["features.n_mels"] == "32" and params["model.width"] == "8"
    assert params["splits"] == "test1-val2 test2-val3 test3-val1"

    # final metrics: equal to metrics.json, run level and per split
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    logged = found.data.metrics
    assert logged["overall_accuracy"] == metrics["overall_accuracy"]
    assert logged["overall_macro_f1"] == metrics["overall_macro_f1"]
    assert logged["accuracy_mean"] == metrics["accuracy"]["mean"]
    assert logged["accuracy_std"] == metrics["accuracy"]["std"]
    assert logged["times_training_s"] == metrics["times"]["training_s"]
    for split in metrics["splits"]:
        for key in ("test_accuracy", "val_accuracy", "test_macro_f1", "best_epoch", "n_train"):
            assert logged[f"{split['name']}/{key}"] == split[key], (split["name"], key)

    # per-epoch curves: every history.csv column, the epoch as step
    for name in run.split_names:
        history = pd.read_csv(run.run_dir / name / "history.csv")
        for col in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            points = client.get_metric_history(found.info.run_id, f"{name}/{col}")
            assert [p.step for p in points] == history["epoch"].tolist() == [1, 2]
            assert [p.value for p in points] == history[col].tolist()

    # artifacts: the confusion matrix and the run folder, beside the database
    top = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert top == {"confusion_matrix.png", "run"}
    files = {a.path for a in client.list_artifacts(found.info.run_id, "run")}
    assert {"run/config.json", "run/metrics.json", "run/predictions.csv", "run/test1-val2"} <= files
    assert {a.path for a in client.list_artifacts(found.info.run_id, "run/test1-val2")} >= {
        "run/test1-val2/checkpoint_best.pt", "run/test1-val2/history.csv"}
    assert (tmp_path / "store" / "mlflow-artifacts").is_dir()
    assert not (Path.cwd() / "mlruns").exists()


def test_the_default_store_is_a_sqlite_file_in_the_artifacts_folder(tmp_path, monkeypatch):
    from esc50kit.tracking import tracking_uri, ui_command

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking_uri(tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert ui_command(uri) == f"mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_uri(tmp_path) == "http://tracking.example:5000"


def test_an_interrupted_tracked_run_ends_killed_and_its_rerun_logs_every_split(
        synthetic_root, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "resume-test")

    def stop_after_first(index, metrics):
        raise KeyboardInterrupt

    kw = dict(artifacts_dir=tmp_path, mode="cv", folds=(1, 2, 3), run_name="r", track=True, **TINY)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(synthetic_root, on_split=stop_after_first, **kw)
    run = run_experiment(synthetic_root, **kw)  # resumes: split 1 read back
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path.resolve()}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("resume-test").experiment_id],
                              order_by=["attribute.start_time ASC"])
    assert [r.info.status for r in runs] == ["KILLED", "FINISHED"]
    assert runs[0].data.tags["esc50kit.stopped_by"] == "KeyboardInterrupt"
    assert runs[1].data.metrics["overall_accuracy"] == run.metrics["overall_accuracy"]
    for name in run.split_names:  # the split read back is logged again, curves included
        assert len(client.get_metric_history(runs[1].info.run_id, f"{name}/val_acc")) == 2


def test_without_mlflow_a_tracked_run_completes_and_says_tracking_is_off(
        synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    kw = dict(artifacts_dir=tmp_path, mode="final", **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingOffWarning)  # tracking off: nothing tried
        run_experiment(synthetic_root, run_name="off", **kw)
    with pytest.warns(TrackingOffWarning, match=r'tracking is off.*pip install -e "\.\[tracking\]"'):
        run = run_experiment(synthetic_root, run_name="asked", track=True, **kw)
    assert (run.run_dir / "metrics.json").is_file() and run.metrics["overall_accuracy"] >= 0
    assert not (tmp_path / "mlflow.db").exists()

    train_cv = _script("train_cv")
    args = ["--data", str(synthetic_root), "--profile", "tiny", "--epochs", "1", "--threads", "1",
            "--artifacts", str(tmp_path), "--run-name", "cli", "--no-progress", "--track"]
    assert train_cv.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("tracking is off: mlflow cannot be imported")
    assert 'pip install -e ".[tracking]"' in out.splitlines()[0]
    assert out.strip().splitlines()[-1].startswith("overall test accuracy: ")


def test_train_cv_says_where_tracked_runs_go(synthetic_root, tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    train_cv = _script("train_cv")
    args = ["--data", str(synthetic_root), "--profile", "tiny", "--epochs", "1", "--threads", "1",
            "--artifacts", str(tmp_path), "--run-name", "cli", "--no-progress", "--track"]
    assert train_cv.main(args) == 0
    first = capsys.readouterr().out.splitlines()[0]
    db = f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert first == f"tracking: MLflow runs in {db}; look at them with: mlflow ui --backend-store-uri {db}"
    assert (tmp_path / "mlflow.db").is_file()


def test_a_tracked_search_logs_every_trial_run(synthetic_root, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from esc50kit.search import Param, run_search

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "search-test")
    table = run_search(synthetic_root, profile="tiny", space=(Param("training.lr", "log", 1e-3, 1e-2),),
                       n_trials=2, folds=(1, 2, 3), name="t", artifacts_dir=tmp_path,
                       overrides={"training.epochs": 1}, track=True, log=None)
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path.resolve()}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("search-test").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["search-t-t000", "search-t-t001"]
    by_name = {r.info.run_name: r for r in runs}
    for row in table.itertuples():
        logged = by_name[f"search-t-t{row.trial:03d}"]
        assert logged.info.status == "FINISHED" and logged.data.metrics["overall_accuracy"] == row.score
