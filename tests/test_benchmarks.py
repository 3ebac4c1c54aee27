"""The benchmark scripts' command lines run end to end on tiny settings (they must not rot)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_cv_fold_ensemble_on_an_inner_cross_validation(synthetic_root, tmp_path, capsys):
    train_cv = _script("train_cv")
    args = ["--data", str(synthetic_root), "--profile", "tiny", "--epochs", "1", "--threads", "1",
            "--artifacts", str(tmp_path), "--folds", "1", "2", "3", "4",
            "--val-offsets", "1", "2", "3", "--run-name", "inner", "--no-progress"]
    assert train_cv.main(args) == 0
    out = capsys.readouterr().out
    assert "folds used: [1, 2, 3, 4]" in out
    assert "ensemble of 3 runs over validation offsets [1, 2, 3]" in out
    for fold in (1, 2, 3, 4):
        assert f"test fold {fold}: test accuracy" in out
    assert "test fold 5" not in out
    assert out.strip().splitlines()[-1].startswith("overall test accuracy: ")
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert names == ["inner-seed0", "inner-val2-seed1", "inner-val3-seed2"]
    # finished runs read back give the same report, ensemble and last line
    assert train_cv.main(["--from-runs", *(str(tmp_path / "runs" / n) for n in names)]) == 0
    again = capsys.readouterr().out
    assert again.strip().splitlines()[-1] == out.strip().splitlines()[-1]
    assert "ensemble of 3 runs over validation offsets [1, 2, 3]" in again
    assert "read back 3 finished run(s)" in again


def test_train_cv_refit_seed_ensemble_prints_no_validation_score(synthetic_root, tmp_path, capsys):
    train_cv = _script("train_cv")
    args = ["--data", str(synthetic_root), "--profile", "tiny", "--epochs", "2", "--threads", "1",
            "--artifacts", str(tmp_path), "--mode", "refit", "--seeds", "2",
            "--run-name", "refit", "--no-progress"]
    assert train_cv.main(args) == 0
    out = capsys.readouterr().out
    for fold in (1, 2, 3, 4, 5):
        assert f"test{fold}-noval: test accuracy" in out
    assert out.count("no validation fold, last epoch 2/2") == 10  # 5 splits x 2 seeds
    assert "validation" not in out.split("ensemble of 2 seeds")[1].replace("no validation", "")
    assert out.strip().splitlines()[-1].startswith("overall test accuracy: ")
    assert train_cv.main([*args[:-3], "--val-offsets", "1", "2"]) == 2  # refit has no val fold
    assert "--val-offsets applies to cv mode only; this run's mode is 'refit'" in capsys.readouterr().err


def test_train_cv_runs_a_profile_seed_ensemble_and_student_in_one_run_folder(synthetic_root, tmp_path, capsys):
    train_cv = _script("train_cv")
    assert train_cv.main(["--data", str(synthetic_root), "--profile", "tiny", "--epochs", "1",
                          "--threads", "1", "--artifacts", str(tmp_path), "--mode", "refit",
                          "--set", "seeds=2", "--set", "student=0.5", "--run-name", "two",
                          "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("run folder: ") == 1  # one run, three models per split
    assert out.count("; seed 0: ") == out.count("; seed 1: ") == out.count("; student 2: ") == 5
    assert sorted(p.name for p in (tmp_path / "runs" / "two" / "test1-noval").iterdir()
                  if p.is_dir()) == ["seed0", "seed1", "student"]


def test_score_last_scores_the_last_weights_of_validation_runs_and_their_ensemble(
        synthetic_root, tmp_path, capsys):
    import pandas as pd

    train_cv, score_last = _script("train_cv"), _script("score_last")
    args = ["--data", str(synthetic_root), "--profile", "tiny", "--epochs", "2", "--threads", "1",
            "--artifacts", str(tmp_path), "--mode", "validation", "--seeds", "2",
            "--run-name", "cand", "--no-progress"]
    assert train_cv.main([*args, "--keep-last-checkpoints"]) == 0
    capsys.readouterr()
    runs = [tmp_path / "runs" / f"cand-seed{k}" for k in (0, 1)]
    assert score_last.main([*map(str, runs), "--artifacts", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for run in runs:
        (split,) = [d for d in run.iterdir() if d.is_dir()]
        history = pd.read_csv(split / "history.csv")
        # the last weights score what training measured at its last epoch
        assert (f"{run.name}: mean validation accuracy at the last epoch "
                f"{history['val_acc'].iloc[-1]:.3f}") in out
        assert f"{run.name} {split.name}: last epoch 2," in out
    assert "ensemble of 2 run(s), best-epoch checkpoints (optimistic): " in out
    assert out.strip().splitlines()[-1].startswith("ensemble of 2 run(s), last weights: ")
    # without the kept last checkpoints it says what to do instead
    assert train_cv.main([*args[:-3], "--run-name", "plain", "--no-progress"]) == 0
    capsys.readouterr()
    assert score_last.main([str(tmp_path / "runs" / "plain-seed0"), "--artifacts", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "plain-seed0/notest-val4/checkpoint_last.pt is missing" in err
    assert "--keep-last-checkpoints" in err


def test_distill_trains_a_student_of_the_teachers_and_scores_it_beside_them(
        synthetic_root, tmp_path, capsys):
    train_cv, distill = _script("train_cv"), _script("distill")
    args = ["--data", str(synthetic_root), "--profile", "tiny", "--epochs", "2", "--threads", "1",
            "--artifacts", str(tmp_path), "--mode", "validation", "--seeds", "2",
            "--run-name", "teach", "--no-progress", "--keep-last-checkpoints"]
    assert train_cv.main(args) == 0
    capsys.readouterr()
    runs = [str(tmp_path / "runs" / f"teach-seed{k}") for k in (0, 1)]
    assert _script("score_last").main([*runs, "--artifacts", str(tmp_path)]) == 0
    ensemble = capsys.readouterr().out.strip().splitlines()[-1].rsplit(" ", 1)[1]
    assert distill.main([*runs, "--artifacts", str(tmp_path), "--name", "stud", "--weight",
                         "0.7", "--temperature", "2", "--no-progress"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert line.startswith("notest-val4: teachers ") and f"their ensemble {ensemble};" in line
    assert "student (weight 0.7, temperature 2.0, seed 100) " in line
    assert (tmp_path / "runs" / "stud" / "notest-val4" / "checkpoint_last.pt").is_file()
    # teachers of two recipes are refused, naming why
    other = [*args[:-4], "--run-name", "other", "--set", "training.lr=0.01",
             "--keep-last-checkpoints", "--seeds", "1"]
    assert train_cv.main(other) == 0
    assert distill.main([runs[0], str(tmp_path / "runs" / "other"), "--artifacts",
                         str(tmp_path), "--name", "x"]) == 2
    assert "differ in their splits or training recipe" in capsys.readouterr().err


def test_train_loop_benchmark_prints_both_loops_and_their_ratio(capsys):
    bench = _script("bench_train_loop")
    assert bench.main(["--profile", "tiny", "--clips", "32", "--epochs", "1", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "random features" in lines[0]
    assert lines[1].startswith("plain PyTorch loop") and lines[2].startswith("esc50kit fit")
    ratio = float(lines[-1].removeprefix("speed-up: ").removesuffix("x"))
    assert ratio > 0


def test_step_profile_times_each_part_of_a_training_step(capsys):
    bench = _script("profile_step")
    assert bench.main(["--profile", "tiny", "--steps", "2", "--classes", "5", "--threads", "1",
                       "--set", "features.n_mels=16", "--set", "training.batch_size=4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "input (16, 79), batch 4" in lines[0]  # the override reached the profile
    parts = dict(p.split() for p in lines[1].removeprefix("  ms per batch: ").split(", "))
    assert list(parts) == list(bench.PARTS) and all(float(ms) >= 0 for ms in parts.values())
    assert float(lines[-1].removeprefix("clips/s: ")) > 0


def test_search_benchmark_prints_trials_and_a_command_to_confirm_the_best(synthetic_root, tmp_path, capsys):
    search = _script("search_recipe")
    args = ["--data", str(synthetic_root), "--profile", "tiny", "--trials", "2", "--initial", "2",
            "--set", "training.epochs=1", "--threads", "1", "--artifacts", str(tmp_path)]
    assert search.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith("profile tiny, search folds [1, 2, 3, 4], seed 0")
    db = f"sqlite:///{tmp_path.resolve()}/search/optuna.db"
    assert lines[2].startswith(f"storage {db}; this worker: ")
    assert lines[3].startswith("trial 0 (1 of 2, profile): lr=0.003") and lines[4].startswith("trial 1 (2 of 2, random)")
    assert any(line.startswith("pruned: 0 trial(s) [], about 0 s saved (estimate: ") for line in lines)
    assert any(line.endswith(f"live view: optuna-dashboard {db}") for line in lines)
    assert len(list((tmp_path / "search" / "tiny-folds1234-seed0").glob("*.png"))) == 2
    confirm = next(line for line in lines if line.startswith("confirm with another seed: "))
    assert "--mode cv --folds 1 2 3 4 --seed 1 --set training.epochs=1 --set training.lr=" in confirm
    score = float(lines[-1].removeprefix("best search score: "))
    assert 0.0 <= score <= 1.0


def test_gpu_session_script_runs_from_a_pack_and_writes_its_logs(synthetic_root, tmp_path):
    """The one command a GPU session runs (README: On a GPU machine), shrunk to seconds."""
    import os
    import shutil
    import subprocess
    import sys

    from esc50kit.packs import write_pack
    from esc50kit.profiles import get_profile

    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    pack = write_pack(synthetic_root, tmp_path / "p.npz", features=get_profile("tiny").features,
                      cache_dir=None, progress=False)
    env = {**os.environ, "PYTHON": sys.executable, "PROFILE": "tiny", "EPOCHS": "1", "CLIPS": "32",
           "PACK": str(pack), "ARTIFACTS": str(tmp_path / "art"), "OMP_NUM_THREADS": "1"}
    script = str(BENCHMARKS / "gpu_session.sh")
    done = subprocess.run(["bash", script, str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["cv-tiny-esc10.txt", "machine.txt",
                                                     "train-loop-tiny.txt"]
    assert "torch" in (out / "machine.txt").read_text()
    assert (out / "train-loop-tiny.txt").read_text().strip().splitlines()[-1].startswith("speed-up: ")
    cv = (out / "cv-tiny-esc10.txt").read_text().strip().splitlines()
    assert cv[-2].startswith("overall test accuracy: ") and "wall time" in cv[-1]
    assert (tmp_path / "art" / "runs" / "gpu-tiny-esc10" / "metrics.json").is_file()

    missing = subprocess.run(["bash", script, str(tmp_path / "o2")], capture_output=True, text=True,
                             env={**env, "PACK": str(tmp_path / "none.npz")}, timeout=60)
    assert missing.returncode == 2 and "none.npz not found" in missing.stderr
    assert "python -m esc50kit pack" in missing.stderr and not (tmp_path / "o2").exists()
