"""Notebook 03 says whether it trains, resumes or reuses, and retrains without losing a run."""
from __future__ import annotations

import json

from esc50kit.runs import describe_run_folder, set_aside


def _run(tmp_path, *, finished_splits, finished):
    run = tmp_path / "runs" / "quick-ESC-10"
    names = ["test1-val2", "test2-val3"]
    (run).mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"splits": [{"name": n} for n in names]}))
    for n in names[:finished_splits]:
        (run / n).mkdir()
        (run / n / "metrics.json").write_text("{}")
    if finished:
        (run / "metrics.json").write_text(json.dumps({"scored_role": "test", "accuracy": {"mean": 0.8125}}))
    return run


def test_a_new_folder_trains(tmp_path):
    assert describe_run_folder(tmp_path / "runs" / "x").startswith("Training a new run")


def test_a_finished_run_is_reused_and_says_how_to_train_afresh(tmp_path):
    run = _run(tmp_path, finished_splits=2, finished=True)
    text = describe_run_folder(run)
    assert text.startswith(f"Reusing the finished run {run}")
    assert "test accuracy 81.2%" in text and "nothing is trained" in text
    assert "retrain = True" in text and "run_name" in text


def test_an_interrupted_run_resumes_the_splits_left(tmp_path):
    run = _run(tmp_path, finished_splits=1, finished=False)
    text = describe_run_folder(run)
    assert text.startswith("Resuming") and "1 of 2" in text and "test2-val3" in text


def test_set_aside_keeps_the_old_run_under_a_new_name(tmp_path):
    run = _run(tmp_path, finished_splits=2, finished=True)
    moved = set_aside(run)
    assert not run.exists() and (moved / "metrics.json").is_file()
    assert moved.name.startswith("quick-ESC-10.replaced-")
    run.mkdir()
    again = set_aside(run)  # twice in one second: a new name, nothing overwritten
    assert again != moved and moved.exists()
    assert set_aside(tmp_path / "none") is None
