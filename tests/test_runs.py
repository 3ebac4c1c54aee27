"""The run folder: notebook 03 says whether it trains, resumes or reuses, and retrains without
losing a run; a run folder's model is loaded once, with its checks."""
from __future__ import annotations

import json

from esc50kit.run_folder import RunFolder


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
    assert RunFolder(tmp_path / "runs" / "x").describe().startswith("Training a new run")


def test_a_finished_run_is_reused_and_says_how_to_train_afresh(tmp_path):
    run = _run(tmp_path, finished_splits=2, finished=True)
    text = RunFolder(run).describe()
    assert text.startswith(f"Reusing the finished run {run}")
    assert "test accuracy 81.2%" in text and "nothing is trained" in text
    assert "retrain = True" in text and "run_name" in text


def test_an_interrupted_run_resumes_the_splits_left(tmp_path):
    run = _run(tmp_path, finished_splits=1, finished=False)
    text = RunFolder(run).describe()
    assert text.startswith("Resuming") and "1 of 2" in text and "test2-val3" in text


def test_set_aside_keeps_the_old_run_under_a_new_name(tmp_path):
    run = _run(tmp_path, finished_splits=2, finished=True)
    moved = RunFolder(run).set_aside()
    assert not run.exists() and (moved / "metrics.json").is_file()
    assert moved.name.startswith("quick-ESC-10.replaced-")
    run.mkdir()
    again = RunFolder(run).set_aside()  # twice in one second: a new name, nothing overwritten
    assert again != moved and moved.exists()
    assert RunFolder(tmp_path / "none").set_aside() is None


def test_state_names_the_finished_splits(tmp_path):
    assert RunFolder(tmp_path / "none").state() == ("new", [], [])
    run = _run(tmp_path, finished_splits=1, finished=False)
    assert RunFolder(run).state() == ("partial", ["test1-val2"], ["test1-val2", "test2-val3"])
    (run / "config.json").write_text("{")  # cut short while the run started
    assert RunFolder(run).state() == ("partial", [], [])


def test_resuming_keeps_the_creation_time_and_refuses_other_settings(tmp_path):
    import pytest

    folder = RunFolder.named(tmp_path, "r")
    config = {**dict.fromkeys(("dataset_files", "subset", "mode", "features", "model", "training",
                               "splits", "cross_fold"), "x"), "seed": 0, "created": "then"}
    assert folder.resumable(config) is config  # nothing to resume
    folder.write_start(config, "audit\n")
    assert folder.resumable({**config, "created": "now"})["created"] == "then"
    with pytest.raises(ValueError, match=r"another configuration \(differs in \['seed'\]\)"):
        folder.resumable({**config, "seed": 1})
    assert (folder.path / "audit.txt").read_text() == "audit\n"
