"""Feature packs: train from one file without the audio, and get the same run."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from esc50kit.__main__ import main as cli
from esc50kit.data import DatasetError, load_metadata
from esc50kit.experiment import run_experiment
from esc50kit.packs import is_pack, read_pack, write_pack
from esc50kit.profiles import get_profile

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = get_profile("tiny").features


def test_a_pack_holds_the_table_and_features_of_the_audio(synthetic_root, tmp_path):
    pack = write_pack(synthetic_root, tmp_path / "p.npz", features=TINY, cache_dir=tmp_path / "cache",
                      progress=False)
    assert is_pack(pack) and not is_pack(synthetic_root) and not is_pack(tmp_path / "nothing.npz")
    df, X, features = read_pack(pack)
    ref = load_metadata(synthetic_root)
    cols = ["filename", "fold", "target", "category", "esc10", "src_file", "take", "label"]
    assert df[cols].equals(ref[cols])
    assert X.dtype == np.float16 and X.shape[0] == len(ref) and features == TINY
    # the same arrays as the cache the pack was made from
    from esc50kit.cache import load_or_compute

    assert np.array_equal(X, load_or_compute(ref, TINY, cache_dir=tmp_path / "cache", progress=False).X)
    sub, Xs, _ = read_pack(pack, subset="esc10")
    rows = ref.index[ref["esc10"]].to_numpy()
    assert list(sub["filename"]) == list(ref.loc[rows, "filename"]) and np.array_equal(Xs, X[rows])


def test_a_run_from_a_pack_equals_the_run_from_the_audio(writable_root, tmp_path):
    kw = dict(mode="cv", profile="tiny", overrides={"training.epochs": 1}, progress=False,
              folds=[1, 2, 3, 4])
    from_audio = run_experiment(writable_root, artifacts_dir=tmp_path / "a", run_name="r", **kw)
    pack = write_pack(writable_root, tmp_path / "p.npz", features=TINY, cache_dir=None, progress=False)
    shutil.rmtree(writable_root / "audio")  # the pack must not need the audio
    from_pack = run_experiment(pack, artifacts_dir=tmp_path / "b", run_name="r", **kw)
    assert from_pack.config["dataset_files"] == from_audio.config["dataset_files"]
    assert from_pack.config["folds"] == [1, 2, 3, 4]
    a, b = from_audio.predictions, from_pack.predictions
    assert list(a["filename"]) == list(b["filename"])
    assert np.allclose(a.filter(like="prob").to_numpy(), b.filter(like="prob").to_numpy(), atol=1e-6)
    assert from_pack.metrics["overall_accuracy"] == from_audio.metrics["overall_accuracy"]


def test_a_run_from_a_pack_needs_no_audio_library(synthetic_root, tmp_path):
    """The GPU machines a pack is carried to have torch but no soundfile, soxr or librosa."""
    pack = write_pack(synthetic_root, tmp_path / "p.npz", features=TINY, cache_dir=None, progress=False)
    script = textwrap.dedent(f"""
        import sys
        for name in ("soundfile", "soxr", "librosa"):
            sys.modules[name] = None  # any import of them raises ImportError
        import torch
        torch.set_num_threads(1)
        from esc50kit.experiment import run_experiment
        run = run_experiment({str(pack)!r}, artifacts_dir={str(tmp_path / "art")!r}, mode="final",
                             profile="tiny", overrides={{"training.epochs": 1}}, progress=False)
        print(run.config["versions"]["librosa"], run.metrics["overall_accuracy"])
    """)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    librosa, accuracy = done.stdout.split()
    from importlib.metadata import version

    assert librosa == version("librosa")  # the run still records it, read without importing it
    assert 0.0 <= float(accuracy) <= 1.0


def test_a_pack_of_other_features_or_a_damaged_pack_is_refused(synthetic_root, tmp_path):
    pack = write_pack(synthetic_root, tmp_path / "p.npz", features=TINY, cache_dir=None, progress=False)
    with pytest.raises(ValueError, match=r"p.npz holds features .* profile 'quick' asks for"):
        run_experiment(pack, artifacts_dir=tmp_path, profile="quick", progress=False)
    with pytest.raises(ValueError, match="holds no audio"):
        run_experiment(pack, artifacts_dir=tmp_path, profile="tiny", progress=False,
                       overrides={"training.variants": 2})
    bad = tmp_path / "bad.npz"
    bad.write_bytes(pack.read_bytes()[:1000])
    with pytest.raises(DatasetError, match=r"bad.npz is not a readable feature pack"):
        read_pack(bad)
    with pytest.raises(ValueError, match=r"name it \*.npz"):
        write_pack(synthetic_root, tmp_path / "p.tar", features=TINY, cache_dir=None, progress=False)
    assert not (tmp_path / "p.tar").exists()


def test_the_pack_command_writes_a_pack(synthetic_root, tmp_path, capsys):
    out = tmp_path / "packs" / "tiny.npz"
    assert cli(["pack", "--data", str(synthetic_root), "--profile", "tiny", "--out", str(out),
                "--artifacts", str(tmp_path)]) == 0
    assert f"train on it with --data {out}" in capsys.readouterr().out
    assert read_pack(out)[2] == TINY
    assert cli(["pack", "--data", str(tmp_path / "nowhere"), "--profile", "tiny", "--out", str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err and read_pack(out)[2] == TINY  # the old pack is kept


def test_a_search_runs_on_a_pack(synthetic_root, tmp_path):
    from esc50kit.search import Param, run_search

    pack = write_pack(synthetic_root, tmp_path / "p.npz", features=TINY, cache_dir=None, progress=False)
    table = run_search(pack, profile="tiny", space=(Param("training.lr", "log", 1e-3, 1e-2),),
                       n_trials=1, folds=(1, 2, 3), artifacts_dir=tmp_path,
                       overrides={"training.epochs": 1}, log=None)
    assert len(table) == 1 and 0.0 <= table["score"].iloc[0] <= 1.0
