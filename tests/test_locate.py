"""A notebook left at data_dir = "" finds the one dataset make run prepared, or says why not."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from esc50kit.data import DatasetError
from esc50kit.locate import ENV_VAR, MARKER_NAME, find_data_dir


def _dataset(parent: Path, name: str, *, verified: bool = True) -> Path:
    root = parent / name
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    (root / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n")
    if verified:
        (root / MARKER_NAME).write_text(json.dumps({"format": 1}))
    return root


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with notebooks/ (the working directory of a notebook) and data/."""
    monkeypatch.setattr("esc50kit.locate._PROJECT", tmp_path)  # not this checkout's data/
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "data").mkdir()
    return tmp_path


def test_the_one_verified_dataset_under_data_is_found(project):
    root = _dataset(project / "data", "ESC-10")
    _dataset(project / "data", "half-copied", verified=False)  # not verified: not a candidate
    assert find_data_dir("", cwd=project / "notebooks", environ={}) == root.resolve()


def test_a_given_data_dir_is_used_as_it_is(project):
    root = _dataset(project / "elsewhere", "ESC-50-master", verified=False)
    _dataset(project / "data", "ESC-10")
    assert find_data_dir(str(root), cwd=project / "notebooks", environ={}) == root


def test_the_environment_variable_of_make_lab_wins_over_the_search(project):
    _dataset(project / "data", "ESC-10")
    chosen = _dataset(project / "data", "ESC-50-master")
    env = {ENV_VAR: str(chosen)}
    assert find_data_dir("", cwd=project / "notebooks", environ=env) == chosen.resolve()


def test_no_dataset_names_the_parameter_the_folders_and_the_command(project):
    (project / "data" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError) as err:
        find_data_dir("", cwd=project / "notebooks", environ={})
    msg = str(err.value)
    assert 'data_dir = ""' in msg
    assert str((project / "data").resolve()) in msg and "notes.txt" in msg
    assert str((project / "notebooks" / "data").resolve()) in msg and "does not exist" in msg
    assert "make run DATA=" in msg and "download_data.py" in msg


def test_several_datasets_are_named_and_none_is_guessed(project):
    a = _dataset(project / "data", "ESC-10")
    b = _dataset(project / "data", "ESC-50-master")
    with pytest.raises(DatasetError) as err:
        find_data_dir("", cwd=project / "notebooks", environ={})
    msg = str(err.value)
    assert "2 verified datasets" in msg and str(a.resolve()) in msg and str(b.resolve()) in msg
    assert "data_dir =" in msg and "make lab DATA=" in msg


def test_a_wrong_data_dir_says_which_datasets_exist(project):
    found = _dataset(project / "data", "ESC-10")
    with pytest.raises(DatasetError) as err:
        find_data_dir("../data/ESC-50-master", cwd=project / "notebooks", environ={})
    msg = str(err.value)
    assert "data_dir = '../data/ESC-50-master'" in msg and str(found.resolve()) in msg


def test_a_stale_environment_variable_is_an_error_not_a_silent_fallback(project):
    _dataset(project / "data", "ESC-10")
    gone = project / "deleted"
    with pytest.raises(DatasetError, match=ENV_VAR):
        find_data_dir("", cwd=project / "notebooks", environ={ENV_VAR: str(gone)})
