"""The Optuna search: its space, seeding, pruning, resuming, workers, and that it never sees held-out folds."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from esc50kit.search import DEFAULT_SPACE, Param, default_storage, run_search, time_saved, trials_frame

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.usefixtures("torch_one_thread")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SPACE = (Param("training.lr", "log", 1e-4, 1e-1), Param("training.mixup_alpha", "float", 0.0, 0.6),
         Param("training.freq_width", "int", 0, 16), Param("training.crop_frames", "choice", choices=(None, 8, 16)))


class FakeTrain:
    """Stands in for run_experiment: scores each fold by ``score(trial number, fold)``,
    calls ``on_split`` as a run does, and records the folds it "trained"."""

    def __init__(self, score=lambda trial, fold: 0.5):
        self.score, self.calls = score, []

    def __call__(self, data_dir, *, artifacts_dir, run_name, folds, overrides, seed, on_split, **kw):
        trial = int(run_name.split("-t")[-1].split("-")[0])
        splits = []
        for i, fold in enumerate(folds):
            self.calls.append((trial, fold))
            split = {"name": f"test{fold}", "test_fold": fold, "test_accuracy": self.score(trial, fold),
                     "val_accuracy": 0.5}
            splits.append(split)
            on_split(i, split)
        run_dir = Path(artifacts_dir) / "runs" / run_name
        run_dir.mkdir(parents=True, exist_ok=True)
        acc = float(np.mean([s["test_accuracy"] for s in splits]))
        return SimpleNamespace(run_dir=run_dir, metrics={"overall_accuracy": acc, "splits": splits})


def _study(tmp_path, name):
    return optuna.load_study(study_name=name, storage=default_storage(tmp_path))


def _fake_search(root, tmp_path, *, train, **kw):
    args = dict(profile="tiny", space=SPACE, folds=(1, 2, 3, 4), name="f", artifacts_dir=tmp_path,
                log=None, train=train)
    return run_search(root, **{**args, **kw})


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="uniform", low=0, high=1), "kind='uniform'"),
    (dict(kind="float", low=1, high=1), "low < high"),
    (dict(kind="log", low=0, high=1), "low > 0"),
    (dict(kind="choice", choices=(1,)), "two choices"),
])
def test_bad_parameters_are_refused_with_their_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Param("training.lr", **kwargs)
    with pytest.raises(ValueError, match="training.lr"):
        Param("training.lr", **kwargs)


def test_suggestions_stay_in_the_space_and_trial_0_is_the_profile(synthetic_root, tmp_path):
    table = _fake_search(synthetic_root, tmp_path, train=FakeTrain(lambda t, f: (t % 7) / 7),
                         n_trials=20, n_initial=10, prune_below=0)
    assert len(table) == 20 and (table["state"] == "complete").all()
    profile = table[table["trial"] == 0].iloc[0]
    assert profile["proposed_by"] == "profile"
    assert (profile["training.lr"], profile["training.mixup_alpha"], profile["training.freq_width"]) == (3e-3, 0.2, 4)
    assert pd.isna(profile["training.crop_frames"])  # the tiny profile's crop_frames=None
    assert table["training.lr"].between(1e-4, 1e-1).all()
    assert table["training.mixup_alpha"].between(0.0, 0.6).all()
    assert table["training.freq_width"].between(0, 16).all()
    assert all(float(v).is_integer() for v in table["training.freq_width"])
    assert set(table["training.crop_frames"].fillna(-1)) <= {-1, 8, 16}
    study = _study(tmp_path, "f")
    assert study.trials[0].user_attrs["proposed_by"] == "profile"
    dists = study.trials[1].distributions
    assert dists["training.lr"].log and not dists["training.mixup_alpha"].log
    assert isinstance(dists["training.freq_width"], optuna.distributions.IntDistribution)
    assert dists["training.crop_frames"].choices == (None, 8, 16)
    # the log range is drawn in log space: its random draws spread over the decades
    random = table[table["proposed_by"] == "random"]["training.lr"]
    assert len(random) == 9 and (np.log10(random) < -2.5).sum() >= 2
    assert sorted(set(table["proposed_by"])) == ["profile", "random", "tpe"]
    assert table["score"].is_monotonic_decreasing
    assert len({tuple(r) for r in table[[p.key for p in SPACE]].fillna(-1).to_numpy()}) == 20


def test_the_sampler_is_seeded(synthetic_root, tmp_path):
    def params(seed, folder):
        table = _fake_search(synthetic_root, tmp_path / folder, train=FakeTrain(lambda t, f: (t * 37 % 11) / 11),
                             n_trials=8, n_initial=3, seed=seed, prune_below=0)
        return table.sort_values("trial")[[p.key for p in SPACE]].fillna(-1).to_numpy().tolist()

    assert params(0, "a") == params(0, "b")  # the same seed and history: the same trials
    assert params(0, "a")[1:] != params(1, "c")[1:]


def test_a_trial_clearly_behind_is_pruned_after_its_first_fold(synthetic_root, tmp_path):
    train = FakeTrain(lambda trial, fold: 0.1 if trial == 3 else 0.8 + 0.01 * fold)
    lines: list[str] = []
    table = _fake_search(synthetic_root, tmp_path, train=train, n_trials=5, n_initial=2,
                         prune_after=3, prune_below=25, log=lines.append)
    assert table.set_index("trial")["state"].to_dict() == {0: "complete", 1: "complete", 2: "complete",
                                                           3: "pruned", 4: "complete"}
    assert [f for t, f in train.calls if t == 3] == [1]  # the other three folds never trained
    assert [f for t, f in train.calls if t == 4] == [1, 2, 3, 4]
    pruned = _study(tmp_path, "f").trials[3]
    assert pruned.intermediate_values == {0: 0.1}
    assert _study(tmp_path, "f").trials[4].intermediate_values == pytest.approx(
        {0: 0.81, 1: 0.815, 2: 0.82, 3: 0.825})  # the mean of the folds so far
    assert any(line.startswith("trial 3 (4 of 5, tpe): ") and "pruned after 1 of 4 folds (mean so far 0.100"
               in line for line in lines)
    row = table[table["trial"] == 3].iloc[0]
    assert math.isnan(row["score"]) and row["folds_done"] == 1 and row["partial"] == 0.1
    assert list(table["state"]) == ["complete"] * 4 + ["pruned"]  # complete ones first
    # without pruning the same trial runs all its folds
    train = FakeTrain(lambda trial, fold: 0.1 if trial == 3 else 0.8)
    _fake_search(synthetic_root, tmp_path / "nop", train=train, n_trials=5, prune_below=0)
    assert [f for t, f in train.calls if t == 3] == [1, 2, 3, 4]
    plots = sorted(p.name for p in (tmp_path / "search" / "f").glob("*.png"))
    assert plots == ["intermediate_values.png", "optimization_history.png", "param_importances.png"]


def test_time_saved_is_the_mean_complete_duration_minus_each_pruned_one():
    table = pd.DataFrame({"state": ["complete", "complete", "complete", "pruned", "pruned"],
                          "retry_of": [-1, -1, 2, -1, -1], "seconds": [100.0, 80.0, 10.0, 30.0, 95.0]})
    assert time_saved(table) == pytest.approx((90 - 30) + 0)  # a resumed trial is not a whole one
    assert time_saved(table[table["state"] == "complete"]) == 0.0


def test_search_runs_on_the_search_folds_only_and_resumes(writable_root, tmp_path):
    from esc50kit.data import load_metadata

    df = load_metadata(writable_root)
    for name in df.loc[df["fold"] == 5, "filename"]:
        (writable_root / "audio" / name).write_bytes(b"not a wav file")  # reading would fail
    space = (Param("training.lr", "log", 1e-3, 1e-2), Param("training.mixup_alpha", "float", 0.0, 0.4))
    lines: list[str] = []
    kw = dict(profile="tiny", space=space, n_initial=2, folds=(1, 2, 3, 4), name="s",
              artifacts_dir=tmp_path, overrides={"training.epochs": 1}, log=lines.append)
    table = run_search(writable_root, n_trials=3, **kw)
    assert len(table) == 3 and len(lines) == 3
    assert lines[0].startswith("trial 0 (1 of 3, profile): lr=0.003, mixup_alpha=0.2 -> ")
    assert sorted(table["proposed_by"]) == ["profile", "random", "tpe"]
    study = _study(tmp_path, "s")
    assert study.trials[0].params == {"training.lr": 0.003, "training.mixup_alpha": 0.2}
    for t in study.trials:
        assert set(t.user_attrs["per_fold"]) == {"1", "2", "3", "4"} and len(t.intermediate_values) == 4
        assert 1e-3 <= t.params["training.lr"] <= 1e-2
        run = tmp_path / t.user_attrs["run_dir"]
        assert json.loads((run / "config.json").read_text())["folds"] == [1, 2, 3, 4]
        assert t.value == json.loads((run / "metrics.json").read_text())["overall_accuracy"]
        assert not list(run.glob("*/checkpoint_last.pt")) and len(list(run.glob("*/checkpoint_best.pt"))) == 4
    assert (tmp_path / "search" / "s" / "trials.csv").is_file()
    before = [t.params for t in study.trials]
    # a rerun with more trials runs only the new one and keeps the old ones as they were
    lines.clear()
    table = run_search(writable_root, n_trials=4, **kw)
    assert len(table) == 4 and len(lines) == 1 and lines[0].startswith("trial 3 (4 of 4, tpe)")
    assert [t.params for t in study.trials[:3]] == before
    assert len(list((tmp_path / "runs").iterdir())) == 4
    with pytest.raises(ValueError, match="other settings.*space"):
        run_search(writable_root, n_trials=4, **{**kw, "space": space[:1]})


def test_an_interrupted_trial_resumes_from_its_run_folder(synthetic_root, tmp_path):
    from esc50kit.experiment import run_experiment

    def interrupted(*args, run_name, on_split, **kw):
        def stop(index, split):
            on_split(index, split)
            if run_name.endswith("-t001") and index == 0:
                raise KeyboardInterrupt  # Ctrl-C after trial 1's first split
        return run_experiment(*args, run_name=run_name, on_split=stop, **kw)

    kw = dict(profile="tiny", space=(Param("training.lr", "log", 1e-3, 1e-2),), n_trials=2, n_initial=1,
              folds=(1, 2, 3), name="r", artifacts_dir=tmp_path, overrides={"training.epochs": 1}, log=None)
    with pytest.raises(KeyboardInterrupt):
        run_search(synthetic_root, train=interrupted, **kw)
    first = tmp_path / "runs" / "search-r-t001" / "test1-val2" / "metrics.json"
    stamp = first.stat().st_mtime_ns
    assert not (tmp_path / "runs" / "search-r-t001" / "test2-val3" / "metrics.json").exists()
    table = run_search(synthetic_root, **kw)  # the same call again
    trials = _study(tmp_path, "r").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params == trials[1].params
    assert trials[2].user_attrs["run_dir"].endswith("search-r-t001")
    assert first.stat().st_mtime_ns == stamp  # the finished split was read back, not retrained
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["search-r-t000", "search-r-t001"]
    assert list(table["trial"].sort_values()) == [0, 2] and set(table["retry_of"]) == {-1, 1}
    assert len(trials[2].intermediate_values) == 3


def test_a_worker_waits_for_another_and_takes_over_its_trial_when_it_dies(synthetic_root, tmp_path, monkeypatch):
    import socket

    import esc50kit.search as search

    monkeypatch.setattr(search, "POLL_S", 0.1)
    train = FakeTrain(lambda t, f: 0.5 + 0.01 * t)
    _fake_search(synthetic_root, tmp_path, train=train, n_trials=1)
    study = _study(tmp_path, "f")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    running = study.ask()  # trial 1, as another worker of this machine would hold it
    running.set_user_attr("worker", {"host": socket.gethostname(), "pid": other.pid})
    lr = running.suggest_float("training.lr", 1e-4, 1e-1, log=True)

    lines: list[str] = []

    def log(line: str) -> None:  # the other worker dies once this one waits for it
        lines.append(line)
        if line.startswith("waiting for trial"):
            other.kill()
            other.wait()  # reaped: its pid is gone

    table = _fake_search(synthetic_root, tmp_path, train=train, n_trials=2, log=log)
    assert lines[0] == "waiting for trial(s) [1], running in other workers"
    trials = _study(tmp_path, "f").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params["training.lr"] == lr
    assert [t for t, f in train.calls if t != 0] == [1, 1, 1, 1]  # in trial 1's run folder
    assert len(table) == 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # study.ask() stands in for a worker
def test_a_stale_heartbeat_gets_its_trial_retried_by_optuna(synthetic_root, tmp_path, monkeypatch):
    import time

    import esc50kit.search as search

    monkeypatch.setattr(search, "HEARTBEAT_S", 1)
    monkeypatch.setattr(search, "GRACE_S", 1)
    train = FakeTrain(lambda t, f: 0.5 + 0.01 * t)
    _fake_search(synthetic_root, tmp_path, train=train, n_trials=1)
    study = optuna.load_study(study_name="f", storage=search.open_storage(default_storage(tmp_path)))
    silent = study.ask()  # trial 1, held by a worker of another machine that stops beating
    silent.set_user_attr("worker", {"host": "another-machine", "pid": 1})
    lr = silent.suggest_float("training.lr", 1e-4, 1e-1, log=True)
    study._storage.record_heartbeat(silent._trial_id)
    time.sleep(1.5)
    table = _fake_search(synthetic_root, tmp_path, train=train, n_trials=2)
    trials = _study(tmp_path, "f").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params["training.lr"] == lr
    assert trials[2].user_attrs["worker"]["host"] != "another-machine"
    assert [t for t, f in train.calls if t != 0] == [1, 1, 1, 1] and len(table) == 2  # trial 1's run folder


@pytest.mark.slow  # two fresh interpreters: most of its time is their start-up
def test_two_workers_share_one_study_and_never_run_a_trial_twice(synthetic_root, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    n = 4
    cmd = [sys.executable, str(BENCHMARKS / "search_recipe.py"), "--data", str(synthetic_root),
           "--profile", "tiny", "--trials", str(n), "--initial", "2", "--folds", "1", "2", "3",
           "--set", "training.epochs=1", "--threads", "1", "--artifacts", str(tmp_path),
           "--storage", url, "--name", "w"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(2)]  # started at once, as on two machines
    outs = [w.communicate(timeout=300) for w in workers]
    for w, (out, err) in zip(workers, outs):
        assert w.returncode == 0, err
    ran = [[int(line.split()[1]) for line in out.splitlines() if line.startswith("trial ")] for out, _ in outs]
    assert ran[0] and ran[1], ran  # both workers trained
    assert sorted(ran[0] + ran[1]) == sorted(set(ran[0]) | set(ran[1]))  # no trial twice
    study = optuna.load_study(study_name="w", storage=url)
    finished = [t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"]
    assert len(finished) == n and len(ran[0] + ran[1]) == n
    assert all(t.user_attrs.get("surplus") for t in study.trials if t.state.name == "FAIL")
    assert len({tuple(sorted(t.params.items())) for t in finished}) == n  # no parameter set twice
    assert len({t.user_attrs["run_dir"] for t in finished}) == n
    assert len(list((tmp_path / "runs").iterdir())) == n
    for out, _ in outs:  # both print the whole study at the end
        assert f"\n{n} trials, best first" in out
        assert out.strip().splitlines()[-1].startswith("best search score: ")


def test_a_journal_file_holds_a_study_too(synthetic_root, tmp_path):
    journal = tmp_path / "shared" / "study.log"  # e.g. on a file system the machines share
    train = FakeTrain(lambda t, f: 0.5 + 0.01 * t)
    assert len(_fake_search(synthetic_root, tmp_path, train=train, n_trials=2, storage=str(journal))) == 2
    table = _fake_search(synthetic_root, tmp_path, train=train, n_trials=3, storage=str(journal))
    assert list(table["trial"]) == [2, 1, 0] and len(train.calls) == 3 * 4
    assert journal.is_file() and not (tmp_path / "search" / "optuna.db").exists()


def test_a_study_that_stored_the_old_origin_attribute_still_reads():
    study = optuna.create_study(direction="maximize")
    for origin, value in (("profile", 0.5), ("random", 0.7)):
        study.enqueue_trial({"training.lr": 3e-3}, user_attrs={"origin": origin})
        trial = study.ask()
        trial.suggest_float("training.lr", 1e-4, 1e-1, log=True)
        study.tell(trial, value)
    assert trials_frame(study)["proposed_by"].tolist() == ["random", "profile"]


def test_search_refuses_to_see_every_fold_and_unknown_settings(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match=r"cover every fold.*leave at least one out"):
        run_search(synthetic_root, profile="tiny", folds=(1, 2, 3, 4, 5), artifacts_dir=tmp_path)
    with pytest.raises(ValueError, match="training has no field 'lrate'"):
        run_search(synthetic_root, profile="tiny", artifacts_dir=tmp_path,
                   space=(Param("training.lrate", "float", 0.0, 1.0),))
    assert not (tmp_path / "runs").exists()


def test_default_space_holds_the_cpu_recipe():
    from esc50kit.profiles import get_profile

    prof = get_profile("cpu-cv")
    for p in DEFAULT_SPACE:
        value = getattr(prof.training, p.key.split(".")[1])
        assert p.low <= value <= p.high, p.key  # trial 0 lies inside the space
    assert trials_frame(optuna.create_study()).empty


def test_several_seeds_per_trial_score_their_mean(synthetic_root, tmp_path):
    space = (Param("training.lr", "log", 1e-3, 1e-2),)
    lines: list[str] = []
    kw = dict(profile="tiny", space=space, n_initial=2, folds=(1, 2, 3), name="m", seed=3,
              artifacts_dir=tmp_path, overrides={"training.epochs": 1}, log=lines.append)
    run_search(synthetic_root, n_trials=2, seeds=2, **kw)
    for t in _study(tmp_path, "m").trials:
        assert len(t.user_attrs["seed_scores"]) == 2 and t.value == pytest.approx(np.mean(t.user_attrs["seed_scores"]))
        assert [p.split("/")[-1] for p in t.user_attrs["run_dirs"]] == [f"search-m-t{t.number:03d}-s3",
                                                                       f"search-m-t{t.number:03d}-s4"]
        seeds = [json.loads((tmp_path / r / "config.json").read_text())["seed"] for r in t.user_attrs["run_dirs"]]
        assert seeds == [3, 4] and set(t.user_attrs["per_fold"]) == {"1", "2", "3"}
        assert len(t.intermediate_values) == 6  # 2 seeds x 3 folds
    assert " = mean of " in lines[0]
    with pytest.raises(ValueError, match="differs in.*seeds"):
        run_search(synthetic_root, n_trials=3, seeds=1, **kw)
    with pytest.raises(ValueError, match="seeds=0"):
        run_search(synthetic_root, n_trials=3, seeds=0, **kw)


def test_a_worker_that_loses_the_race_to_create_the_tables_retries(tmp_path, monkeypatch):
    from sqlalchemy.exc import IntegrityError, OperationalError

    import esc50kit.search as search

    real, calls = optuna.storages.RDBStorage, []
    races = [OperationalError("CREATE TABLE studies", {}, Exception("table studies already exists")),
             IntegrityError("INSERT INTO alembic_version", {},
                            Exception("UNIQUE constraint failed: alembic_version.version_num"))]

    def racing(*args, **kwargs):  # the other worker created the tables, then stamped them
        calls.append(args[0])
        if len(calls) <= len(races):
            raise races[len(calls) - 1]
        return real(*args, **kwargs)

    monkeypatch.setattr(search.time, "sleep", lambda s: None)
    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    url = f"sqlite:///{tmp_path / 'race.db'}"
    storage = search.open_storage(url)
    assert len(calls) == 3 and storage.get_all_studies() == []
    calls.clear()

    def broken(*args, **kwargs):  # an error that persists is raised after the last attempt
        calls.append(args[0])
        raise OperationalError("SELECT", {}, Exception("unable to open database file"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(OperationalError, match="unable to open"):
        search.open_storage(url)
    assert len(calls) == search._CREATE_ATTEMPTS
