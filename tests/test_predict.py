"""Classifying new recordings with a trained run: windows, resampling, errors, the CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from esc50kit.audio import AudioReadError
from esc50kit.data import load_metadata
from esc50kit.experiment import run_experiment
from esc50kit.predict import Classifier, RunFolderError, window_starts


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory):
    """A small model that has learned the synthetic classes (final mode: test fold 5)."""
    art = tmp_path_factory.mktemp("predict-artifacts")
    result = run_experiment(synthetic_root, artifacts_dir=art, mode="final", profile="tiny",
                            overrides={"training.epochs": 20, "training.lr": 0.01},
                            progress=False, run_name="synth")
    assert result.metrics["overall_accuracy"] >= 0.8, "the fixture model did not learn"
    return result.run_dir


@pytest.fixture(scope="module")
def test_clip(synthetic_root, trained):
    """A correctly classified clip of the run's test fold (never seen in training)."""
    df = load_metadata(synthetic_root)
    clf = Classifier.from_run(trained)
    for row in df[df["fold"] == 5].itertuples():
        if clf.predict_file(row.path).top(1)[0][0] == row.category:
            return row
    pytest.fail("no test clip is classified correctly")


def test_window_starts():
    assert window_starts(100, size=100) == [0]
    assert window_starts(30, size=100) == [0]
    assert window_starts(600, size=100) == [0, 100, 200, 300, 400, 500]
    assert window_starts(640, size=100) == [0, 100, 200, 300, 400, 500]  # short tail dropped
    assert window_starts(660, size=100) == [0, 100, 200, 300, 400, 500, 600]  # long tail kept


@pytest.mark.parametrize("variant", ["16k", "stereo", "3s"])
def test_converted_clip_keeps_its_top_class(trained, test_clip, tmp_path, variant):
    import soxr

    y, sr = sf.read(test_clip.path, dtype="float32")
    if variant == "16k":
        y, sr = soxr.resample(y, sr, 16000), 16000
    elif variant == "stereo":
        y = np.stack([y, 0.5 * y], axis=1)  # (samples, 2)
    else:
        y = y[: 3 * sr]
    path = tmp_path / f"{variant}.wav"
    sf.write(path, y, sr)
    pred = Classifier.from_run(trained).predict_file(path)
    assert np.isfinite(pred.probs).all()
    assert np.isclose(pred.probs.sum(axis=1), 1, atol=1e-4).all()
    assert pred.top(1)[0][0] == test_clip.category
    assert len(pred.windows) == 1


def test_thirty_second_file_gives_six_windows(trained, test_clip, tmp_path):
    y, sr = sf.read(test_clip.path, dtype="float32")
    path = tmp_path / "long.wav"
    sf.write(path, np.tile(y, 6), sr)
    pred = Classifier.from_run(trained).predict_file(path)
    assert len(pred.windows) == 6 and pred.probs.shape[0] == 6
    assert pred.windows[0] == (0.0, 5.0) and pred.windows[-1] == (25.0, 30.0)
    assert pred.top(1)[0][0] == test_clip.category


def test_unreadable_file_is_named(trained, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(AudioReadError, match="broken.wav"):
        Classifier.from_run(trained).predict_file(bad)


def test_missing_run_folder_says_what_to_do(tmp_path):
    with pytest.raises(RunFolderError, match="not a run folder"):
        Classifier.from_run(tmp_path / "nowhere")


@pytest.mark.parametrize("field", ["n_mels", "hop_length"])
def test_feature_config_that_does_not_match_the_checkpoint_is_refused(trained, tmp_path, field):
    edited = tmp_path / "edited"
    shutil.copytree(trained, edited)
    cfg = json.loads((edited / "config.json").read_text())
    cfg["features"][field] = cfg["features"][field] * 2
    (edited / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunFolderError, match=f"does not match the checkpoint.*{field}"):
        Classifier.from_run(edited)


def test_cli_prints_a_table_and_json(trained, test_clip, tmp_path):
    cmd = [sys.executable, "-m", "esc50kit", "predict", test_clip.path, "--run", str(trained), "--top", "3"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert test_clip.category in out and "rank" in out
    js = subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True).stdout
    parsed = json.loads(js)
    assert parsed[0]["top"][0]["class"] == test_clip.category and len(parsed[0]["top"]) == 3


def test_cli_fails_clearly(trained, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    r = subprocess.run([sys.executable, "-m", "esc50kit", "predict", str(bad), "--run", str(trained)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "bad.wav" in r.stderr
    r = subprocess.run([sys.executable, "-m", "esc50kit", "predict", str(bad), "--run", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not a run folder" in r.stderr


def test_cv_run_averages_its_fold_models_or_uses_one(synthetic_root, tmp_path):
    run = run_experiment(synthetic_root, artifacts_dir=tmp_path, mode="cv", profile="tiny",
                         overrides={"training.epochs": 1}, progress=False, run_name="cv").run_dir
    path = load_metadata(synthetic_root)["path"].iloc[0]
    ensemble = Classifier.from_run(run)  # a cv run averages its fold models by default
    assert len(ensemble.models) == 5
    singles = [Classifier.from_run(run, split=str(fold)).predict_file(path).probs for fold in range(1, 6)]
    assert np.allclose(ensemble.predict_file(path).probs, np.mean(singles, axis=0), atol=1e-6)
    assert Classifier.from_run(run, split="3").names == ["test3-val4"]
    with pytest.raises(RunFolderError, match="split '9'"):
        Classifier.from_run(run, split="9")


def test_several_runs_are_averaged_together(synthetic_root, tmp_path):
    kw = dict(artifacts_dir=tmp_path, mode="cv", profile="tiny", progress=False,
              overrides={"training.epochs": 1})
    runs = [run_experiment(synthetic_root, run_name=f"off{k}", val_offset=k, seed=k, **kw).run_dir
            for k in (1, 2)]
    path = load_metadata(synthetic_root)["path"].iloc[0]
    both = Classifier.from_runs(runs)
    assert len(both.models) == 10 and both.names[0] == "off1/test1-val2"
    alone = [Classifier.from_run(r).predict_file(path).probs for r in runs]
    assert np.allclose(both.predict_file(path).probs, np.mean(alone, axis=0), atol=1e-6)
    other = run_experiment(synthetic_root, run_name="other", **{
        **kw, "overrides": {"training.epochs": 1, "features.n_mels": 24}}).run_dir
    with pytest.raises(RunFolderError, match="feature configuration"):
        Classifier.from_runs([runs[0], other])
    r = subprocess.run([sys.executable, "-m", "esc50kit", "predict", str(path), "--run",
                        *map(str, runs), "--json"], capture_output=True, text=True, check=True)
    assert len(json.loads(r.stdout)[0]["models"]) == 10


def test_cli_refuses_missing_folder_empty_and_nan_files_by_name(trained, test_clip, tmp_path):
    empty, nan = tmp_path / "empty.wav", tmp_path / "nan.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 22050)
    y = np.zeros(22050, dtype=np.float32)
    y[5] = np.nan
    sf.write(nan, y, 22050, subtype="FLOAT")
    missing = tmp_path / "missing.wav"
    r = subprocess.run([sys.executable, "-m", "esc50kit", "predict", str(missing), str(tmp_path),
                        str(empty), str(nan), test_clip.path, "--run", str(trained), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = r.stderr.strip().splitlines()
    assert errors == [
        f"error: {missing}: no such file (check the path); no prediction for it",
        f"error: {tmp_path}: it is a folder, not an audio file (give the files in it); "
        "no prediction for it",
        f"error: {empty}: the file holds no samples; no prediction for it",
        f"error: {nan}: 1 sample(s) are NaN or infinite (the first at frame 5); the file is "
        "damaged or was written from a failed computation; no prediction for it",
    ]
    predicted = json.loads(r.stdout)  # only the good file, with finite probabilities
    assert [p["file"] for p in predicted] == [test_clip.path]
    assert all(np.isfinite(t["prob"]) for t in predicted[0]["top"])


def test_cli_refuses_a_device_this_machine_lacks(trained, test_clip):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = subprocess.run([sys.executable, "-m", "esc50kit", "predict", test_clip.path, "--run",
                        str(trained), "--device", "cuda"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: device 'cuda': CUDA is not available on this machine")
    assert "Traceback" not in r.stderr


def test_a_run_folder_with_an_unreadable_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("")
    with pytest.raises(RunFolderError, match=r"config.json is unreadable.*Delete the folder"):
        Classifier.from_run(tmp_path)
