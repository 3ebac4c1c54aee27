"""Models trained side by side (esc50kit.parallel): the models trained in turn, in the same
folders, resumable, and every failure of a worker raised in the run that started it."""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import time

import pandas as pd
import pytest
import torch

from esc50kit.experiment import run_experiment
from esc50kit.parallel import Task, _outcome, _widen_on_request, plan
from esc50kit.run_folder import RunFolder
from esc50kit.splits import FoldSplit
from esc50kit.training import LAST, TrainingDivergedError

TAUGHT = {"training.epochs": 2, "seeds": 2, "student": 0.5}


def _members(run_dir, split: str) -> list[pd.DataFrame]:
    return [pd.read_csv(run_dir / n / "predictions.csv")
            for n in RunFolder(run_dir).member_names(split)]


def test_models_trained_side_by_side_are_the_models_trained_in_turn(
        synthetic_root, tmp_path, torch_one_thread):
    kw = dict(artifacts_dir=tmp_path, mode="final", profile="tiny", progress=False, seed=3,
              overrides=TAUGHT)
    in_turn = run_experiment(synthetic_root, run_name="in-turn", workers=1, **kw)
    side = run_experiment(synthetic_root, run_name="side", workers=2, **kw)
    assert (in_turn.metrics["times"]["workers"], side.metrics["times"]["workers"]) == (1, 2)
    split = in_turn.config["splits"][0]["name"]
    cols = [f"prob_{c}" for c in in_turn.class_names]
    # one thread in each worker, as in this process: the same seeds, the same student
    for a, b in zip(_members(in_turn.run_dir, split), _members(side.run_dir, split)):
        pd.testing.assert_frame_equal(a[cols], b[cols], atol=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(in_turn.run_dir / split / "predictions.csv"),
                                  pd.read_csv(side.run_dir / split / "predictions.csv"), atol=1e-6)
    drop_time = lambda ms: [{k: v for k, v in m.items() if k != "train_seconds"} for m in ms]  # noqa: E731
    assert drop_time(side.metrics["splits"][0]["members"]) == drop_time(
        in_turn.metrics["splits"][0]["members"])
    assert not list(side.run_dir.rglob(LAST))  # each worker dropped its resume checkpoint
    assert "2 trained at a time" in (side.run_dir / "summary.md").read_text()


def test_the_plan_waits_students_on_their_seeds_and_a_run_resumes_side_by_side(
        synthetic_root, tmp_path, torch_one_thread):
    kw = dict(artifacts_dir=tmp_path, mode="cv", profile="tiny", progress=False,
              run_name="cv", overrides={**TAUGHT, "training.epochs": 1})
    first = run_experiment(synthetic_root, workers=1, **kw)
    run = RunFolder(first.run_dir)
    names = {s: run.member_names(s) for s in first.split_names}
    test2, test4 = first.split_names[1], first.split_names[3]
    # interrupted: test2 lost its second seed and student, test4 its student
    for gone in (test2, names[test2][1], names[test2][2], test4, names[test4][2]):
        (first.run_dir / gone / "metrics.json").unlink()
    from esc50kit.experiment import _plan
    from esc50kit.profiles import get_profile

    inputs, splits, _, _ = _plan(synthetic_root, get_profile("tiny", kw["overrides"]),
                                 mode="cv", subset="all", folds=None, val_offset=1, seed=0,
                                 cross_fold="allow", allow_degenerate=False,
                                 cache_dir=tmp_path / "features", progress=False)
    ready, waiting = plan(run, splits, inputs)
    assert [(t.name, t.seed, t.student) for t in ready] == [
        (names[test2][1], 1, False), (names[test4][2], 2, True)]
    assert {s: (t.name, seeds) for s, (t, seeds) in waiting.items()} == {
        test2: (names[test2][2], {names[test2][1]})}
    again = run_experiment(synthetic_root, workers=2, **kw)
    assert again.metrics["times"]["workers"] == 2
    for split in (first.split_names[0], test4):  # read back, not retrained
        old = first.metrics["splits"][first.split_names.index(split)]["members"][:2]
        assert again.metrics["splits"][again.split_names.index(split)]["members"][:2] == old
    assert all(run.split_done(n) for ns in names.values() for n in ns)


def test_the_model_left_running_alone_gets_every_thread(synthetic_root, tmp_path, capsys,
                                                        torch_one_thread):
    """Two workers of one thread; whichever model is the last one running gets the second
    thread from then on, so no core sits idle through a run's long last model."""
    result = run_experiment(synthetic_root, artifacts_dir=tmp_path, mode="final", profile="tiny",
                            run_name="tail", workers=2, overrides={
                                **TAUGHT, "student_epoch_factor": 5})
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "clips/s" in ln]
    student = RunFolder(result.run_dir).member_names(result.split_names[0])[-1]
    assert len(lines) == 3 and lines[-1].startswith(f"{student}: ")
    assert re.search(r"; 2 threads for its last \d+ s$", lines[-1])  # it started with one
    assert len(pd.read_csv(result.run_dir / student / "history.csv")) == 10


def test_a_worker_takes_the_threads_its_pipe_sends_between_two_python_lines(torch_one_thread):
    receive, send = multiprocessing.Pipe(duplex=False)
    before = signal.getsignal(signal.SIGUSR1)
    try:
        widened = _widen_on_request(receive)
        time.sleep(0.2)
        assert (widened, torch.get_num_threads()) == ([], 1)  # nothing sent, nothing changes
        sent = time.monotonic()
        send.send(2)
        while not widened and time.monotonic() < sent + 10:
            time.sleep(0.01)
        assert widened[0] == 2 and widened[1] >= sent and torch.get_num_threads() == 2
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_auto_trains_two_at_a_time_only_where_it_pays():
    from esc50kit.parallel import MIN_CLIPS, auto_workers

    big = dict(ready=15, clips_per_model=1600 * 100, on_cpu=True, threads=2)  # cpu-esc50
    assert auto_workers(**big) == 2
    assert auto_workers(**{**big, "threads": 1}) == 1  # one core: nothing to share
    assert auto_workers(**{**big, "ready": 1}) == 1  # one model left to train
    assert auto_workers(**{**big, "on_cpu": False}) == 1  # a GPU: in turn
    assert auto_workers(**{**big, "clips_per_model": MIN_CLIPS - 1}) == 1  # start-up > gain


def test_auto_keeps_small_runs_and_pruned_searches_in_this_process(synthetic_root, tmp_path):
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        kw = dict(artifacts_dir=tmp_path, mode="final", profile="tiny", progress=False)
        workers = lambda name, overrides, **more: run_experiment(  # noqa: E731
            synthetic_root, run_name=name, overrides=overrides, **kw, **more
        ).metrics["times"]["workers"]
        assert workers("one-model", {"training.epochs": 1}) == 1
        assert workers("tiny-seeds", {"training.epochs": 1, "seeds": 2}) == 1  # seconds each
        seen = []
        assert workers("pruned", {"training.epochs": 1, "seeds": 2},
                       on_split=lambda i, m: seen.append(i)) == 1
        assert seen == [0]
    finally:
        torch.set_num_threads(n)


def test_bad_worker_counts_are_refused_before_anything_trains(synthetic_root, tmp_path):
    kw = dict(artifacts_dir=tmp_path, mode="final", profile="tiny", progress=False,
              overrides=TAUGHT)
    for bad in (0, -1, "two", 1.5, True):
        with pytest.raises(ValueError, match="workers="):
            run_experiment(synthetic_root, run_name=f"bad-{bad}", workers=bad, **kw)
    with pytest.raises(ValueError, match="on_split must see each split"):
        run_experiment(synthetic_root, run_name="pruned", workers=2,
                       on_split=lambda i, m: None, **kw)
    assert not any(RunFolder.named(tmp_path, "pruned").path.glob("*/metrics.json"))


def test_an_error_in_a_worker_stops_the_run_and_names_what_failed(
        synthetic_root, tmp_path, torch_one_thread):
    kw = dict(artifacts_dir=tmp_path, mode="final", profile="tiny", progress=False,
              run_name="diverges", workers=2,
              overrides={**TAUGHT, "training.lr": 1e30, "training.schedule": "constant"})
    with pytest.raises(TrainingDivergedError, match="training diverged"):
        run_experiment(synthetic_root, **kw)
    run = RunFolder.named(tmp_path, "diverges")
    assert not list(run.path.rglob("metrics.json"))  # nothing claims a score
    assert json.loads((run.path / "config.json").read_text())["student"] == 0.5
    # a worker that dies without a word (killed, out of memory) is named, with its code
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    proc = context.Process(target=os._exit, args=(3,))
    proc.start()
    send.close()
    task = Task(FoldSplit((1, 2, 3), 4, 5), "test5-val4/seed1", 1, False)
    with pytest.raises(RuntimeError, match=r"trained test5-val4/seed1 exited with code 3 .*"
                                           r"same run name to resume"):
        _outcome(proc, receive, task)
